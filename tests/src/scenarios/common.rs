//! What the scenarios share: a cluster of node processes on kept data dirs, state-hash
//! convergence, writers that record every acknowledged write, and the checks that
//! every acknowledged write is present and that a node's log shows no store trouble.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::client::Api;
use crate::harness::TestNode;

/// How long a short API call (a write, a listing) may take before it counts as failed.
pub const SHORT_CALL: Duration = Duration::from_secs(15);
/// How long a node may take to exit after SIGKILL or SIGTERM.
pub const EXIT_DEADLINE: Duration = Duration::from_secs(15);

/// The API client of a slot, shared with the writers (`None` while the node is down).
pub type SharedApi = Arc<Mutex<Option<Api>>>;

/// One node slot: a data dir kept across restarts and, while it runs, the process.
#[derive(Debug)]
pub struct Slot {
    /// The data dir.
    pub dir: PathBuf,
    /// The process while it runs (in a mutex: the cluster is shared across tasks).
    pub node: Option<Mutex<TestNode>>,
    /// Its API client while it runs.
    pub api: SharedApi,
}

/// Nodes on loopback sharing one open space. Dropping it kills every process and then
/// removes the data dirs.
#[derive(Debug)]
pub struct Cluster {
    /// The slots (declared first: dropped, and so killed, before the dirs go).
    pub slots: Vec<Slot>,
    /// The shared space.
    pub space: String,
    root: tempfile::TempDir,
}

/// Starts a node on `dir` connecting to `bootstrap` (blocking work, off the async threads).
pub async fn start_node(dir: PathBuf, bootstrap: Vec<String>) -> anyhow::Result<(TestNode, Api)> {
    tokio::task::spawn_blocking(move || {
        let mut args = Vec::new();
        for addr in &bootstrap {
            args.push("--bootstrap");
            args.push(addr.as_str());
        }
        let node = TestNode::start_in_with_args(&dir, &args);
        let api = Api::new(&node);
        (node, api)
    })
    .await
    .map_err(|error| anyhow!("a node failed to start: {}", join_error_text(error)))
}

