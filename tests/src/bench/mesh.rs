//! The `mesh` group: many node processes, each bootstrapped to a few random others, and
//! one write that has to reach them all through the gossip mesh.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use rand::seq::SliceRandom as _;
use rand::{RngExt as _, SeedableRng as _};

use super::procs::{join, write_to_all};
use super::{Better, Figure, Options, ms, quantile, rss_mib};
use crate::scenarios::common::start_node;

/// How many earlier nodes each new node is bootstrapped to.
const LINKS: usize = 3;
/// The seed of the topology, so that every run builds the same mesh.
const SEED: u64 = 0x6d65_7368;

/// The `mesh` group: 100 node processes (10 with `--quick`), node `i` bootstrapped to
/// three random nodes among those started before it; after the mesh has settled, the
/// resident memory of each idle node, then one write on a random node timed until every
/// node's event stream has shown it.
pub async fn mesh(options: Options, emit: &mut dyn FnMut(Figure)) -> anyhow::Result<()> {
    let n = options.pick(100, 10);
    let root = tempfile::Builder::new().prefix("cosmic-bench-").tempdir()?;
    let dir = |index: usize| -> PathBuf { root.path().join(format!("node{index}")) };
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    let mut nodes = Vec::with_capacity(n);
    let mut addrs: Vec<String> = Vec::with_capacity(n);
    let started = Instant::now();
    for index in 0..n {
        let mut earlier = addrs.clone();
        earlier.shuffle(&mut rng);
        earlier.truncate(LINKS);
        let (node, api) = start_node(dir(index), earlier).await?;
        addrs.push(node.p2p_addr());
        nodes.push((node, api));
    }
    eprintln!("mesh: {n} nodes started in {:.1} s", started.elapsed().as_secs_f64());
    let space = nodes[0].1.create_space("open").await;
    for (_, api) in &nodes[1..] {
        join(api, &space).await?;
    }
    let mut streams = Vec::with_capacity(n);
    for (_, api) in &nodes {
        streams.push(api.events(&space, None).await);
    }
    // The warm-up write must reach everyone before anything is timed.
    let writer = nodes[rng.random_range(0..n)].1.clone();
    let started = Instant::now();
    loop {
        match write_to_all(&writer, &space, "mesh/warm", &mut streams).await {
            Ok(_) => break,
            Err(error) if started.elapsed() < Duration::from_secs(180) => {
                eprintln!("mesh: warm-up: {error:#}; again");
            }
            Err(error) => bail!("the warm-up write did not reach all {n} nodes: {error:#}"),
        }
    }
    // Idle: let reconciliation rounds and gossip heartbeats settle, then read memory.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pids: Vec<u32> = nodes.iter().map(|(node, _)| node.pid()).collect();
    let idle_from = (Instant::now(), cpu_times(&pids)?);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_cpu = cpu_ms_since(&pids, &idle_from.1)? / idle_from.0.elapsed().as_secs_f64();
    let mut resident = Vec::with_capacity(n);
    for (node, _) in &nodes {
        resident.push(rss_mib(node.pid())?);
    }
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    for run in 0..options.runs() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = cpu_times(&pids)?;
        times.push(ms(write_to_all(&writer, &space, &format!("mesh/{run}"), &mut streams).await?));
        cpu.push(cpu_ms_since(&pids, &before)?);
    }
    let topology = format!(
        "{n} node processes on 127.0.0.1; node i is bootstrapped to {LINKS} nodes picked at \
         random (fixed seed) among nodes 0..i, so each has about {} connections; all in one \
         open space",
        2 * LINKS
    );
    emit(Figure::new(
        "mesh",
        format!("one write reaching all {n} nodes"),
        "ms",
        Better::Lower,
        times,
        format!(
            "{topology}; one HTTP PUT on one random node, timed until the change event has \
             arrived on the SSE stream of every node (its own included)"
        ),
    ));
    emit(Figure::new(
        "mesh",
        "CPU time of all nodes for one write",
        "ms",
        Better::Lower,
        cpu,
        format!(
            "The same writes: the growth, from the PUT until the last event, of the time the \
             {n} node processes spent on a CPU (the sum over their threads of the growth of the \
             first field of /proc/PID/task/TID/schedstat); on 2 cores a write cannot reach every node \
             faster than half of it"
        ),
    ));
    emit(Figure::new(
        "mesh",
        "CPU time of all idle nodes per second",
        "ms/s",
        Better::Lower,
        vec![idle_cpu],
        format!(
            "Measured as above over 2 s with nothing written, after the warm-up write and \
             5 s of idling: what timers and keep-alives cost the {n} processes together"
        ),
    ));
    let about = format!(
        "{topology}; VmRSS of each node process, idle 5 s after a warm-up write had reached \
         every node"
    );
    emit(Figure::new(
        "mesh",
        "resident memory per idle node, median",
        "MiB",
        Better::Lower,
        vec![quantile(&resident, 0.5)],
        about.clone(),
    ));
    emit(Figure::new(
        "mesh",
        "resident memory per idle node, largest",
        "MiB",
        Better::Lower,
        vec![quantile(&resident, 1.0)],
        about,
    ));
    drop(streams);
    drop(nodes);
    Ok(())
}

/// The time each thread of the processes `pids` has spent on a CPU, in nanoseconds:
/// `/proc/PID/task/TID/schedstat`'s first field, by thread id.
fn cpu_times(pids: &[u32]) -> anyhow::Result<std::collections::HashMap<u64, u64>> {
    let mut times = std::collections::HashMap::new();
    for pid in pids {
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let task = task?;
            let Some(tid) = task.file_name().to_str().and_then(|name| name.parse().ok()) else {
                continue;
            };
            let path = task.path().join("schedstat");
            // A thread that ended meanwhile has nothing to add.
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let ns: u64 = text
                .split_whitespace()
                .next()
                .and_then(|field| field.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("unexpected {}: {text:?}", path.display()))?;
            times.insert(tid, ns);
        }
    }
    Ok(times)
}

/// The CPU time, in milliseconds, the threads of `pids` spent since `before` (from
/// [`cpu_times`]): per thread, so that a thread that ended in between (Tokio's idle
/// blocking threads do) does not take its earlier time away from the sum.
fn cpu_ms_since(pids: &[u32], before: &std::collections::HashMap<u64, u64>) -> anyhow::Result<f64> {
    let after = cpu_times(pids)?;
    let spent: u64 = after
        .iter()
        .map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    Ok(spent as f64 / 1e6)
}
