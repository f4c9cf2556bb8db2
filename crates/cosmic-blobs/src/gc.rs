//! Garbage collection on a schedule and on demand.
//!
//! iroh-blobs runs garbage collection only if it was configured when the store was
//! opened, on a fixed interval, and has no public call to run it now. Its loop is:
//! sleep the interval, call the protect callback, mark and sweep, repeat. We configure
//! a 1 ms interval and make the callback wait for either our own schedule
//! ([`crate::Config::gc_interval`]) or an explicit request from [`crate::Blobs::gc`].
//! The callback's next call also tells us the previous run finished, which is when a
//! [`crate::Blobs::gc`] call returns. Every tag (pins and fetches in progress) and every
//! temporary tag (adds in progress) is protected by iroh-blobs itself.

use std::sync::Arc;
use std::time::Duration;

use iroh_blobs::store::{GcConfig, ProtectOutcome};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::{Error, Result};

/// How many on-demand GC requests may queue.
const REQUEST_CAPACITY: usize = 16;

/// The handle side: asks for a run and waits for it to finish.
#[derive(Debug, Clone)]
pub(crate) struct GcHandle {
    requests: mpsc::Sender<oneshot::Sender<()>>,
}

struct Schedule {
    requests: mpsc::Receiver<oneshot::Sender<()>>,
    /// Callers waiting for the run that the previous callback call started.
    running_for: Vec<oneshot::Sender<()>>,
    next_run: Instant,
    interval: Duration,
}

impl GcHandle {
    /// Runs a full garbage collection and returns when it has finished.
    pub(crate) async fn run(&self) -> Result<()> {
        let (done, finished) = oneshot::channel();
        self.requests.send(done).await.map_err(|_| Error::GcStopped)?;
        finished.await.map_err(|_| Error::GcStopped)
    }
}

/// The GC configuration to open a store with, and the handle that triggers it.
pub(crate) fn gc_config(interval: Duration) -> (GcConfig, GcHandle) {
    let (sender, requests) = mpsc::channel(REQUEST_CAPACITY);
    let schedule = Arc::new(Mutex::new(Schedule {
        requests,
        running_for: Vec::new(),
        next_run: Instant::now() + interval,
        interval,
    }));
    let callback: iroh_blobs::store::ProtectCb = Arc::new(move |_live| {
        let schedule = schedule.clone();
        Box::pin(async move {
            // Spawned so that the future handed to iroh-blobs holds only a join handle
            // (it must be `Sync`); the store's runtime has timers enabled. The handle owns
            // the task: if iroh-blobs drops this future, the wait ends with it.
            #[allow(clippy::disallowed_methods, reason = "owned by the handle awaited here")]
            let waiting = AbortOnDropHandle::new(tokio::spawn(wait_for_next_run(schedule)));
            match waiting.await {
                Ok(()) => ProtectOutcome::Continue,
                Err(_) => ProtectOutcome::Abort,
            }
        })
    });
    let config = GcConfig { interval: Duration::from_millis(1), add_protected: Some(callback) };
    (config, GcHandle { requests: sender })
}

async fn wait_for_next_run(schedule: Arc<Mutex<Schedule>>) {
    let mut schedule = schedule.lock().await;
    // This call means the previous run (if any) has finished.
    for done in schedule.running_for.drain(..) {
        done.send(()).ok();
    }
    let next_run = schedule.next_run;
    tokio::select! {
        () = tokio::time::sleep_until(next_run) => {}
        request = schedule.requests.recv() => match request {
            Some(done) => schedule.running_for.push(done),
            // Every handle is gone: run on the schedule only.
            None => tokio::time::sleep_until(next_run).await,
        },
    }
    while let Ok(done) = schedule.requests.try_recv() {
        schedule.running_for.push(done);
    }
    schedule.next_run = Instant::now() + schedule.interval;
}