fn join_error_text(error: tokio::task::JoinError) -> String {
    if !error.is_panic() {
        return error.to_string();
    }
    let payload = error.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

impl Cluster {
    /// Starts `n` nodes (each connecting to all started before it); node 0 creates an open
    /// space, the others join it.
    pub async fn new(n: usize) -> anyhow::Result<Self> {
        let root = tempfile::Builder::new().prefix("cosmic-e2e-").tempdir()?;
        let mut cluster = Self { slots: Vec::new(), space: String::new(), root };
        for index in 0..n {
            let dir = cluster.root.path().join(format!("node{index}"));
            cluster.slots.push(Slot { dir, node: None, api: Arc::new(Mutex::new(None)) });
            cluster.start(index).await?;
        }
        let first = cluster.api(0)?;
        cluster.space = first.create_space("open").await;
        for index in 1..n {
            cluster.join(index).await?;
        }
        Ok(cluster)
    }

    /// Adds a slot with a new data dir and starts a node on it (connecting to every
    /// running node); returns its index. The node has not joined the space yet.
    pub async fn add(&mut self) -> anyhow::Result<usize> {
        let index = self.slots.len();
        let dir = self.root.path().join(format!("node{index}"));
        self.slots.push(Slot { dir, node: None, api: Arc::new(Mutex::new(None)) });
        self.start(index).await?;
        Ok(index)
    }

    /// A temporary dir of this cluster's (removed with it) for other files.
    pub fn scratch(&self) -> PathBuf {
        self.root.path().to_path_buf()
    }

    /// Node `index` joins the space.
    pub async fn join(&self, index: usize) -> anyhow::Result<()> {
        let api = self.api(index)?;
        let path = format!("/v1/spaces/{}/join", self.space);
        let response = api.request(Method::POST, &path).timeout(SHORT_CALL).send().await?;
        ensure!(response.status().is_success(), "join on node {index}: {}", response.status());
        // Writes are refused until the space's record has arrived from a peer.
        let started = Instant::now();
        loop {
            let listed = api.request(Method::GET, "/v1/spaces").timeout(SHORT_CALL).send().await;
            let spaces: Value = match listed {
                Ok(response) => response.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let known = spaces
                .as_array()
                .into_iter()
                .flatten()
                .any(|entry| entry["id"] == self.space.as_str() && !entry["mode"].is_null());
            if known {
                return Ok(());
            }
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "node {index} did not receive the space record within 60s of joining"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The API of a running node.
    pub fn api(&self, index: usize) -> anyhow::Result<Api> {
        self.slots[index]
            .api
            .lock()
            .expect("api lock")
            .clone()
            .with_context(|| format!("node {index} is not running"))
    }

    /// The indices of the running nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|&i| self.slots[i].node.is_some()).collect()
    }

    /// The dialable addresses of the running nodes other than `except`.
    pub fn addrs_except(&self, except: usize) -> Vec<String> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != except)
            .filter_map(|(_, slot)| {
                slot.node.as_ref().map(|node| node.lock().expect("node lock").p2p_addr())
            })
            .collect()
    }

    /// Starts node `index` on its data dir, connecting to every other running node.
    pub async fn start(&mut self, index: usize) -> anyhow::Result<()> {
        ensure!(self.slots[index].node.is_none(), "node {index} already runs");
        let bootstrap = self.addrs_except(index);
        let (node, api) = start_node(self.slots[index].dir.clone(), bootstrap).await?;
        self.slots[index].node = Some(Mutex::new(node));
        *self.slots[index].api.lock().expect("api lock") = Some(api);
        Ok(())
    }

    /// Sends `signal` (`TERM` or `KILL`) to node `index` and waits for it to exit; returns
    /// its exit status and the problems its log shows.
    pub async fn stop(
        &mut self,
        index: usize,
        signal: &str,
    ) -> anyhow::Result<(ExitStatus, Vec<String>)> {
        *self.slots[index].api.lock().expect("api lock") = None;
        let node =
            self.slots[index].node.take().with_context(|| format!("node {index} is down"))?;
        let mut node = node.into_inner().expect("node lock");
        node.signal(signal);
        let (status, problems) = tokio::task::spawn_blocking(move || {
            let status = node.wait_exit(EXIT_DEADLINE);
            (status, log_problems(node.stderr()))
        })
        .await?;
        let status = status.with_context(|| {
            format!("node {index} did not exit within {EXIT_DEADLINE:?} of SIG{signal}")
        })?;
        Ok((status, problems))
    }

    /// The problems node `index`'s log shows so far (see [`log_problems`]).
    pub fn problems(&mut self, index: usize) -> Vec<String> {
        match self.slots[index].node.as_mut() {
            Some(node) => {
                let node = node.get_mut().expect("node lock");
                tokio::task::block_in_place(|| log_problems(node.stderr()))
            }
            None => Vec::new(),
        }
    }

    /// Sends SIGSTOP or SIGCONT to node `index`.
    pub fn signal(&self, index: usize, signal: &str) -> anyhow::Result<()> {
        let node =
            self.slots[index].node.as_ref().with_context(|| format!("node {index} is down"))?;
        node.lock().expect("node lock").signal(signal);
        Ok(())
    }

    /// The APIs of `nodes`.
    pub fn apis(&self, nodes: &[usize]) -> anyhow::Result<Vec<Api>> {
        nodes.iter().map(|&i| self.api(i)).collect()
    }

    /// Waits until `nodes` show the same state hash of the space; returns how long it took.
    pub async fn wait_converged(
        &self,
        nodes: &[usize],
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        wait_converged(&self.apis(nodes)?, &self.space, timeout).await
    }
}

/// A space's `(state_hash, entries)` on a node, if it answers in time.
pub async fn space_state(api: &Api, space: &str) -> Option<(String, u64)> {
    let response = api.request(Method::GET, "/v1/spaces").timeout(SHORT_CALL).send().await.ok()?;
    let spaces: Value = response.json().await.ok()?;
    let entry = spaces.as_array()?.iter().find(|entry| entry["id"] == space)?;
    Some((entry["state_hash"].as_str()?.to_owned(), entry["entries"].as_u64().unwrap_or(0)))
}

/// Polls until every node shows the same state hash of `space`; returns the time taken.
pub async fn wait_converged(
    apis: &[Api],
    space: &str,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let mut states = Vec::new();
        for api in apis {
            states.push(space_state(api, space).await);
        }
        if states.iter().all(|state| {
            state.is_some() && state.as_ref().map(|s| &s.0) == states[0].as_ref().map(|s| &s.0)
        }) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            let shown: Vec<String> = states
                .iter()
                .map(|state| match state {
                    Some((hash, entries)) => {
                        format!("{}..({entries} entries)", &hash[..8.min(hash.len())])
                    }
                    None => "no answer".to_owned(),
                })
                .collect();
            bail!("no convergence within {}s: [{}]", timeout.as_secs(), shown.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The lines of a node's log that show trouble: errors, panics, repairs, corruption.
pub fn log_problems(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|line| strip_ansi(line))
        .filter(|line| {
            let lower = line.to_lowercase();
            line.contains(" ERROR ")
                || lower.contains("panicked")
                || lower.contains("repair")
                || lower.contains("corrupt")
        })
        .collect()
}

/// `text` without terminal colour codes.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A PUT of a document that must be acknowledged (200) within [`SHORT_CALL`].
pub async fn put(api: &Api, space: &str, key: &str, body: &Value) -> anyhow::Result<()> {
    let response = api
        .request(Method::PUT, &format!("/v1/spaces/{space}/docs/{key}"))
        .timeout(SHORT_CALL)
        .json(body)
        .send()
        .await?;
    let status = response.status();
    ensure!(
        status == StatusCode::OK,
        "PUT {key}: {status} {}",
        response.text().await.unwrap_or_default()
    );
    Ok(())
}

/// One acknowledged write: a field only its writer ever sets, with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// The document key.
    pub doc: String,
    /// The field.
    pub field: String,
    /// The value written.
    pub value: u64,
}

/// Checks that every acknowledged write is present with its value on the node behind
/// `api`; the error names the first missing ones.
pub async fn verify_acked(api: &Api, space: &str, acked: &[Acked]) -> anyhow::Result<()> {
    let mut by_doc: BTreeMap<&str, Vec<&Acked>> = BTreeMap::new();
    for write in acked {
        by_doc.entry(&write.doc).or_default().push(write);
    }
    let mut missing = Vec::new();
    for (doc, writes) in by_doc {
        let response = api
            .request(Method::GET, &format!("/v1/spaces/{space}/docs/{doc}"))
            .timeout(Duration::from_secs(60))
            .send()
            .await?;
        let status = response.status();
        let body: Value =
            if status == StatusCode::OK { response.json().await? } else { Value::Null };
        for write in writes {
            if body[&write.field] != json!(write.value) {
                missing.push(format!(
                    "{}.{}={} (found {})",
                    write.doc, write.field, write.value, body[&write.field]
                ));
            }
        }
    }
    ensure!(
        missing.is_empty(),
        "{} of {} acknowledged writes missing, e.g. {}",
        missing.len(),
        acked.len(),
        missing.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
    );
    Ok(())
}

/// The documents' bodies on a node, for comparing nodes field by field.
pub async fn documents(api: &Api, space: &str, docs: &[String]) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in docs {
        let response = api
            .request(Method::GET, &format!("/v1/spaces/{space}/docs/{doc}"))
            .timeout(Duration::from_secs(60))
            .send()
            .await?;
        out.push(if response.status() == StatusCode::OK {
            response.json().await?
        } else {
            Value::Null
        });
    }
    Ok(out)
}

