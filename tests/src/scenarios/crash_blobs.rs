//! Crash during blobs: node 0 is SIGKILLed at a random moment (seeded) while a blob is
//! being added to it (a slow upload) and while it fetches a blob from node 1. After each
//! restart the blob is either absent or complete and byte-for-byte right, and a new add
//! (or fetch) of the same blob succeeds.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use rand::{RngExt as _, SeedableRng as _};
use reqwest::Method;

use super::common::{BLOB_CALL, Cluster, add_blob, blob_bytes, fetch_and_verify, head_blob};
use super::{Options, Report};

/// Upload chunk size and the pause after each chunk (so that an add takes a while).
const CHUNK: usize = 128 * 1024;
const CHUNK_PAUSE: Duration = Duration::from_millis(5);

/// After a restart: the blob is absent, or whole and right.
async fn absent_or_complete(cluster: &Cluster, cid: &str, data: &Bytes) -> anyhow::Result<bool> {
    let api = cluster.api(0)?;
    match head_blob(&api, cid).await? {
        None => Ok(false),
        Some(size) => {
            ensure!(size == data.len() as u64, "held with size {size}, expected {}", data.len());
            fetch_and_verify(&api, cid, data).await.context("the blob held after the restart")?;
            Ok(true)
        }
    }
}

/// Restarts node 0 after a kill and checks its log.
async fn restart(cluster: &mut Cluster, at: &str) -> anyhow::Result<()> {
    cluster.start(0).await.with_context(|| format!("{at}: restart"))?;
    let problems = cluster.problems(0);
    ensure!(problems.is_empty(), "{at}: the restarted node logged: {}", problems[0]);
    Ok(())
}

/// Runs the scenario.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let rounds: u64 = options.pick(10, 2);
    let mib = options.pick(32, 8);
    let size = mib * 1024 * 1024;
    let seed = options.seed;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xb10b);
    let mut cluster = Cluster::new(2).await?;
    let upload_time = CHUNK_PAUSE * u32::try_from(size / CHUNK).unwrap_or(u32::MAX);
    let (mut add_mid, mut add_kept, mut fetch_mid, mut fetch_kept) = (0, 0, 0, 0);
    let started = Instant::now();
    for round in 0..rounds {
        let at = format!("add round {} of {rounds} (seed {seed})", round + 1);
        let data = blob_bytes(seed, 100 + round, size);
        // Node 1 adds it first: that gives the CID to look for.
        let cid = add_blob(&cluster.api(1)?, data.clone()).await?;
        let api = cluster.api(0)?;
        let chunks: Vec<Bytes> =
            (0..size).step_by(CHUNK).map(|at| data.slice(at..(at + CHUNK).min(size))).collect();
        let body = futures::stream::unfold(chunks.into_iter(), |mut chunks| async move {
            let chunk = chunks.next()?;
            tokio::time::sleep(CHUNK_PAUSE).await;
            Some((Ok::<_, std::io::Error>(chunk), chunks))
        });
        let upload = tokio::spawn(async move {
            api.request(Method::POST, "/v1/blobs")
                .timeout(BLOB_CALL)
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
                .map(|response| response.status().is_success())
        });
        let delay =
            Duration::from_millis(rng.random_range(0..upload_time.as_millis().max(1) as u64));
        tokio::time::sleep(delay).await;
        cluster.stop(0, "KILL").await.with_context(|| at.clone())?;
        if !matches!(upload.await?, Ok(true)) {
            add_mid += 1;
        }
        restart(&mut cluster, &at).await?;
        if absent_or_complete(&cluster, &cid, &data).await.with_context(|| at.clone())? {
            add_kept += 1;
        }
        let again = add_blob(&cluster.api(0)?, data.clone())
            .await
            .with_context(|| format!("{at}: a new add"))?;
        ensure!(again == cid, "{at}: the new add gave {again}, node 1 {cid}");
        fetch_and_verify(&cluster.api(0)?, &cid, &data)
            .await
            .with_context(|| format!("{at}: after the new add"))?;
    }
    // How long a fetch takes here, so that the kills land across the whole transfer.
    let calibration = blob_bytes(seed, 199, size);
    let cid = add_blob(&cluster.api(1)?, calibration.clone()).await?;
    let timed = Instant::now();
    fetch_and_verify(&cluster.api(0)?, &cid, &calibration)
        .await
        .context("the calibration fetch")?;
    let fetch_time = timed.elapsed();
    for round in 0..rounds {
        let at = format!("fetch round {} of {rounds} (seed {seed})", round + 1);
        let data = blob_bytes(seed, 200 + round, size);
        let cid = add_blob(&cluster.api(1)?, data.clone()).await?;
        let api = cluster.api(0)?;
        let fetch_cid = cid.clone();
        let fetch = tokio::spawn(async move {
            api.request(Method::GET, &format!("/v1/blobs/{fetch_cid}"))
                .timeout(BLOB_CALL)
                .send()
                .await
                .map(|response| response.status().is_success())
        });
        let window = fetch_time.as_millis().max(2) as u64;
        let delay = Duration::from_millis(rng.random_range(0..window));
        tokio::time::sleep(delay).await;
        cluster.stop(0, "KILL").await.with_context(|| at.clone())?;
        if !matches!(fetch.await?, Ok(true)) {
            fetch_mid += 1;
        }
        restart(&mut cluster, &at).await?;
        if absent_or_complete(&cluster, &cid, &data).await.with_context(|| at.clone())? {
            fetch_kept += 1;
        }
        fetch_and_verify(&cluster.api(0)?, &cid, &data)
            .await
            .with_context(|| format!("{at}: a new fetch"))?;
    }
    Ok(Report {
        detail: format!(
            "seed {seed}: {} SIGKILLs on {mib} MiB blobs in {:.0}s (a fetch takes {:.1}s); adds cut mid-transfer {add_mid}/{rounds} \
             (complete after restart {add_kept}); fetches cut {fetch_mid}/{rounds} (complete after restart {fetch_kept}); \
             every retry verified",
            2 * rounds,
            started.elapsed().as_secs_f64(),
            fetch_time.as_secs_f64()
        ),
    })
}
