//! Crash during blobs: node 0 is SIGKILLed at a random moment (seeded) while a blob is
//! being added to it (a slow upload), and again while it fetches a blob from node 1: 50
//! times each in the full run, twice each in the quick one.
//! Every kill lands inside the transfer: an upload has sent its first chunk and not its
//! last, a fetch has not been answered yet. After each restart the blob is either absent
//! or complete and byte-for-byte right, and a new add (or fetch) of the same blob
//! succeeds; each life of the node (from its restart to the next kill) logs no error,
//! panic, repair or corruption.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use rand::{RngExt as _, SeedableRng as _};
use reqwest::Method;
use serde_json::Value;

use super::common::{
    BLOB_CALL, Cluster, SHORT_CALL, add_blob, blob_bytes, fetch_and_verify, head_blob,
};
use super::{Options, Report};

/// Upload chunk size and the pause before each chunk (so that an add takes a while).
const CHUNK: usize = 128 * 1024;
const CHUNK_PAUSE: Duration = Duration::from_millis(5);
/// How long a restarted node may take to connect to its peer again.
const RECONNECT: Duration = Duration::from_secs(30);

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

/// SIGKILLs node 0; its log of the life that ends here (from its last start) must be
/// clean. The log is read after the exit, so nothing is waited for.
async fn kill(cluster: &mut Cluster, at: &str) -> anyhow::Result<()> {
    let (_, problems) = cluster.stop(0, "KILL").await.with_context(|| format!("{at}: kill"))?;
    ensure!(
        problems.is_empty(),
        "{at}: node 0 logged since its last start (this round or the restart before it): {}",
        problems[0]
    );
    Ok(())
}

