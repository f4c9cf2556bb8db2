//! Convergence: every node writes concurrently to the same documents (each write sets a
//! field of its own and the contested field `last`); after the writers stop, all nodes
//! show the same state hash, hold every acknowledged write, and answer the same body for
//! every document (the contested field resolved the same way everywhere).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::ensure;

use super::common::{Cluster, Tally, WriterSpec, documents, verify_acked};
use super::{Options, Report};

/// Runs the scenario.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let n = options.pick(5, 3);
    let writes_per_node: u64 = options.pick(600, 150);
    let docs: u64 = options.pick(50, 20);
    let cluster = Cluster::new(n).await?;
    let all: Vec<usize> = (0..n).collect();
    let tally = Arc::new(Tally::default());
    let mut writers = Vec::new();
    for node in 0..n {
        // Two writers per node, so that each node also takes concurrent local writes.
        for lane in ["a", "b"] {
            let mut spec = WriterSpec::new(
                format!("{node}{lane}"),
                cluster.slots[node].api.clone(),
                &cluster.space,
                docs,
                tally.clone(),
            );
            spec.limit = Some(writes_per_node / 2);
            writers.push(spec.spawn());
        }
    }
    let started = Instant::now();
    for writer in writers {
        writer.finish().await?;
    }
    let write_time = started.elapsed();
    let failed = tally.failed.load(Ordering::Relaxed);
    ensure!(
        failed == 0,
        "{failed} writes to running nodes were refused or unanswered, first: {}",
        tally.first_error()
    );
    let acked = tally.acked();
    let converge = cluster
        .wait_converged(&all, options.pick(Duration::from_secs(180), Duration::from_secs(60)))
        .await?;
    for &node in &all {
        verify_acked(&cluster.api(node)?, &cluster.space, &acked)
            .await
            .map_err(|error| error.context(format!("on node {node}")))?;
    }
    let keys: Vec<String> = (0..docs).map(|k| format!("d/{k}")).collect();
    let reference = documents(&cluster.api(0)?, &cluster.space, &keys).await?;
    for &node in &all[1..] {
        let bodies = documents(&cluster.api(node)?, &cluster.space, &keys).await?;
        for (key, (mine, theirs)) in keys.iter().zip(bodies.iter().zip(&reference)) {
            ensure!(mine == theirs, "document {key} differs between node 0 and node {node}");
        }
    }
    Ok(Report {
        detail: format!(
            "{n} nodes, {} writes to {docs} docs in {:.1}s ({:.0} writes/s); converged {:.1}s after the last write; docs equal",
            acked.len(),
            write_time.as_secs_f64(),
            acked.len() as f64 / write_time.as_secs_f64(),
            converge.as_secs_f64()
        ),
    })
}