/// Counters shared by the writers of a scenario.
#[derive(Debug, Default)]
pub struct Tally {
    /// Every acknowledged write.
    pub acked: Mutex<Vec<Acked>>,
    /// Writes refused or unanswered (mostly while the node was down or being killed).
    pub failed: AtomicU64,
    /// The first failure, for the report.
    pub first_error: Mutex<Option<String>>,
}

impl Tally {
    /// A copy of the acknowledged writes.
    pub fn acked(&self) -> Vec<Acked> {
        self.acked.lock().expect("tally lock").clone()
    }

    /// The first failure, if any.
    pub fn first_error(&self) -> String {
        self.first_error.lock().expect("tally lock").clone().unwrap_or_default()
    }

    /// How many writes were acknowledged.
    pub fn n_acked(&self) -> usize {
        self.acked.lock().expect("tally lock").len()
    }
}

/// A writer of one node: sequential PUTs to `docs` overlapping documents, each setting
/// the writer's own field `f<tag>_<n>` (checked later) and the contested field `last`.
#[derive(Debug)]
pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<()>,
}

/// What a writer does.
#[derive(Debug, Clone)]
pub struct WriterSpec {
    /// Its tag in field names (unique per writer across the scenario).
    pub tag: String,
    /// The node it writes to.
    pub api: SharedApi,
    /// The space.
    pub space: String,
    /// How many documents the writes spread over.
    pub docs: u64,
    /// Pause between writes (none: as fast as the node answers).
    pub pause: Option<Duration>,
    /// Stop after this many acknowledged writes.
    pub limit: Option<u64>,
    /// The next write number (kept across restarts of the writer).
    pub next: Arc<AtomicU64>,
    /// Where acknowledged writes go.
    pub tally: Arc<Tally>,
}

impl WriterSpec {
    /// A writer spec with a fresh numbering.
    pub fn new(
        tag: impl Into<String>,
        api: SharedApi,
        space: &str,
        docs: u64,
        tally: Arc<Tally>,
    ) -> Self {
        Self {
            tag: tag.into(),
            api,
            space: space.to_owned(),
            docs,
            pause: None,
            limit: None,
            next: Arc::new(AtomicU64::new(0)),
            tally,
        }
    }

