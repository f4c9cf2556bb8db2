//! Groups with real `cosmic-node` processes on 127.0.0.1, driven through the HTTP API:
//! propagation latency, sustained replication, catch-up, blobs next to a plain TCP copy,
//! resident memory, and one write reaching 20 nodes.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{Better, Figure, Options, ms, quantile, rss_mib};
use crate::client::{Api, EventStream};
use crate::harness::TestNode;
use crate::scenarios::common::{
    Cluster, add_blob, blob_bytes, fetch_and_verify, mib_per_s, put, space_state, start_node,
};

/// Fields per document when many entries are written through the API.
const FIELDS: u64 = 100;
/// Concurrent writers when many entries are written through the API.
const LANES: u64 = 4;
/// How long one event may take to arrive before the run fails.
const EVENT_DEADLINE: Duration = Duration::from_secs(30);
/// How long a node may settle before its idle memory is read.
const SETTLE: Duration = Duration::from_secs(5);

/// Writes `entries` entries to `space` on `api`: documents `{prefix}/{n}` of [`FIELDS`]
/// integer fields, [`LANES`] writers at a time; returns how long it took.
async fn write_entries(
    api: &Api,
    space: &str,
    prefix: &str,
    entries: u64,
) -> anyhow::Result<Duration> {
    let n_docs = entries.div_ceil(FIELDS);
    let started = Instant::now();
    let mut lanes = Vec::new();
    for lane in 0..LANES {
        let api = api.clone();
        let space = space.to_owned();
        let prefix = prefix.to_owned();
        lanes.push(tokio::spawn(async move {
            for doc in (lane..n_docs).step_by(LANES as usize) {
                let body: Map<String, Value> =
                    (0..FIELDS).map(|f| (format!("e{f}"), json!(doc * FIELDS + f))).collect();
                put(&api, &space, &format!("{prefix}/{doc}"), &Value::Object(body)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for lane in lanes {
        lane.await??;
    }
    Ok(started.elapsed())
}

/// Polls (every 20 ms) until `api` shows `space` with the state hash `hash`.
async fn wait_hash(api: &Api, space: &str, hash: &str, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if space_state(api, space).await.is_some_and(|(h, _)| h == hash) {
            return Ok(());
        }
        ensure!(started.elapsed() < timeout, "no convergence within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads events until one for `doc` arrives; `None` after `deadline`.
async fn wait_event(events: &mut EventStream, doc: &str, deadline: Duration) -> Option<()> {
    let started = Instant::now();
    loop {
        let left = deadline.checked_sub(started.elapsed())?;
        let (_, data) = events.next(left).await?;
        if data["doc"] == doc {
            return Some(());
        }
    }
}

/// A gauge or counter from a node's `GET /metrics`.
async fn metric(api: &Api, name: &str) -> anyhow::Result<f64> {
    let text = api.request(Method::GET, "/metrics").send().await?.text().await?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .with_context(|| format!("no {name} in /metrics"))
}

/// The process id of cluster node `index`.
fn pid_of(cluster: &Cluster, index: usize) -> anyhow::Result<u32> {
    let node = cluster.slots[index].node.as_ref().context("the node is down")?;
    Ok(node.lock().map_err(|_| anyhow!("node lock"))?.pid())
}

/// The moments change events arrived on one SSE stream, read by a task of their own so
/// that several streams are timed at once; the task stops when this is dropped.
struct EventTimes {
    arrived: tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
    reader: tokio::task::JoinHandle<()>,
}

impl EventTimes {
    /// Starts reading `events`: each event's document key with the moment it arrived.
    fn new(mut events: EventStream) -> EventTimes {
        let (sender, arrived) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Some((_, data)) = events.next(EVENT_DEADLINE).await {
                let doc = data["doc"].as_str().unwrap_or_default().to_owned();
                if sender.send((doc, Instant::now())).is_err() {
                    return;
                }
            }
        });
        EventTimes { arrived, reader }
    }

    /// When the event of `doc` arrived.
    async fn of(&mut self, doc: &str) -> anyhow::Result<Instant> {
        loop {
            match tokio::time::timeout(EVENT_DEADLINE, self.arrived.recv()).await {
                Ok(Some((key, at))) if key == doc => return Ok(at),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => bail!("{doc} did not arrive within {EVENT_DEADLINE:?}"),
            }
        }
    }
}

impl Drop for EventTimes {
    fn drop(&mut self) {
        // Before the nodes stop: their streams would end in an error.
        self.reader.abort();
    }
}

/// The `propagation` group: write-to-event latency from node A to node B, with the parts
/// of it that can be seen from outside: A's answer to the PUT and A's own event.
pub async fn propagation(options: Options, emit: &mut dyn FnMut(Figure)) -> anyhow::Result<()> {
    let samples = options.pick(300, 50);
    let warm = 30;
    let cluster = Cluster::new(2).await?;
    let (a, b) = (cluster.api(0)?, cluster.api(1)?);
    let space = cluster.space.clone();
    let mut on_b = EventTimes::new(b.events(&space, None).await);
    let mut on_a = EventTimes::new(a.events(&space, None).await);
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    let (mut both_p50, mut answer_p50, mut local_p50) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..options.runs() {
        let (mut latencies, mut both, mut answers, mut locals) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..warm + samples {
            let doc = format!("lat/{run}/{i}");
            let started = Instant::now();
            put(&a, &space, &doc, &json!({ "v": i })).await?;
            let answered = started.elapsed();
            let local = on_a.of(&doc).await?;
            let remote = on_b.of(&doc).await?;
            if i >= warm {
                latencies.push(ms(remote - started));
                both.push(ms(answered.max(remote - started)));
                answers.push(ms(answered));
                locals.push(ms(local - started));
            }
        }
        p50.push(quantile(&latencies, 0.5));
        p99.push(quantile(&latencies, 0.99));
        both_p50.push(quantile(&both, 0.5));
        answer_p50.push(quantile(&answers, 0.5));
        local_p50.push(quantile(&locals, 0.5));
    }
    let method = format!(
        "Two node processes on 127.0.0.1 in one open space; one HTTP PUT (one field) on A at \
         a time (the next once A has answered and B has the event), timed from sending it to \
         the change event on B's SSE stream (A's commit, gossip, B's checks and commit); \
         {samples} samples per run after {warm} warm-up"
    );
    emit(Figure::new("propagation", "latency p50", "ms", Better::Lower, p50, method.clone()));
    emit(Figure::new("propagation", "latency p99", "ms", Better::Lower, p99, method.clone()));
    let parts = format!(
        "{method}; the same writes, timed until both A has answered and B has the event, to \
         A's answer (after its durable commit), and to A's own event"
    );
    emit(Figure::new(
        "propagation",
        "answered and on B p50",
        "ms",
        Better::Lower,
        both_p50,
        parts.clone(),
    ));
    emit(Figure::new(
        "propagation",
        "A answers p50",
        "ms",
        Better::Lower,
        answer_p50,
        parts.clone(),
    ));
    emit(Figure::new("propagation", "event on A p50", "ms", Better::Lower, local_p50, parts));
    Ok(())
}

/// The `replication` group: A takes writes as fast as its API acknowledges them; how many
/// entries per second arrive on B.
pub async fn replication(options: Options, emit: &mut dyn FnMut(Figure)) -> anyhow::Result<()> {
    let entries = options.pick(30_000, 2_000);
    let cluster = Cluster::new(2).await?;
    let (a, b) = (cluster.api(0)?, cluster.api(1)?);
    let space = cluster.space.clone();
    put(&a, &space, "warm", &json!({ "v": 1 })).await?;
    cluster.wait_converged(&[0, 1], Duration::from_secs(60)).await?;
    let mut replicated = Vec::new();
    let mut local = Vec::new();
    for run in 0..options.runs() {
        let (_, before) = space_state(&b, &space).await.context("B's state")?;
        let started = Instant::now();
        let wrote = write_entries(&a, &space, &format!("r{run}"), entries).await?;
        let (hash, _) = space_state(&a, &space).await.context("A's state")?;
        wait_hash(&b, &space, &hash, Duration::from_secs(600)).await?;
        let elapsed = started.elapsed();
        let (_, after) = space_state(&b, &space).await.context("B's state")?;
        ensure!(
            after >= before + entries,
            "B holds {after} entries, expected {}",
            before + entries
        );
        replicated.push(entries as f64 / elapsed.as_secs_f64());
        local.push(entries as f64 / wrote.as_secs_f64());
    }
    let method = format!(
        "Two node processes on 127.0.0.1; {LANES} HTTP writers on A, each PUTting documents of \
         {FIELDS} fields (one durable transaction each) until {entries} entries; timed from the \
         first PUT until B's state hash equals A's"
    );
    emit(Figure::new(
        "replication",
        "sustained replicated entries",
        "entries/s",
        Better::Higher,
        replicated,
        method,
    ));
    emit(Figure::new(
        "replication",
        "local write throughput through the API",
        "entries/s",
        Better::Higher,
        local,
        format!(
            "The same runs: entries acknowledged by A's API per second ({LANES} concurrent \
             PUTs of {FIELDS}-field documents, each durable)"
        ),
    ));
    // How the entries travelled: batch size, and losses (each one repaired).
    let published = metric(&a, r#"cosmic_gossip_entries_total{direction="published"}"#).await?;
    let batches = metric(&a, "cosmic_gossip_batches_published_total").await?;
    emit(Figure::new(
        "replication",
        "entries per gossip batch",
        "entries",
        Better::Higher,
        vec![published / batches.max(1.0)],
        "The same runs, all together: A's cosmic_gossip_entries_total{direction=published} over \
         cosmic_gossip_batches_published_total"
            .to_owned(),
    ));
    let mut lost = 0.0;
    for reason in ["publish_failed", "inbound_queue_full", "send_queue_full", "sequence_gap"] {
        let name = format!("cosmic_gossip_lost_total{{reason=\"{reason}\"}}");
        lost += metric(&a, &name).await? + metric(&b, &name).await?;
    }
    emit(Figure::new(
        "replication",
        "gossip messages lost and repaired",
        "messages",
        Better::Lower,
        vec![lost],
        "The same runs, all together: cosmic_gossip_lost_total of A and B, every reason (each \
         loss starts a reconciliation with the peer concerned)"
            .to_owned(),
    ));
    Ok(())
}

/// The `catchup` group: a new node joins a space of 100,000 entries and catches up.
pub async fn catchup(options: Options, emit: &mut dyn FnMut(Figure)) -> anyhow::Result<()> {
    let entries = options.pick(100_000, 5_000);
    let mut cluster = Cluster::new(1).await?;
    let a = cluster.api(0)?;
    let space = cluster.space.clone();
    write_entries(&a, &space, "big", entries).await?;
    let (hash, held) = space_state(&a, &space).await.context("A's state")?;
    ensure!(held >= entries, "A holds {held} entries after writing {entries}");
    let mut times = Vec::new();
    let mut bytes = Vec::new();
    for _ in 0..options.runs() {
        let index = cluster.add().await?;
        let joiner = cluster.api(index)?;
        let started = Instant::now();
        cluster.join(index).await?;
        wait_hash(&joiner, &space, &hash, Duration::from_secs(600)).await?;
        times.push(started.elapsed().as_secs_f64());
        bytes.push(settled_metric(&joiner, "cosmic_sync_bytes_total").await? / 1e6);
        cluster.stop(index, "KILL").await?;
    }
    let method = format!(
        "Node A (a process on 127.0.0.1) holds {held} entries ({FIELDS} fields per document, \
         written through its API); each run starts a new node that dials A, joins the space \
         and is timed from the join request until its state hash equals A's; bytes are the \
         new node's cosmic_sync_bytes_total (reconciliation both ways) from GET /metrics"
    );
    emit(Figure::new(
        "catchup",
        format!("catch-up time, {entries} entries"),
        "s",
        Better::Lower,
        times,
        method.clone(),
    ));
    emit(Figure::new(
        "catchup",
        format!("catch-up bytes, {entries} entries"),
        "MB",
        Better::Lower,
        bytes,
        method,
    ));
    Ok(())
}

/// `name` once it is non-zero and has stopped moving: a session adds its bytes when it
/// ends, which can be a moment after the state hashes first match.
async fn settled_metric(api: &Api, name: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut last = metric(api, name).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = metric(api, name).await?;
        if (now == last && now > 0.0) || started.elapsed() > Duration::from_secs(10) {
            return Ok(now);
        }
        last = now;
    }
}

/// Copies `data` over one plain TCP connection on 127.0.0.1; returns the time from the
/// connect until the receiver has read every byte.
fn tcp_copy(data: &[u8]) -> anyhow::Result<Duration> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> anyhow::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut buffer = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = stream.read(&mut buffer)?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    });
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.write_all(data)?;
    drop(stream);
    let received = receiver.join().map_err(|_| anyhow!("the receiver panicked"))??;
    let elapsed = started.elapsed();
    ensure!(received == data.len() as u64, "TCP copy moved {received} of {} bytes", data.len());
    Ok(elapsed)
}

/// The `blobs` group: a 1 GiB blob added on A through the API and fetched by B, next to
/// a plain TCP copy of the same bytes in the same run.
pub async fn blobs(options: Options, emit: &mut dyn FnMut(Figure)) -> anyhow::Result<()> {
    let mib = options.pick(1024, 64);
    let size = mib * 1024 * 1024;
    let mut add = Vec::new();
    let mut transfer = Vec::new();
    let mut tcp = Vec::new();
    for run in 0..options.runs() {
        // A fresh pair per run: no blob is already there, and the dirs go after each run.
        let cluster = Cluster::new(2).await?;
        let (a, b) = (cluster.api(0)?, cluster.api(1)?);
        let data = blob_bytes(0x00b1_0b5e ^ run as u64, 0, size);
        let started = Instant::now();
        let cid = add_blob(&a, data.clone()).await?;
        add.push(mib_per_s(size, started.elapsed()));
        let started = Instant::now();
        fetch_and_verify(&b, &cid, &data).await?;
        transfer.push(mib_per_s(size, started.elapsed()));
        let copy = data.clone();
        let elapsed = tokio::task::spawn_blocking(move || tcp_copy(&copy)).await??;
        tcp.push(mib_per_s(size, elapsed));
    }
    emit(Figure::new(
        "blobs",
        format!("blob add, {mib} MiB"),
        "MiB/s",
        Better::Higher,
        add,
        format!(
            "POST /v1/blobs of {mib} MiB of random bytes to a node process on 127.0.0.1, timed \
             to the answer with the CID (upload over HTTP, BLAKE3 outboard, durable store)"
        ),
    ));
    emit(Figure::new(
        "blobs",
        format!("blob transfer, {mib} MiB"),
        "MiB/s",
        Better::Higher,
        transfer,
        "GET /v1/blobs/CID on node B for the blob just added on node A (both processes on \
         127.0.0.1): B fetches it from A over iroh (QUIC) with verified streaming and streams \
         it to the client, which compares every byte; timed to the last byte",
    ));
    emit(Figure::new(
        "blobs",
        format!("plain TCP copy, {mib} MiB"),
        "MiB/s",
        Better::Higher,
        tcp,
        "The same bytes in the same run over one std TcpStream on 127.0.0.1 (write_all, \
         reader discards into a 256 KiB buffer), timed from connect to the last byte read",
    ));
    Ok(())
}

/// Starts one node on a new data dir with no peers and no space (blocking work).
async fn start_lone() -> anyhow::Result<TestNode> {
    tokio::task::spawn_blocking(TestNode::start)
        .await
        .map_err(|_| anyhow!("a node failed to start"))
}

/// The `memory` group: an idle node, and a node holding 1,000,000 entries.
pub async fn memory(options: Options, emit: &mut dyn FnMut(Figure)) -> anyhow::Result<()> {
    let mut idle = Vec::new();
    for _ in 0..options.runs() {
        let node = start_lone().await?;
        tokio::time::sleep(SETTLE).await;
        idle.push(rss_mib(node.pid())?);
    }
    emit(Figure::new(
        "memory",
        "idle node",
        "MiB",
        Better::Lower,
        idle,
        format!(
            "VmRSS from /proc/<pid>/status of a freshly started node process (no peers, no \
             space, default configuration) after {}s idle",
            SETTLE.as_secs()
        ),
    ));

    let entries = options.pick(1_000_000, 20_000);
    let mut cluster = Cluster::new(1).await?;
    let a = cluster.api(0)?;
    let space = cluster.space.clone();
    let wrote = write_entries(&a, &space, "m", entries).await?;
    eprintln!("memory: wrote {entries} entries through the API in {:.0}s", wrote.as_secs_f64());
    tokio::time::sleep(SETTLE).await;
    let after_writing = rss_mib(pid_of(&cluster, 0)?)?;
    let mut reopened = Vec::new();
    for _ in 0..options.runs() {
        cluster.stop(0, "TERM").await?;
        cluster.start(0).await?;
        let api = cluster.api(0)?;
        let (_, held) = space_state(&api, &space).await.context("the node's state")?;
        ensure!(held >= entries, "the node holds {held} entries after a restart");
        // Read some documents, as a node in use does.
        for doc in (0..entries / FIELDS).step_by(((entries / FIELDS) / 100).max(1) as usize) {
            api.ok(Method::GET, &format!("/v1/spaces/{space}/docs/m/{doc}"), None).await;
        }
        tokio::time::sleep(SETTLE).await;
        reopened.push(rss_mib(pid_of(&cluster, 0)?)?);
    }
    emit(Figure::new(
        "memory",
        format!("node with {entries} entries, restarted"),
        "MiB",
        Better::Lower,
        reopened,
        format!(
            "VmRSS of a node process holding {entries} entries ({FIELDS} fields per document, \
             written through its API), restarted (SIGTERM, start), after listing its spaces, \
             reading 100 documents and {}s idle",
            SETTLE.as_secs()
        ),
    ));
    emit(Figure::new(
        "memory",
        format!("node with {entries} entries, right after writing them"),
        "MiB",
        Better::Lower,
        vec![after_writing],
        format!(
            "VmRSS of the same node process {}s after its API acknowledged the last of the \
             {entries} entries (one run: the writes take the time)",
            SETTLE.as_secs()
        ),
    ));
    Ok(())
}

/// Node `api` joins `space` and waits until the space's record has arrived.
pub(super) async fn join(api: &Api, space: &str) -> anyhow::Result<()> {
    api.ok(Method::POST, &format!("/v1/spaces/{space}/join"), None).await;
    let started = Instant::now();
    loop {
        let spaces = api.ok(Method::GET, "/v1/spaces", None).await;
        if spaces
            .as_array()
            .into_iter()
            .flatten()
            .any(|entry| entry["id"] == space && !entry["mode"].is_null())
        {
            return Ok(());
        }
        ensure!(started.elapsed() < Duration::from_secs(120), "no space record after joining");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes `doc` on `writer` and waits until every stream in `streams` has shown it;
/// returns the time until the last one did.
pub(super) async fn write_to_all(
    writer: &Api,
    space: &str,
    doc: &str,
    streams: &mut [EventStream],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    put(writer, space, doc, &json!({ "v": 1 })).await?;
    let waits = streams.iter_mut().enumerate().map(|(index, events)| async move {
        wait_event(events, doc, Duration::from_secs(60))
            .await
            .map(|()| started.elapsed())
            .ok_or_else(|| anyhow!("{doc} did not reach node {index} within 60s"))
    });
    let times = futures::future::join_all(waits).await;
    let mut slowest = Duration::ZERO;
    for time in times {
        slowest = slowest.max(time?);
    }
    Ok(slowest)
}

/// The `scale` group: 20 node processes in a star around node 0, one write on a leaf,
/// time until all 20 show it; and their resident memory together.
pub async fn scale(options: Options, emit: &mut dyn FnMut(Figure)) -> anyhow::Result<()> {
    let n = options.pick(20, 5);
    let root = tempfile::Builder::new().prefix("cosmic-bench-").tempdir()?;
    let dir = |index: usize| -> PathBuf { root.path().join(format!("node{index}")) };
    let (center, center_api) = start_node(dir(0), Vec::new()).await?;
    let space = center_api.create_space("open").await;
    let center_addr = center.p2p_addr();
    let mut nodes = vec![(center, center_api)];
    for index in 1..n {
        nodes.push(start_node(dir(index), vec![center_addr.clone()]).await?);
    }
    for (_, api) in &nodes[1..] {
        join(api, &space).await?;
    }
    let mut streams = Vec::new();
    for (_, api) in &nodes {
        streams.push(api.events(&space, None).await);
    }
    let writer = nodes[n - 1].1.clone();
    // Let the gossip mesh form: a warm-up write must reach everyone first.
    let started = Instant::now();
    loop {
        match write_to_all(&writer, &space, "scale/warm", &mut streams).await {
            Ok(_) => break,
            Err(error) if started.elapsed() < Duration::from_secs(120) => {
                eprintln!("scale: warm-up: {error:#}; again");
            }
            Err(error) => bail!("the warm-up write did not reach all {n} nodes: {error:#}"),
        }
    }
    let mut times = Vec::new();
    for run in 0..options.runs() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        times.push(ms(write_to_all(&writer, &space, &format!("scale/{run}"), &mut streams).await?));
    }
    let mut total = 0.0;
    for (node, _) in &nodes {
        total += rss_mib(node.pid())?;
    }
    let method = format!(
        "{n} node processes on 127.0.0.1, each bootstrapped to node 0 only (a star), all in \
         one open space; one HTTP PUT on a leaf node, timed until the change event has arrived \
         on the SSE stream of every one of the {n} nodes (its own included)"
    );
    emit(Figure::new(
        "scale",
        format!("one write reaching all {n} nodes"),
        "ms",
        Better::Lower,
        times,
        method,
    ));
    emit(Figure::new(
        "scale",
        format!("resident memory of all {n} nodes"),
        "MiB",
        Better::Lower,
        vec![total],
        format!("Sum of the VmRSS of the {n} node processes after the writes (one run)"),
    ));
    drop(streams);
    drop(nodes);
    Ok(())
}
