//! The client subcommands and the API request behind each of them.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::{Subcommand, ValueEnum};
use eventsource_stream::Eventsource as _;
use futures::{StreamExt as _, TryStreamExt as _};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use super::Client;
use super::render;
use crate::output;

/// Files at least this large get a progress bar when stderr is a terminal.
const PROGRESS_THRESHOLD: u64 = 4 * 1024 * 1024;

/// `cosmic-node space ...`
#[derive(Debug, Subcommand)]
pub(crate) enum SpaceCommand {
    /// Create a space owned by this node and join it; prints its id
    Create {
        /// Who may write: anyone (`open`) or authors holding a grant (`restricted`)
        #[arg(long, value_enum, default_value_t = ModeArg::Open)]
        mode: ModeArg,
    },
    /// List the spaces this node holds
    List,
    /// Start replicating a space with its peers
    Join {
        /// Space id
        space: String,
    },
    /// Stop replicating a space (its data stays on this node)
    Leave {
        /// Space id
        space: String,
    },
    /// Grant an author rights in a space (this node must be its creator or an admin)
    Grant {
        /// Space id
        space: String,
        /// Author id to grant rights to (`cosmic-node identity list`, `GET /v1/identity`)
        author: String,
        /// What the author may do
        #[arg(long, value_enum, default_value_t = RightsArg::Write)]
        rights: RightsArg,
        /// When the grant ends: RFC 3339 time (e.g. 2027-01-01T00:00:00Z)
        #[arg(long, value_name = "TIME")]
        expires: Option<String>,
    },
    /// Revoke an author's rights in a space from now on (this node must be its creator,
    /// or an admin, which revokes the grants it issued); what the author wrote and this
    /// node holds stays, and entries the author dates back are refused
    Revoke {
        /// Space id
        space: String,
        /// Author id whose rights end
        author: String,
        /// End the rights from now on only, keeping no list of the author's entries
        /// (entries dated back are then still taken)
        #[arg(long)]
        unsealed: bool,
    },
}

/// Space write mode.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ModeArg {
    /// Any author may write
    Open,
    /// Only authors with a write grant may write
    Restricted,
}

/// Rights of a grant.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RightsArg {
    /// Read the space
    Read,
    /// Read and write
    Write,
    /// Read, write and grant rights to others
    Admin,
}

/// `cosmic-node doc ...`
#[derive(Debug, Subcommand)]
pub(crate) enum DocCommand {
    /// Merge a JSON object's fields into a document (`null` deletes a field)
    Put {
        /// Space id
        space: String,
        /// Document key, may contain `/` (e.g. users/alice)
        key: String,
        /// The JSON object; `-` or nothing reads it from stdin
        #[arg(value_name = "JSON")]
        object: Option<String>,
        /// Sign as this identity (alias or author id) that the node was started with
        /// (`run --identity`); default: the node author
        #[arg(long = "as", value_name = "AUTHOR")]
        author: Option<String>,
    },
    /// Print a document's live fields as JSON
    Get {
        /// Space id
        space: String,
        /// Document key
        key: String,
        /// Add each field's clock and author
        #[arg(long)]
        meta: bool,
        /// Resolve document links this many levels deep
        #[arg(long, value_name = "N")]
        depth: Option<u32>,
    },
    /// Delete a document (all its fields)
    Rm {
        /// Space id
        space: String,
        /// Document key
        key: String,
        /// Sign as this identity (alias or author id); default: the node author
        #[arg(long = "as", value_name = "AUTHOR")]
        author: Option<String>,
    },
    /// List document keys
    Ls {
        /// Space id
        space: String,
        /// Only keys starting with this
        #[arg(long)]
        prefix: Option<String>,
        /// At most this many keys
        #[arg(long)]
        limit: Option<u32>,
        /// Only keys after this one (for paging)
        #[arg(long)]
        after: Option<String>,
    },
    /// Stream the changes of a space as they happen, until interrupted
    Watch {
        /// Space id
        space: String,
        /// Start after this sequence number (0: replay everything)
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
    },
}