    /// Starts writing.
    pub fn spawn(&self) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let spec = self.clone();
        let stopped = stop.clone();
        let handle = tokio::spawn(async move {
            let mut done = 0u64;
            let offset = spec.tag.bytes().map(u64::from).sum::<u64>();
            while !stopped.load(Ordering::Relaxed) && spec.limit.is_none_or(|limit| done < limit) {
                let api = spec.api.lock().expect("api lock").clone();
                let Some(api) = api else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let n = spec.next.fetch_add(1, Ordering::Relaxed);
                let doc = format!("d/{}", (n * 7 + offset) % spec.docs);
                let field = format!("f{}_{n}", spec.tag);
                let body = json!({ field.clone(): n, "last": format!("{}:{n}", spec.tag) });
                match put(&api, &spec.space, &doc, &body).await {
                    Ok(()) => {
                        done += 1;
                        spec.tally.acked.lock().expect("tally lock").push(Acked {
                            doc,
                            field,
                            value: n,
                        });
                    }
                    Err(error) => {
                        spec.tally.failed.fetch_add(1, Ordering::Relaxed);
                        spec.tally
                            .first_error
                            .lock()
                            .expect("tally lock")
                            .get_or_insert_with(|| format!("{error:#}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                if let Some(pause) = spec.pause {
                    tokio::time::sleep(pause).await;
                }
            }
        });
        Writer { stop, handle }
    }
}

impl Writer {
    /// Stops the writer after its write in flight.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        (&mut self.handle).await?;
        Ok(())
    }

    /// Waits for a writer with a limit to finish.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        (&mut self.handle).await?;
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Deterministic pseudo-random bytes for blob `index` of a run with `seed`.
pub fn blob_bytes(seed: u64, index: u64, len: usize) -> bytes::Bytes {
    use rand::{Rng as _, SeedableRng as _};
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    bytes::Bytes::from(data)
}

/// How long a blob transfer (hundreds of MiB) may take.
pub const BLOB_CALL: Duration = Duration::from_secs(600);

/// Adds `data` to the node at `api` (`POST /v1/blobs`); returns the CID.
pub async fn add_blob(api: &Api, data: bytes::Bytes) -> anyhow::Result<String> {
    let response =
        api.request(Method::POST, "/v1/blobs").timeout(BLOB_CALL).body(data).send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    ensure!(status == StatusCode::CREATED, "POST /v1/blobs: {status} {body}");
    body["cid"].as_str().map(str::to_owned).context("no cid in the answer")
}

/// `GET /v1/blobs/{cid}` streamed and compared with `expected` byte for byte.
pub async fn fetch_and_verify(api: &Api, cid: &str, expected: &[u8]) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    let response =
        api.request(Method::GET, &format!("/v1/blobs/{cid}")).timeout(BLOB_CALL).send().await?;
    let status = response.status();
    ensure!(
        status == StatusCode::OK,
        "GET blob: {status} {}",
        response.text().await.unwrap_or_default()
    );
    let mut at = 0usize;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let end = at + chunk.len();
        ensure!(end <= expected.len(), "blob longer than {} bytes", expected.len());
        if chunk[..] != expected[at..end] {
            let first = chunk.iter().zip(&expected[at..end]).position(|(a, b)| a != b).unwrap_or(0);
            bail!("blob differs at byte {}", at + first);
        }
        at = end;
    }
    ensure!(at == expected.len(), "blob ended after {at} of {} bytes", expected.len());
    Ok(())
}

/// `HEAD /v1/blobs/{cid}`: `Some(size)` when the node holds the whole blob.
pub async fn head_blob(api: &Api, cid: &str) -> anyhow::Result<Option<u64>> {
    let response =
        api.request(Method::HEAD, &format!("/v1/blobs/{cid}")).timeout(SHORT_CALL).send().await?;
    match response.status() {
        // The header itself: a HEAD answer has no body, so reqwest's length would be 0.
        StatusCode::OK => Ok(response
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())),
        StatusCode::NOT_FOUND => Ok(None),
        other => bail!("HEAD blob: {other}"),
    }
}

/// MiB per second for `bytes` in `elapsed`.
pub fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64().max(1e-6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_problems_finds_errors_panics_and_repairs_through_colour_codes() {
        let lines: Vec<String> = [
            "\u{1b}[2m2026-11-29T06:09:17Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m cosmic_node: node started",
            "\u{1b}[2m2026-11-29T06:09:18Z\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m cosmic_store: open failed",
            "2026-11-29T06:09:19Z  WARN libp2p_kad::behaviour: Failed to trigger bootstrap",
            "thread 'main' panicked at src/main.rs:1:1",
            "2026-11-29T06:09:20Z  INFO redb: Repairing database file",
        ]
        .map(str::to_owned)
        .to_vec();
        let problems = log_problems(&lines);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("ERROR cosmic_store: open failed"), "{}", problems[0]);
        assert!(!problems[0].contains('\u{1b}'));
        assert!(problems[1].contains("panicked"));
        assert!(problems[2].contains("Repairing"));
    }
}
