//! Churn: every node writes while the others are stopped in turn, alternately with
//! SIGTERM (which must end the process cleanly) and SIGKILL, and restarted on their data
//! dirs. After the last restart and the writers' stop, everyone converges and every
//! acknowledged write is present on every node.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::ensure;

use super::common::{Cluster, Tally, WriterSpec, verify_acked};
use super::{Options, Report};

/// Runs the scenario.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let n = options.pick(5, 3);
    let rounds = options.pick(8, 4);
    let docs = options.pick(50, 20);
    let up = options.pick(Duration::from_secs(4), Duration::from_secs(2));
    let down = options.pick(Duration::from_secs(3), Duration::from_secs(1));
    let mut cluster = Cluster::new(n).await?;
    let all: Vec<usize> = (0..n).collect();
    let tally = Arc::new(Tally::default());
    let mut writers = Vec::new();
    for node in 0..n {
        let mut spec = WriterSpec::new(
            format!("{node}"),
            cluster.slots[node].api.clone(),
            &cluster.space,
            docs,
            tally.clone(),
        );
        spec.pause = Some(Duration::from_millis(20));
        writers.push(spec.spawn());
    }
    let mut restart_times = Vec::new();
    for round in 0..rounds {
        tokio::time::sleep(up).await;
        let victim = 1 + round % (n - 1);
        let signal = if round % 2 == 0 { "TERM" } else { "KILL" };
        let (status, problems) = cluster.stop(victim, signal).await?;
        if signal == "TERM" {
            ensure!(status.success(), "node {victim} exited with {status} after SIGTERM");
        }
        ensure!(problems.is_empty(), "node {victim} logged before SIG{signal}: {}", problems[0]);
        tokio::time::sleep(down).await;
        let started = Instant::now();
        cluster.start(victim).await?;
        restart_times.push(started.elapsed().as_secs_f64());
    }
    tokio::time::sleep(up).await;
    for writer in writers {
        writer.stop().await?;
    }
    let acked = tally.acked();
    let converge = cluster.wait_converged(&all, Duration::from_secs(180)).await?;
    for &node in &all {
        verify_acked(&cluster.api(node)?, &cluster.space, &acked)
            .await
            .map_err(|error| error.context(format!("on node {node}")))?;
        let problems = cluster.problems(node);
        ensure!(problems.is_empty(), "node {node} logged: {}", problems[0]);
    }
    let slowest = restart_times.iter().copied().fold(0.0, f64::max);
    Ok(Report {
        detail: format!(
            "{n} nodes, {rounds} restarts (TERM/KILL), {} acked writes all present, {} refused while down; \
             restart <= {slowest:.2}s; converged {:.1}s after the writers stopped",
            acked.len(),
            tally.failed.load(Ordering::Relaxed),
            converge.as_secs_f64()
        ),
    })
}