/// `cosmic-node blob ...`
#[derive(Debug, Subcommand)]
pub(crate) enum BlobCommand {
    /// Add a file (streamed, any size); prints its CID and size
    Add {
        /// File to add; `-` reads stdin
        file: PathBuf,
    },
    /// Download a blob, from this node or through it from its peers
    Get {
        /// The blob's CID (bafkr4...)
        cid: String,
        /// Write to this file instead of stdout (written whole or not at all)
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Unpin a blob so garbage collection may remove it
    Rm {
        /// The blob's CID
        cid: String,
    },
}

/// `cosmic-node peers [dial ADDR]`
#[derive(Debug, Subcommand)]
pub(crate) enum PeersCommand {
    /// Connect to a peer
    Dial {
        /// The peer's multiaddr, with its /p2p/ id
        addr: String,
    },
}

/// Prints an answer: JSON line or human lines.
fn print(client: &Client, value: &Value) {
    if client.json() {
        output::line(&render::json_line(value));
    } else {
        for line in render::human(value) {
            output::line(&line);
        }
    }
}

/// Runs `cosmic-node space ...`.
pub(crate) async fn run_space(client: &Client, command: SpaceCommand) -> anyhow::Result<()> {
    match command {
        SpaceCommand::Create { mode } => {
            let mode = match mode {
                ModeArg::Open => "open",
                ModeArg::Restricted => "restricted",
            };
            let created = client.post(["v1", "spaces"], &json!({ "mode": mode })).await?;
            if client.json() {
                print(client, &created);
            } else {
                let id = created.get("id").map(render::inline).unwrap_or_default();
                output::line(&id);
            }
        }
        SpaceCommand::List => print(client, &client.get(["v1", "spaces"]).await?),
        SpaceCommand::Join { space } => {
            print(client, &client.post(["v1", "spaces", &space, "join"], &json!({})).await?);
        }
        SpaceCommand::Leave { space } => {
            print(client, &client.post(["v1", "spaces", &space, "leave"], &json!({})).await?);
        }
        SpaceCommand::Grant { space, author, rights, expires } => {
            let rights = match rights {
                RightsArg::Read => "read",
                RightsArg::Write => "write",
                RightsArg::Admin => "admin",
            };
            let mut body = json!({ "author": author, "rights": rights });
            if let Some(expires) = expires {
                body["expires"] = Value::String(expires);
            }
            print(client, &client.post(["v1", "spaces", &space, "grants"], &body).await?);
        }
        SpaceCommand::Revoke { space, author, unsealed } => {
            let body = json!({ "author": author, "sealed": !unsealed });
            print(client, &client.post(["v1", "spaces", &space, "revocations"], &body).await?);
        }
    }
    Ok(())
}

/// The path segments of a document: keys may contain `/`, each part is its own segment.
fn doc_segments<'a>(space: &'a str, key: &'a str) -> Vec<&'a str> {
    let mut segments = vec!["v1", "spaces", space, "docs"];
    segments.extend(key.split('/'));
    segments
}

/// Runs `cosmic-node doc ...`.
pub(crate) async fn run_doc(client: &Client, command: DocCommand) -> anyhow::Result<()> {
    match command {
        DocCommand::Put { space, key, object, author } => {
            let text = match object.as_deref() {
                None | Some("-") => {
                    let mut text = String::new();
                    std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
                    text
                }
                Some(text) => text.to_owned(),
            };
            let object: Value = serde_json::from_str(&text)
                .with_context(|| format!("the document is not valid JSON: {text:?}"))?;
            if !object.is_object() {
                bail!("a document is a JSON object, like {{\"name\": \"alice\"}}; got {object}");
            }
            let mut url = client.url(doc_segments(&space, &key));
            if let Some(author) = &author {
                url.query_pairs_mut().append_pair("author", author);
            }
            let answer = client.send_json(client.request(Method::PUT, url).json(&object)).await?;
            print(client, &answer);
        }
        DocCommand::Get { space, key, meta, depth } => {
            let mut url = client.url(doc_segments(&space, &key));
            if meta {
                url.query_pairs_mut().append_pair("meta", "true");
            }
            if let Some(depth) = depth {
                url.query_pairs_mut().append_pair("depth", &depth.to_string());
            }
            let document = client.send_json(client.request(Method::GET, url)).await?;
            let text = if client.json() {
                render::json_line(&document)
            } else {
                serde_json::to_string_pretty(&document).context("encoding JSON")?
            };
            output::line(&text);
        }
        DocCommand::Rm { space, key, author } => {
            let mut url = client.url(doc_segments(&space, &key));
            if let Some(author) = &author {
                url.query_pairs_mut().append_pair("author", author);
            }
            let answer = client.send_json(client.request(Method::DELETE, url)).await?;
            print(client, &answer);
        }
        DocCommand::Ls { space, prefix, limit, after } => {
            let mut url = client.url(["v1", "spaces", &space, "docs"]);
            {
                let mut query = url.query_pairs_mut();
                if let Some(prefix) = &prefix {
                    query.append_pair("prefix", prefix);
                }
                if let Some(limit) = limit {
                    query.append_pair("limit", &limit.to_string());
                }
                if let Some(after) = &after {
                    query.append_pair("after", after);
                }
            }
            if url.query() == Some("") {
                url.set_query(None);
            }
            print(client, &client.send_json(client.request(Method::GET, url)).await?);
        }
        DocCommand::Watch { space, since } => watch(client, &space, since).await?,
    }
    Ok(())
}

/// Streams a space's events, reconnecting with `Last-Event-ID` so nothing is lost or
/// repeated when the connection drops.
async fn watch(client: &Client, space: &str, since: Option<u64>) -> anyhow::Result<()> {
    let mut last_id: Option<String> = None;
    let mut connected_once = false;
    let mut backoff = Duration::from_millis(250);
    loop {
        let mut url = client.url(["v1", "spaces", space, "events"]);
        if let (None, Some(since)) = (&last_id, since) {
            url.query_pairs_mut().append_pair("since", &since.to_string());
        }
        let mut request = client.request(Method::GET, url).header("Accept", "text/event-stream");
        if let Some(id) = &last_id {
            request = request.header("Last-Event-ID", id.as_str());
        }
        let response = match request.send().await {
            Ok(response) if response.status().is_success() => response,
            Ok(response) => return Err(super::api_error(response).await),
            // Once watching, a node restart or a dropped connection is waited out.
            Err(error) if connected_once => {
                eprintln!("watch: {}; retrying in {backoff:?}", client.transport_error(error));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(error) => return Err(client.transport_error(error)),
        };
        connected_once = true;
        backoff = Duration::from_millis(250);
        let mut events = response.bytes_stream().eventsource();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    eprintln!("watch: the event stream broke ({error}); reconnecting");
                    break;
                }
            };
            if !event.id.is_empty() {
                last_id = Some(event.id.clone());
            }
            if event.data.is_empty() {
                continue;
            }
            if client.json() {
                output::line(&event.data);
                continue;
            }
            match serde_json::from_str::<Value>(&event.data) {
                Ok(change) => output::line(&describe_change(&event.id, &change)),
                Err(_) => output::line(&event.data),
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// One line for a change: `seq  doc.field = value  (author, origin)`.
fn describe_change(id: &str, change: &Value) -> String {
    let text = |name: &str| change.get(name).map(render::inline).unwrap_or_default();
    let value = change.get("value").map(Value::to_string).unwrap_or_default();
    let author = text("author");
    let short = author.get(..8).unwrap_or(&author);
    format!("{id}  {}.{} = {value}  (by {short}, {})", text("doc"), text("field"), text("origin"))
}

/// A progress bar on stderr for `len` bytes, hidden unless it is a terminal and the
/// transfer is large.
fn progress(client: &Client, len: Option<u64>) -> ProgressBar {
    let visible = !client.json()
        && std::io::stderr().is_terminal()
        && len.is_none_or(|len| len >= PROGRESS_THRESHOLD);
    if !visible {
        return ProgressBar::hidden();
    }
    match len {
        Some(len) => {
            let bar = ProgressBar::new(len);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} {bytes} {binary_bytes_per_sec}")
            {
                bar.set_style(style);
            }
            bar
        }
    }
}

/// Runs `cosmic-node blob ...`.
pub(crate) async fn run_blob(client: &Client, command: BlobCommand) -> anyhow::Result<()> {
    match command {
        BlobCommand::Add { file } => {
            let request = client.request(Method::POST, client.url(["v1", "blobs"]));
            let request = request.header(CONTENT_TYPE, "application/octet-stream");
            let (request, bar) = if file.as_os_str() == "-" {
                let bar = progress(client, None);
                let counter = bar.clone();
                let stream =
                    tokio_util::io::ReaderStream::with_capacity(tokio::io::stdin(), 256 * 1024)
                        .inspect_ok(move |chunk| counter.inc(chunk.len() as u64));
                (request.body(reqwest::Body::wrap_stream(stream)), bar)
            } else {
                let opened = tokio::fs::File::open(&file)
                    .await
                    .with_context(|| format!("opening {}", file.display()))?;
                let len = opened
                    .metadata()
                    .await
                    .with_context(|| format!("reading the size of {}", file.display()))?
                    .len();
                let bar = progress(client, Some(len));
                let counter = bar.clone();
                let stream = tokio_util::io::ReaderStream::with_capacity(opened, 256 * 1024)
                    .inspect_ok(move |chunk| counter.inc(chunk.len() as u64));
                let request =
                    request.header(CONTENT_LENGTH, len).body(reqwest::Body::wrap_stream(stream));
                (request, bar)
            };
            let added = client.send_json(request).await;
            bar.finish_and_clear();
            print(client, &added?);
        }
        BlobCommand::Get { cid, output } => {
            let url = client.url(["v1", "blobs", &cid]);
            let response = client.send(client.request(Method::GET, url)).await?;
            let bar = progress(client, response.content_length());
            let result = match &output {
                Some(path) => download_to_file(client, response, path, &bar).await,
                None => download_to_stdout(client, response, &bar).await,
            };
            bar.finish_and_clear();
            let size = result?;
            if let Some(path) = output {
                let done = json!({ "cid": cid, "size": size, "path": path.display().to_string() });
                print(client, &done);
            }
        }
        BlobCommand::Rm { cid } => {
            let url = client.url(["v1", "blobs", &cid]);
            print(client, &client.send_json(client.request(Method::DELETE, url)).await?);
        }
    }
    Ok(())
}

/// Streams a download into `path` through `path.part`, renamed only once complete.
async fn download_to_file(
    client: &Client,
    response: reqwest::Response,
    path: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".part");
    let partial = PathBuf::from(partial);
    let result = async {
        let mut file = tokio::fs::File::create(&partial)
            .await
            .with_context(|| format!("creating {}", partial.display()))?;
        let mut stream = response.bytes_stream();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| client.transport_error(error))?;
            file.write_all(&chunk)
                .await
                .with_context(|| format!("writing {}", partial.display()))?;
            size += chunk.len() as u64;
            bar.inc(chunk.len() as u64);
        }
        file.sync_all().await.with_context(|| format!("writing {}", partial.display()))?;
        tokio::fs::rename(&partial, path)
            .await
            .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
        Ok(size)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    result
}

