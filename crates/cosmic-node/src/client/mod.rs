//! The CLI client: subcommands that talk to a running node's HTTP API.
//!
//! `space`, `doc`, `blob`, `peers` and `status` find the node from the data dir (the
//! address the running node wrote to `api.url`, else `api.addr` from the configuration,
//! and the bearer token in `api.token`), or from `--api` and `--token`. Human-readable
//! output by default, one JSON document per line with `--json`.

mod commands;
mod render;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::Args;
use cosmic_config::Loaded;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

pub(crate) use self::commands::{BlobCommand, DocCommand, PeersCommand, SpaceCommand};
pub(crate) use self::commands::{run_blob, run_doc, run_peers, run_space, run_status};

/// How to reach the node; shared by every client subcommand.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnArgs {
    /// API of the node to talk to, `http://host:port` or `host:port`
    /// [default: the address the node of --data-dir is serving on]
    #[arg(long = "api", global = true, value_name = "URL", env = "COSMIC_API")]
    pub(crate) api: Option<String>,
    /// Bearer token of the API [default: read from the data dir's api.token]
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "COSMIC_API_TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// Machine-readable output: one JSON document per line
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// A connection to a node's HTTP API.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    base: Url,
    token: String,
    http: reqwest::Client,
    json: bool,
}

/// Where a running node records the URL its API is served on (written when it is ready).
pub(crate) const API_URL_FILE: &str = "api.url";

impl Client {
    /// Finds the node's API address and token from the arguments, then the data dir.
    pub(crate) fn connect(loaded: &Loaded, args: &ConnArgs) -> anyhow::Result<Self> {
        let data_dir = &loaded.config.node.data_dir;
        let base = match &args.api {
            Some(api) => parse_base(api)?,
            None => match read_api_url(data_dir)? {
                Some(url) => url,
                None => parse_base(&loaded.config.api.addr.to_string())?,
            },
        };
        let token = match &args.token {
            Some(token) => token.trim().to_owned(),
            None => cosmic_node::read_api_token(data_dir).with_context(|| {
                format!(
                    "no --token given and no token in {}; pass --token or --data-dir",
                    data_dir.display()
                )
            })?,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Self { base, token, http, json: args.json })
    }

    /// True when the user asked for JSON output.
    pub(crate) fn json(&self) -> bool {
        self.json
    }

    /// The URL of `segments` below the API base; each segment is percent-encoded.
    pub(crate) fn url<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    /// A request with the bearer token set.
    pub(crate) fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.token)
    }

    /// Sends `request` and returns the successful response, or the API's error.
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let response = request.send().await.map_err(|error| self.transport_error(error))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(api_error(response).await)
    }

    /// Sends `request` and decodes the JSON answer (`null` for an empty body).
    pub(crate) async fn send_json(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<Value> {
        let response = self.send(request).await?;
        let bytes = response.bytes().await.map_err(|error| self.transport_error(error))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).context("the node answered with malformed JSON")
    }

    /// `GET` of a JSON resource.
    pub(crate) async fn get<'a>(
        &self,
        segments: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<Value> {
        self.send_json(self.request(Method::GET, self.url(segments))).await
    }

    /// `POST` of a JSON body.
    pub(crate) async fn post<'a>(
        &self,
        segments: impl IntoIterator<Item = &'a str>,
        body: &Value,
    ) -> anyhow::Result<Value> {
        self.send_json(self.request(Method::POST, self.url(segments)).json(body)).await
    }

    /// Explains a failure to reach the node at all.
    pub(crate) fn transport_error(&self, error: reqwest::Error) -> anyhow::Error {
        if error.is_connect() {
            anyhow!(
                "no node is answering at {}: {error}; start one with `cosmic-node run`, or point \
                 --api/--data-dir at it",
                self.base
            )
        } else if error.is_timeout() {
            anyhow!("the node at {} did not answer in time: {error}", self.base)
        } else {
            anyhow!("talking to the node at {}: {error}", self.base)
        }
    }
}

/// Turns a non-2xx response into an error carrying the API's code and message.
async fn api_error(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let parsed = serde_json::from_slice::<Value>(&body).ok();
    let (code, message) = match parsed.as_ref().and_then(|value| value.get("error")) {
        Some(error) => (
            error.get("code").and_then(Value::as_str).unwrap_or("unknown").to_owned(),
            error.get("message").and_then(Value::as_str).unwrap_or("").to_owned(),
        ),
        None => ("http".to_owned(), String::from_utf8_lossy(&body).trim().to_owned()),
    };
    let hint = if status == StatusCode::UNAUTHORIZED {
        " (check --token, or the api.token of --data-dir)"
    } else {
        ""
    };
    anyhow!("{message} [{code}, HTTP {}]{hint}", status.as_u16())
}

/// Parses `--api`: a full `http://` URL, or `host:port`.
fn parse_base(text: &str) -> anyhow::Result<Url> {
    let text = text.trim();
    let with_scheme = if text.starts_with("http://") || text.starts_with("https://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme)
        .with_context(|| format!("invalid API address {text:?}: expected http://host:port"))?;
    if url.host().is_none() {
        return Err(anyhow!("invalid API address {text:?}: no host"));
    }
    Ok(url)
}

/// Reads the URL a running node wrote to `DIR/api.url`, if any.
fn read_api_url(data_dir: &Path) -> anyhow::Result<Option<Url>> {
    let path = data_dir.join(API_URL_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            parse_base(&text).map(Some).with_context(|| format!("reading {}", path.display()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_addresses_parse_with_or_without_scheme() {
        let plain = parse_base("127.0.0.1:7878").expect("host:port");
        assert_eq!(plain.as_str(), "http://127.0.0.1:7878/");
        let full = parse_base(" http://[::1]:9000 \n").expect("url");
        assert_eq!(full.as_str(), "http://[::1]:9000/");
        let error = parse_base("http://").expect_err("no host").to_string();
        assert!(error.contains("invalid API address"), "{error}");
    }

    #[test]
    fn segments_are_percent_encoded_and_keep_slashes_apart() {
        // As `main` does: iroh leaves reqwest without a TLS crypto provider.
        cosmic_node::install_crypto_provider();
        let client = Client {
            base: parse_base("127.0.0.1:1").expect("base"),
            token: "t".to_owned(),
            http: reqwest::Client::new(),
            json: false,
        };
        let mut segments = vec!["v1", "spaces", "abc", "docs"];
        segments.extend("users/al ice?x#y".split('/'));
        let url = client.url(segments);
        assert_eq!(url.path(), "/v1/spaces/abc/docs/users/al%20ice%3Fx%23y");
        assert_eq!(url.query(), None);
    }
}