/// Restarts node 0 after a kill and waits until it is connected to node 1 again (a fetch
/// asks the connected peers); returns how long both took.
async fn restart(cluster: &mut Cluster, at: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    cluster.start(0).await.with_context(|| format!("{at}: restart"))?;
    let api = cluster.api(0)?;
    loop {
        let response = api.request(Method::GET, "/v1/peers").timeout(SHORT_CALL).send().await;
        let peers: Value = match response {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if peers.as_array().into_iter().flatten().any(|peer| peer["state"] == "connected") {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < RECONNECT,
            "{at}: node 0 not connected to node 1 within {RECONNECT:?} of its restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Seconds: mean and max.
fn mean_max(values: &[f64]) -> (f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    (mean, values.iter().copied().fold(0.0, f64::max))
}

/// Runs the scenario.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let rounds: usize = options.pick(50, 2);
    let mib: usize = options.pick(16, 8);
    let size = mib * 1024 * 1024;
    let seed = options.seed;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xb10b);
    let mut cluster = Cluster::new(2).await?;
    let n_chunks = size.div_ceil(CHUNK);
    let mut sent_at_kill = Vec::new();
    let mut restarts = Vec::new();
    let (mut add_kept, mut fetch_kept, mut fetch_late, mut answered_at_kill) = (0, 0, 0, 0);
    let started = Instant::now();
    for round in 0..rounds {
        let at = format!("add round {} of {rounds} (seed {seed})", round + 1);
        let data = blob_bytes(seed, 100 + round as u64, size);
        // Node 1 adds it first: that gives the CID to look for.
        let cid = add_blob(&cluster.api(1)?, data.clone()).await?;
        let api = cluster.api(0)?;
        let chunks: Vec<Bytes> =
            (0..size).step_by(CHUNK).map(|at| data.slice(at..(at + CHUNK).min(size))).collect();
        // The kill moment: while chunk `kill_after` is on its way, at least two chunk
        // pauses before the last one goes out (the signal takes a moment to land).
        let kill_after = rng.random_range(1..n_chunks - 1);
        let sub_chunk = Duration::from_micros(rng.random_range(0..CHUNK_PAUSE.as_micros() as u64));
        let sent = Arc::new(AtomicUsize::new(0));
        let (reached_tx, reached) = tokio::sync::oneshot::channel::<()>();
        let state = (chunks.into_iter(), sent.clone(), Some(reached_tx));
        let body =
            futures::stream::unfold(state, move |(mut chunks, sent, mut reached)| async move {
                let chunk = chunks.next()?;
                tokio::time::sleep(CHUNK_PAUSE).await;
                if sent.fetch_add(1, Ordering::SeqCst) + 1 == kill_after
                    && let Some(reached) = reached.take()
                {
                    let _ = reached.send(());
                }
                Some((Ok::<_, std::io::Error>(chunk), (chunks, sent, reached)))
            });
        let mut upload = tokio::spawn(async move {
            api.request(Method::POST, "/v1/blobs")
                .timeout(BLOB_CALL)
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
                .map(|response| response.status())
        });
        tokio::time::timeout(BLOB_CALL, reached)
            .await
            .with_context(|| format!("{at}: the upload did not reach chunk {kill_after}"))?
            .with_context(|| format!("{at}: the upload ended before chunk {kill_after}"))?;
        tokio::time::sleep(sub_chunk).await;
        let done = sent.load(Ordering::SeqCst);
        ensure!(!upload.is_finished() && done < n_chunks, "{at}: the upload ended before the kill");
        kill(&mut cluster, &at).await?;
        sent_at_kill.push(done as f64 / n_chunks as f64);
        match tokio::time::timeout(SHORT_CALL, &mut upload).await {
            Ok(Ok(Ok(status))) if status.is_success() => {
                bail!("{at}: an upload cut after {done} of {n_chunks} chunks was answered {status}")
            }
            Ok(_) => {}
            Err(_) => bail!("{at}: the cut upload did not end within {SHORT_CALL:?}"),
        }
        restarts.push(restart(&mut cluster, &at).await?.as_secs_f64());
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

    // How long node 0 takes to fetch a blob until it answers (the median of three), so
    // that the kill moments spread over the whole transfer.
    let mut timings = Vec::new();
    for index in 0..3 {
        let cid = add_blob(&cluster.api(1)?, blob_bytes(seed, 190 + index, size)).await?;
        let timed = Instant::now();
        let answer = cluster
            .api(0)?
            .request(Method::GET, &format!("/v1/blobs/{cid}"))
            .timeout(BLOB_CALL)
            .send()
            .await
            .context("a calibration fetch")?;
        timings.push(timed.elapsed());
        ensure!(answer.status().is_success(), "a calibration fetch: {}", answer.status());
    }
    timings.sort();
    let window = timings[1];
    // A kill counts when the node had not answered the fetch by then; a fetch answered
    // before its moment is not killed, and one answered at the very instant of the kill
    // is checked like the others but does not count.
    let (mut cut, mut attempts, mut fetch_kills) = (0, 0, 0);
    while cut < rounds {
        attempts += 1;
        ensure!(attempts <= 4 * rounds, "{attempts} fetch attempts for {cut} cut fetches");
        let at = format!("fetch kill {} of {rounds}, attempt {attempts} (seed {seed})", cut + 1);
        let data = blob_bytes(seed, 200 + attempts as u64, size);
        let cid = add_blob(&cluster.api(1)?, data.clone()).await?;
        let api = cluster.api(0)?;
        let fetch_cid = cid.clone();
        let mut fetch = tokio::spawn(async move {
            api.request(Method::GET, &format!("/v1/blobs/{fetch_cid}"))
                .timeout(BLOB_CALL)
                .send()
                .await
                .map(|response| response.status())
        });
        let delay = Duration::from_micros(rng.random_range(0..window.as_micros().max(2) as u64));
        tokio::select! {
            answered = &mut fetch => {
                let status = answered?.with_context(|| format!("{at}: the fetch"))?;
                ensure!(status.is_success(), "{at}: the fetch was answered {status}");
                fetch_late += 1;
                continue;
            }
            () = tokio::time::sleep(delay) => {}
        }
        kill(&mut cluster, &at).await?;
        fetch_kills += 1;
        match tokio::time::timeout(SHORT_CALL, &mut fetch).await {
            Ok(Ok(Ok(status))) if status.is_success() => answered_at_kill += 1,
            Ok(_) => cut += 1,
            Err(_) => bail!("{at}: the cut fetch did not end within {SHORT_CALL:?}"),
        }
        restarts.push(restart(&mut cluster, &at).await?.as_secs_f64());
        if absent_or_complete(&cluster, &cid, &data).await.with_context(|| at.clone())? {
            fetch_kept += 1;
        }
        fetch_and_verify(&cluster.api(0)?, &cid, &data)
            .await
            .with_context(|| format!("{at}: a new fetch"))?;
    }
    for node in [0, 1] {
        let problems = cluster.problems(node);
        ensure!(problems.is_empty(), "at the end, node {node} logged: {}", problems[0]);
    }
    let elapsed = started.elapsed();
    let (restart_mean, restart_max) = mean_max(&restarts);
    let sent_min = sent_at_kill.iter().copied().fold(1.0, f64::min);
    let sent_max = sent_at_kill.iter().copied().fold(0.0, f64::max);
    Ok(Report {
        detail: format!(
            "seed {seed}: {} SIGKILLs on {mib} MiB blobs in {:.0}s ({:.1}s per kill); \
             {rounds} during adds, cut after {:.0}-{:.0}% of the upload (complete after restart \
             {add_kept}); {cut} during fetches before the answer, drawn within {:.3}s (the median \
             fetch; {fetch_late} answered first and redrawn, {answered_at_kill} answered as the \
             kill came and not counted; complete after restart {fetch_kept}); restart+reconnect \
             mean {restart_mean:.2}s max {restart_max:.2}s; every retry verified, logs clean",
            rounds + fetch_kills,
            elapsed.as_secs_f64(),
            elapsed.as_secs_f64() / (rounds + fetch_kills) as f64,
            sent_min * 100.0,
            sent_max * 100.0,
            window.as_secs_f64(),
        ),
    })
}