/// Streams a download to stdout.
async fn download_to_stdout(
    client: &Client,
    response: reqwest::Response,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    let mut stream = response.bytes_stream();
    let mut stdout = std::io::stdout().lock();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| client.transport_error(error))?;
        stdout.write_all(&chunk).context("writing to stdout")?;
        size += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    stdout.flush().context("writing to stdout")?;
    Ok(size)
}

/// Runs `cosmic-node peers [dial ADDR]`.
pub(crate) async fn run_peers(
    client: &Client,
    command: Option<PeersCommand>,
) -> anyhow::Result<()> {
    let answer = match command {
        None => client.get(["v1", "peers"]).await?,
        Some(PeersCommand::Dial { addr }) => {
            client.post(["v1", "peers"], &json!({ "addr": addr })).await?
        }
    };
    print(client, &answer);
    Ok(())
}

/// Runs `cosmic-node status`.
pub(crate) async fn run_status(client: &Client) -> anyhow::Result<()> {
    let status = client.get(["v1", "status"]).await?;
    if status.is_null() {
        return Err(anyhow!("the node answered /v1/status with an empty body"));
    }
    print(client, &status);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_keys_become_one_segment_per_part() {
        assert_eq!(
            doc_segments("s", "users/alice"),
            ["v1", "spaces", "s", "docs", "users", "alice"]
        );
    }

    #[test]
    fn changes_read_as_one_line() {
        let change = json!({
            "doc": "users/alice", "field": "age", "value": 42,
            "author": "abcdefghijklmnop", "origin": "local", "hlc": "x"
        });
        assert_eq!(describe_change("7", &change), "7  users/alice.age = 42  (by abcdefgh, local)");
    }
}
