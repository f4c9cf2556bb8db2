//! Partition: the nodes form two groups that are isolated from each other by freezing one
//! group (SIGSTOP) while the other works, in turn. Each group keeps accepting writes and
//! syncs within itself. After the last SIGCONT everyone converges with every acknowledged
//! write present.

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;

use super::common::{Acked, Cluster, Tally, WriterSpec, documents, verify_acked};
use super::{Options, Report};

fn signal_all(cluster: &Cluster, nodes: &[usize], signal: &str) -> anyhow::Result<()> {
    for &node in nodes {
        cluster.signal(node, signal)?;
    }
    Ok(())
}

/// Writes on `group` for `phase`; returns the acknowledged writes of this phase.
async fn write_phase(
    cluster: &Cluster,
    group: &[usize],
    phase: Duration,
    tag: &str,
) -> anyhow::Result<Vec<Acked>> {
    let tally = Arc::new(Tally::default());
    let mut writers = Vec::new();
    for &node in group {
        let mut spec = WriterSpec::new(
            format!("{tag}{node}"),
            cluster.slots[node].api.clone(),
            &cluster.space,
            20,
            tally.clone(),
        );
        spec.pause = Some(Duration::from_millis(20));
        writers.push(spec.spawn());
    }
    tokio::time::sleep(phase).await;
    for writer in writers {
        writer.stop().await?;
    }
    let acked = tally.acked();
    for &node in group {
        let tag = format!("f{tag}{node}_");
        let mine = acked.iter().filter(|write| write.field.starts_with(&tag)).count();
        ensure!(mine > 0, "node {node} accepted no write while the other group was frozen");
    }
    Ok(acked)
}

/// How many of `acked` node `node` holds.
async fn delivered(cluster: &Cluster, node: usize, acked: &[Acked]) -> anyhow::Result<usize> {
    let mut keys: Vec<String> = acked.iter().map(|write| write.doc.clone()).collect();
    keys.sort();
    keys.dedup();
    let bodies = documents(&cluster.api(node)?, &cluster.space, &keys).await?;
    Ok(acked
        .iter()
        .filter(|write| {
            let at = keys.binary_search(&write.doc).expect("listed");
            bodies[at][&write.field] == serde_json::json!(write.value)
        })
        .count())
}

/// Runs the scenario.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let n = options.pick(5, 3);
    let phase = options.pick(Duration::from_secs(30), Duration::from_secs(4));
    let cluster = Cluster::new(n).await?;
    let all: Vec<usize> = (0..n).collect();
    let (first, second): (Vec<usize>, Vec<usize>) = all.iter().partition(|&&i| i < n / 2);
    cluster.wait_converged(&all, Duration::from_secs(60)).await?;

    // Phase 1: the second group is frozen; the first writes.
    signal_all(&cluster, &second, "STOP")?;
    let acked_first = write_phase(&cluster, &first, phase, "p").await;
    // Phase 2: the first group is frozen, then the second thaws and writes.
    signal_all(&cluster, &first, "STOP")?;
    signal_all(&cluster, &second, "CONT")?;
    let acked_first = acked_first?;
    let acked_second = write_phase(&cluster, &second, phase, "q").await?;
    cluster
        .wait_converged(&second, Duration::from_secs(120))
        .await
        .map_err(|error| error.context("the second group did not converge within itself"))?;
    // A frozen process still has its kernel socket buffers: what the first group pushed
    // while the second was frozen may sit there and arrive at SIGCONT (message delay, not
    // a breach of the partition). Counted as a figure; long phases outlast the
    // connections' keep-alive, so the peers must reconnect as well.
    let early = delivered(&cluster, second[0], &acked_first).await?;
    // Heal.
    signal_all(&cluster, &first, "CONT")?;
    let converge = cluster
        .wait_converged(&all, options.pick(Duration::from_secs(180), Duration::from_secs(90)))
        .await
        .map_err(|error| error.context("after healing"))?;
    let mut acked = acked_first.clone();
    acked.extend(acked_second.iter().cloned());
    for &node in &all {
        verify_acked(&cluster.api(node)?, &cluster.space, &acked)
            .await
            .map_err(|error| error.context(format!("on node {node} after healing")))?;
    }
    Ok(Report {
        detail: format!(
            "groups {first:?} vs {second:?}, {}s frozen each; {} + {} writes while isolated \
             ({early} of the first group's reached the second from socket buffers before healing); \
             converged {:.1}s after healing",
            phase.as_secs(),
            acked_first.len(),
            acked_second.len(),
            converge.as_secs_f64()
        ),
    })
}
