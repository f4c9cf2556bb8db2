//! The soak run behind `cargo xtask soak`: five real nodes under steady writes and churn
//! for a fixed time, with the resident memory of every process sampled throughout.
//!
//! Two nodes (the *steady* ones) are never restarted: their memory over time is what the
//! run judges. The other three are restarted in turn, alternately with SIGTERM and
//! SIGKILL, while everyone keeps writing. The writes go to a bounded set of documents
//! (overwrites, not growth), so a node's working set should stop growing once every
//! document exists; memory that keeps climbing after the warm-up is a leak.
//!
//! The run fails when a steady node's resident memory at the end exceeds its level at the
//! end of the warm-up by more than [`Bound`], or when the nodes do not converge (equal
//! state hashes) after the writers stop.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::client::Api;
use crate::harness::TestNode;

/// How many nodes take part.
pub const NODES: usize = 5;
/// How many of them are never restarted (the first ones).
pub const STEADY: usize = 2;

/// What a soak run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long the writers run.
    pub duration: Duration,
    /// How long after the start memory is still allowed to grow (caches filling).
    pub warm_up: Duration,
    /// How often memory is sampled.
    pub sample_every: Duration,
    /// How often one of the churned nodes is restarted.
    pub churn_every: Duration,
    /// Writes per second, per node.
    pub writes_per_second: u32,
    /// How many distinct documents the writes go to.
    pub documents: u32,
    /// Where the data dirs and the CSV go (the data dirs are removed at the end).
    pub out_dir: PathBuf,
}

impl Options {
    /// The full run: ten minutes, the first three of them warm-up.
    pub fn full(out_dir: &Path) -> Self {
        Self {
            duration: Duration::from_secs(600),
            warm_up: Duration::from_secs(180),
            sample_every: Duration::from_secs(10),
            churn_every: Duration::from_secs(45),
            writes_per_second: 20,
            documents: 500,
            out_dir: out_dir.to_path_buf(),
        }
    }
}

/// The allowed growth of a steady node's resident memory after the warm-up:
/// `end <= warm_up_level * (1 + ratio) + slack`.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// Allowed relative growth.
    pub ratio: f64,
    /// Allowed absolute growth, in MiB.
    pub slack_mib: f64,
}

/// The bound the run enforces: 20 % plus 16 MiB.
pub const BOUND: Bound = Bound { ratio: 0.20, slack_mib: 16.0 };

/// One memory sample of one node.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since the start of the run.
    pub at_s: u64,
    /// Node index.
    pub node: usize,
    /// VmRSS in MiB, `None` while the node is down.
    pub rss_mib: Option<f64>,
}

/// The outcome of a soak run.
#[derive(Debug)]
pub struct Report {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// Acknowledged writes, all nodes together.
    pub acknowledged: u64,
    /// Writes refused or not answered (mostly while a node was down).
    pub failed: u64,
    /// Restarts done.
    pub restarts: u32,
    /// Seconds from the writers' stop until all state hashes were equal (`None`: never).
    pub converged_after_s: Option<f64>,
    /// Per steady node: (RSS at end of warm-up, RSS at end, allowed maximum), MiB.
    pub steady: Vec<(f64, f64, f64)>,
}

impl Report {
    /// Whether the run passed: converged and within the memory bound.
    pub fn passed(&self) -> bool {
        self.converged_after_s.is_some()
            && !self.steady.is_empty()
            && self.steady.iter().all(|(_, end, max)| end <= max)
    }

    /// The samples as CSV: `seconds,node0,node1,...` (empty cell while a node is down).
    pub fn csv(&self) -> String {
        let mut out = String::from("seconds");
        for node in 0..NODES {
            let _ = write!(out, ",node{node}_rss_mib");
        }
        out.push('\n');
        let mut times: Vec<u64> = self.samples.iter().map(|s| s.at_s).collect();
        times.dedup();
        for at in times {
            let _ = write!(out, "{at}");
            for node in 0..NODES {
                let rss = self
                    .samples
                    .iter()
                    .find(|s| s.at_s == at && s.node == node)
                    .and_then(|s| s.rss_mib);
                match rss {
                    Some(rss) => {
                        let _ = write!(out, ",{rss:.1}");
                    }
                    None => out.push(','),
                }
            }
            out.push('\n');
        }
        out
    }

