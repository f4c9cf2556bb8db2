//! Blobs: a large blob added on one node is fetched by every other node at the same time
//! and compared byte for byte; afterwards each of them holds it whole.

use std::time::Instant;

use anyhow::ensure;

use super::common::{Cluster, add_blob, blob_bytes, fetch_and_verify, head_blob, mib_per_s};
use super::{Options, Report};

/// Runs the scenario.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let n = options.pick(4, 3);
    let mib = options.pick(256, 16);
    let size = mib * 1024 * 1024;
    let cluster = Cluster::new(n).await?;
    let data = blob_bytes(options.seed, 0, size);
    let source = cluster.api(0)?;
    let started = Instant::now();
    let cid = add_blob(&source, data.clone()).await?;
    let add_time = started.elapsed();
    ensure!(
        head_blob(&source, &cid).await? == Some(size as u64),
        "the adding node does not hold it whole"
    );
    let mut fetches = Vec::new();
    for node in 1..n {
        let api = cluster.api(node)?;
        let cid = cid.clone();
        let data = data.clone();
        fetches.push(tokio::spawn(async move {
            let started = Instant::now();
            fetch_and_verify(&api, &cid, &data)
                .await
                .map_err(|error| error.context(format!("fetch on node {node}")))?;
            anyhow::Ok(started.elapsed())
        }));
    }
    let mut times = Vec::new();
    for fetch in fetches {
        times.push(fetch.await??);
    }
    for node in 1..n {
        let held = head_blob(&cluster.api(node)?, &cid).await?;
        ensure!(
            held == Some(size as u64),
            "node {node} does not hold the blob whole after the fetch: {held:?}"
        );
    }
    let shown: Vec<String> = times
        .iter()
        .map(|t| format!("{:.1}s ({:.0} MiB/s)", t.as_secs_f64(), mib_per_s(size, *t)))
        .collect();
    Ok(Report {
        detail: format!(
            "{mib} MiB added in {:.2}s ({:.0} MiB/s); fetched by {} nodes at once, verified: {}",
            add_time.as_secs_f64(),
            mib_per_s(size, add_time),
            n - 1,
            shown.join(", ")
        ),
    })
}
