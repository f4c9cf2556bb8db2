//! Crash loop: node 0 takes writes through its API as fast as it answers while node 1
//! writes too (so node 0 also syncs), and node 0 is SIGKILLed at a random moment (seeded),
//! again and again. After each restart: it starts with no store errors in its log, every
//! write it acknowledged before the kill is there, and it converges with its peers.
//! At the end every acknowledged write of both writers is on all three nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rand::{RngExt as _, SeedableRng as _};

use super::common::{Cluster, Tally, WriterSpec, verify_acked};
use super::{Options, Report};

/// Runs the scenario.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let kills = options.pick(50, 5);
    let seed = options.seed;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::new(3).await?;
    let all = [0, 1, 2];
    let own = Arc::new(Tally::default());
    let peer = Arc::new(Tally::default());
    let victim_spec =
        WriterSpec::new("v", cluster.slots[0].api.clone(), &cluster.space, 20, own.clone());
    let mut peer_spec =
        WriterSpec::new("p", cluster.slots[1].api.clone(), &cluster.space, 20, peer.clone());
    peer_spec.pause = Some(Duration::from_millis(30));
    let mut converge_times = Vec::new();
    let mut restart_times = Vec::new();
    for kill in 1..=kills {
        let at = format!("kill {kill} of {kills} (seed {seed})");
        let victim_writer = victim_spec.spawn();
        let peer_writer = peer_spec.spawn();
        let delay = Duration::from_millis(rng.random_range(50..2_000));
        tokio::time::sleep(delay).await;
        let (_, problems) = cluster.stop(0, "KILL").await.with_context(|| at.clone())?;
        ensure!(problems.is_empty(), "{at}: the node logged before the kill: {}", problems[0]);
        victim_writer.stop().await?;
        peer_writer.stop().await?;
        let started = Instant::now();
        cluster.start(0).await.with_context(|| format!("{at}: restart"))?;
        restart_times.push(started.elapsed().as_secs_f64());
        let problems = cluster.problems(0);
        ensure!(problems.is_empty(), "{at}: the restarted node logged: {}", problems[0]);
        verify_acked(&cluster.api(0)?, &cluster.space, &own.acked())
            .await
            .with_context(|| format!("{at}: the node's own acknowledged writes after restart"))?;
        let converge = cluster
            .wait_converged(&all, Duration::from_secs(90))
            .await
            .with_context(|| format!("{at}: convergence after restart"))?;
        converge_times.push(converge.as_secs_f64());
        verify_acked(&cluster.api(0)?, &cluster.space, &peer.acked())
            .await
            .with_context(|| format!("{at}: the peer's acknowledged writes"))?;
    }
    let mut acked = own.acked();
    acked.extend(peer.acked());
    for node in all {
        verify_acked(&cluster.api(node)?, &cluster.space, &acked)
            .await
            .with_context(|| format!("at the end, on node {node}"))?;
        let problems = cluster.problems(node);
        ensure!(problems.is_empty(), "node {node} logged: {}", problems[0]);
    }
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    Ok(Report {
        detail: format!(
            "seed {seed}: {kills} SIGKILLs; {} own + {} peer acked writes all present; restart mean {:.1}s max {:.1}s; \
             converged mean {:.1}s max {:.1}s",
            own.n_acked(),
            peer.n_acked(),
            mean(&restart_times),
            max(&restart_times),
            mean(&converge_times),
            max(&converge_times)
        ),
    })
}