    /// A Markdown table of memory over time (one row a minute) and the verdict.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "| minute |");
        for node in 0..NODES {
            let role = if node < STEADY { "steady" } else { "churned" };
            let _ = write!(out, " node {node} ({role}) |");
        }
        out.push('\n');
        out.push_str(&"|---".repeat(NODES + 1));
        out.push_str("|\n");
        let mut minute = 0;
        loop {
            let at = minute * 60;
            let row: Vec<&Sample> =
                self.samples.iter().filter(|s| s.at_s >= at && s.at_s < at + 60).collect();
            if row.is_empty() {
                break;
            }
            let _ = write!(out, "| {minute} |");
            for node in 0..NODES {
                let last = row.iter().rev().find(|s| s.node == node).and_then(|s| s.rss_mib);
                match last {
                    Some(rss) => {
                        let _ = write!(out, " {rss:.0} MiB |");
                    }
                    None => out.push_str(" down |"),
                }
            }
            out.push('\n');
            minute += 1;
        }
        out.push('\n');
        for (node, (warm, end, max)) in self.steady.iter().enumerate() {
            let verdict = if end <= max { "within" } else { "OVER" };
            let _ = writeln!(
                out,
                "- steady node {node}: {warm:.1} MiB after warm-up, {end:.1} MiB at the end, \
                 bound {max:.1} MiB: {verdict}"
            );
        }
        let _ = writeln!(
            out,
            "- writes acknowledged: {}, refused or unanswered: {}, restarts: {}",
            self.acknowledged, self.failed, self.restarts
        );
        match self.converged_after_s {
            Some(s) => {
                let _ = writeln!(out, "- converged {s:.1} s after the writers stopped");
            }
            None => out.push_str("- did NOT converge\n"),
        }
        out
    }
}

/// VmRSS of a process in MiB, from `/proc/<pid>/status`.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// One node slot: its data dir and, while it runs, the process and a client.
struct Slot {
    dir: PathBuf,
    node: Option<TestNode>,
    api: Option<Api>,
}

/// Starts a node on `dir` (blocking work, run off the async threads).
async fn start(dir: PathBuf, bootstrap: Option<String>) -> anyhow::Result<(TestNode, Api)> {
    tokio::task::spawn_blocking(move || {
        let node = match &bootstrap {
            Some(addr) => TestNode::start_in_with_args(&dir, &["--bootstrap", addr]),
            None => TestNode::start_in_with_args(&dir, &[]),
        };
        let api = Api::new(&node);
        (node, api)
    })
    .await
    .map_err(|error| anyhow::anyhow!("a node failed to start: {error}"))
}

/// The state hash of `space` on a node, if it answers.
async fn state_hash(api: &Api, space: &str) -> Option<String> {
    let response = api.request(Method::GET, "/v1/spaces").send().await.ok()?;
    let spaces: Value = response.json().await.ok()?;
    spaces
        .as_array()?
        .iter()
        .find(|entry| entry["id"] == space)
        .and_then(|entry| entry["state_hash"].as_str())
        .map(str::to_owned)
}

