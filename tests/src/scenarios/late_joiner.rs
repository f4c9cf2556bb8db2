//! Late joiner: node A writes a space full of entries (documents of 100 fields) while node
//! B follows; then a new node C starts, joins, and must catch up: same state hash, same
//! entry count, and sampled documents identical to A's.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rand::{RngExt as _, SeedableRng as _};
use serde_json::{Map, Value, json};

use super::common::{Cluster, documents, put, space_state};
use super::{Options, Report};

/// Fields per document.
const FIELDS: u64 = 100;
/// Concurrent writers on A.
const LANES: u64 = 4;

/// Runs the scenario.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let entries: u64 = options.pick(100_000, 5_000);
    let catch_up_limit = options.pick(Duration::from_secs(600), Duration::from_secs(90));
    let n_docs = entries / FIELDS;
    let mut cluster = Cluster::new(2).await?;
    let a = cluster.api(0)?;
    let started = Instant::now();
    let mut lanes = Vec::new();
    for lane in 0..LANES {
        let a = a.clone();
        let space = cluster.space.clone();
        lanes.push(tokio::spawn(async move {
            for doc in (lane..n_docs).step_by(LANES as usize) {
                let body: Map<String, Value> =
                    (0..FIELDS).map(|f| (format!("e{f}"), json!(doc * FIELDS + f))).collect();
                put(&a, &space, &format!("big/{doc}"), &Value::Object(body)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for lane in lanes {
        lane.await??;
    }
    let write_time = started.elapsed();
    let (_, held) = space_state(&a, &cluster.space).await.context("A's space state")?;
    ensure!(held >= entries, "A holds {held} entries after writing {entries}");
    let follow = cluster.wait_converged(&[0, 1], catch_up_limit).await?;

    let c = cluster.add().await?;
    cluster.join(c).await?;
    let catch_up = cluster
        .wait_converged(&[0, 1, c], catch_up_limit)
        .await
        .map_err(|error| error.context("the late joiner did not catch up"))?;
    let (_, on_c) = space_state(&cluster.api(c)?, &cluster.space).await.context("C's state")?;
    ensure!(on_c == held, "C holds {on_c} entries, A {held}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let sample: Vec<String> =
        (0..20).map(|_| format!("big/{}", rng.random_range(0..n_docs))).collect();
    let on_a = documents(&a, &cluster.space, &sample).await?;
    let on_c_docs = documents(&cluster.api(c)?, &cluster.space, &sample).await?;
    ensure!(on_a == on_c_docs, "sampled documents differ between A and the late joiner");
    Ok(Report {
        detail: format!(
            "{held} entries written in {:.1}s ({:.0} entries/s); follower B converged {:.1}s after; \
             late joiner caught up in {:.1}s ({:.0} entries/s)",
            write_time.as_secs_f64(),
            entries as f64 / write_time.as_secs_f64(),
            follow.as_secs_f64(),
            catch_up.as_secs_f64(),
            held as f64 / catch_up.as_secs_f64().max(1e-3)
        ),
    })
}