/// Runs the soak; `progress` gets one line per sample round.
pub async fn run(options: &Options, progress: impl Fn(&str)) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&options.out_dir)?;
    let data = tempfile::tempdir_in(&options.out_dir)?;
    let mut slots = Vec::new();
    let mut bootstrap = None;
    for index in 0..NODES {
        let dir = data.path().join(format!("node{index}"));
        let (node, api) = start(dir.clone(), bootstrap.clone()).await?;
        if bootstrap.is_none() {
            bootstrap = Some(node.p2p_addr());
        }
        slots.push(Slot { dir, node: Some(node), api: Some(api) });
    }
    let bootstrap = bootstrap.expect("node 0 started");
    let first = slots[0].api.clone().expect("node 0 runs");
    let space = first.create_space("open").await;
    for slot in &slots[1..] {
        let api = slot.api.as_ref().expect("running");
        api.ok(Method::POST, &format!("/v1/spaces/{space}/join"), None).await;
    }
    let slots = Arc::new(Mutex::new(slots));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let stop_at = started + options.duration;

    // One writer per node; a writer whose node is down counts its attempt as failed.
    let mut writers = Vec::new();
    for index in 0..NODES {
        let slots = slots.clone();
        let acknowledged = acknowledged.clone();
        let failed = failed.clone();
        let space = space.clone();
        let options = options.clone();
        writers.push(tokio::spawn(async move {
            let period = Duration::from_secs_f64(1.0 / f64::from(options.writes_per_second));
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: u64 = 0;
            while Instant::now() < stop_at {
                tick.tick().await;
                n += 1;
                let api = slots.lock().await[index].api.clone();
                let Some(api) = api else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let doc = (n * 7 + index as u64 * 131) % u64::from(options.documents);
                let body = json!({ "by": index, "n": n, "text": format!("{:0>64}", n) });
                let request = api
                    .request(Method::PUT, &format!("/v1/spaces/{space}/docs/soak/{doc}"))
                    .json(&body);
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    let mut samples = Vec::new();
    let mut restarts = 0u32;
    let mut next_churn = started + options.churn_every;
    let mut churn_turn = 0usize;
    while Instant::now() < stop_at {
        let at_s = started.elapsed().as_secs();
        {
            let guard = slots.lock().await;
            for (node, slot) in guard.iter().enumerate() {
                let rss_mib = slot.node.as_ref().and_then(|n| rss_mib(n.pid()));
                samples.push(Sample { at_s, node, rss_mib });
            }
        }
        let line: Vec<String> = samples[samples.len() - NODES..]
            .iter()
            .map(|s| s.rss_mib.map_or_else(|| "down".to_owned(), |r| format!("{r:.0}")))
            .collect();
        progress(&format!(
            "t={at_s:>4}s rss MiB [{}] acked={} failed={}",
            line.join(", "),
            acknowledged.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        ));
        if Instant::now() >= next_churn {
            next_churn += options.churn_every;
            let index = STEADY + churn_turn % (NODES - STEADY);
            let signal = if churn_turn.is_multiple_of(2) { "TERM" } else { "KILL" };
            churn_turn += 1;
            let (dir, node) = {
                let mut guard = slots.lock().await;
                let slot = &mut guard[index];
                slot.api = None;
                (slot.dir.clone(), slot.node.take())
            };
            if let Some(mut node) = node {
                node.signal(signal);
                let exited = tokio::task::spawn_blocking(move || {
                    node.wait_exit(Duration::from_secs(15)).is_some()
                })
                .await?;
                anyhow::ensure!(exited, "node {index} did not exit after SIG{signal}");
            }
            let (node, api) = start(dir, Some(bootstrap.clone())).await?;
            api.ok(Method::POST, &format!("/v1/spaces/{space}/join"), None).await;
            let mut guard = slots.lock().await;
            guard[index].node = Some(node);
            guard[index].api = Some(api);
            restarts += 1;
            progress(&format!("restarted node {index} after SIG{signal}"));
        }
        let left = stop_at.saturating_duration_since(Instant::now());
        tokio::time::sleep(options.sample_every.min(left)).await;
    }
    for writer in writers {
        writer.await?;
    }
    let writers_stopped = Instant::now();
    let at_s = started.elapsed().as_secs();
    {
        let guard = slots.lock().await;
        for (node, slot) in guard.iter().enumerate() {
            let rss_mib = slot.node.as_ref().and_then(|n| rss_mib(n.pid()));
            samples.push(Sample { at_s, node, rss_mib });
        }
    }

    // Convergence: every node shows the same state hash, within two minutes.
    let apis: Vec<Api> = slots.lock().await.iter().filter_map(|s| s.api.clone()).collect();
    let mut converged_after_s = None;
    while writers_stopped.elapsed() < Duration::from_secs(120) {
        let mut hashes = Vec::new();
        for api in &apis {
            hashes.push(state_hash(api, &space).await);
        }
        if hashes.iter().all(|h| h.is_some() && *h == hashes[0]) {
            converged_after_s = Some(writers_stopped.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Memory verdict for the steady nodes: the level at the end of the warm-up (the last
    // sample before it) against the last sample.
    let warm_s = options.warm_up.as_secs();
    let mut steady = Vec::new();
    for node in 0..STEADY {
        let of_node = || samples.iter().filter(move |s| s.node == node);
        let warm = of_node().filter(|s| s.at_s <= warm_s).filter_map(|s| s.rss_mib).next_back();
        let end = of_node().filter_map(|s| s.rss_mib).next_back();
        if let (Some(warm), Some(end)) = (warm, end) {
            let max = warm * (1.0 + BOUND.ratio) + BOUND.slack_mib;
            steady.push((warm, end, max));
        }
    }
    drop(apis);
    // Stop every node before the data dirs go.
    for slot in slots.lock().await.iter_mut() {
        slot.api = None;
        slot.node = None;
    }
    Ok(Report {
        samples,
        acknowledged: acknowledged.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        restarts,
        converged_after_s,
        steady,
    })
}
