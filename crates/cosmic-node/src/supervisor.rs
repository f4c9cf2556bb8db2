//! The supervisor: runs the node's background tasks and restarts the ones that fail.
//!
//! A supervised task is a factory that makes one attempt at a time. When an attempt
//! returns an error or panics, the failure is logged, published on the bus as a
//! [`TaskFailed`] event, and the task is started again after an exponential backoff
//! (reset once an attempt has run for a while). An attempt that returns `Ok` ends the
//! task for good. Cancelling the supervisor's token asks every attempt to stop; the node
//! then waits for them with a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use cosmic_events::Bus;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// The error a supervised attempt returns.
pub type TaskError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Published on the bus each time a supervised task fails and is about to be restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailed {
    /// The task's name.
    pub task: &'static str,
    /// What went wrong (the error chain, or the panic message).
    pub error: String,
    /// How many times this task has failed so far.
    pub failures: u32,
    /// When it will be started again.
    pub restart_in: Duration,
}

/// The backoff between restarts: doubles from `min` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { min: Duration::from_millis(200), max: Duration::from_secs(30) }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (1: the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        self.min.saturating_mul(1 << shift).min(self.max)
    }
}

/// Runs named background tasks with restart on failure; see the module docs.
#[derive(Debug)]
pub struct Supervisor {
    bus: Bus,
    cancel: CancellationToken,
    backoff: Backoff,
    tasks: JoinSet<()>,
}

impl Supervisor {
    /// A supervisor that reports on `bus` and stops its tasks when `cancel` fires.
    pub fn new(bus: Bus, cancel: CancellationToken, backoff: Backoff) -> Self {
        Self { bus, cancel, backoff, tasks: JoinSet::new() }
    }

    /// The token every attempt receives; cancelled when the node stops.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Starts a supervised task. `attempt` is called for each (re)start with the stop
    /// token; the attempt should return soon after the token is cancelled.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, mut attempt: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        let bus = self.bus.clone();
        let cancel = self.cancel.clone();
        let backoff = self.backoff;
        self.tasks.spawn(async move {
            let mut failures = 0u32;
            loop {
                if cancel.is_cancelled() {
                    return;
                }
                let started = Instant::now();
                // Each attempt runs in its own task so that a panic is caught here; the
                // handle owns it, so stopping this task stops the attempt too.
                #[allow(clippy::disallowed_methods, reason = "owned by the handle awaited here")]
                let running = AbortOnDropHandle::new(tokio::spawn(attempt(cancel.clone())));
                let outcome = running.await;
                let error = match outcome {
                    Ok(Ok(())) => {
                        tracing::debug!(task = name, "task finished");
                        return;
                    }
                    Ok(Err(error)) => crate::api::error::chain(error.as_ref()),
                    Err(join_error) if join_error.is_panic() => {
                        format!("panicked: {}", panic_message(join_error.into_panic()))
                    }
                    Err(join_error) => join_error.to_string(),
                };
                if cancel.is_cancelled() {
                    tracing::debug!(task = name, %error, "task ended while stopping");
                    return;
                }
                // An attempt that ran longer than the longest backoff counts as a fresh start.
                if started.elapsed() > backoff.max {
                    failures = 0;
                }
                failures = failures.saturating_add(1);
                let restart_in = backoff.delay(failures);
                tracing::error!(task = name, %error, failures, ?restart_in, "task failed; restarting");
                bus.publish(TaskFailed { task: name, error, failures, restart_in });
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(restart_in) => {}
                }
            }
        });
    }

    /// Cancels every task and waits for them all, at most `deadline`; the ones still
    /// running then are aborted. Returns whether everything ended in time.
    pub async fn shutdown(&mut self, deadline: Duration) -> bool {
        self.cancel.cancel();
        let tasks = &mut self.tasks;
        let joined = tokio::time::timeout(deadline, async {
            while let Some(result) = tasks.join_next().await {
                if let Err(error) = result {
                    tracing::warn!(%error, "supervised task ended abnormally during shutdown");
                }
            }
        })
        .await;
        if joined.is_err() {
            self.tasks.abort_all();
            return false;
        }
        true
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn fast() -> Backoff {
        Backoff { min: Duration::from_millis(5), max: Duration::from_secs(5) }
    }

    #[tokio::test]
    async fn a_task_that_fails_twice_is_restarted_until_it_succeeds() {
        let bus = Bus::new();
        let mut failures_seen = bus.subscribe::<TaskFailed>();
        let mut supervisor = Supervisor::new(bus, CancellationToken::new(), fast());
        let attempts = Arc::new(AtomicU32::new(0));
        let counter = attempts.clone();
        supervisor.spawn("flaky", move |_cancel| {
            let counter = counter.clone();
            async move {
                match counter.fetch_add(1, Ordering::SeqCst) {
                    0 => Err::<(), TaskError>("first failure".into()),
                    1 => panic!("second failure"),
                    _ => Ok(()),
                }
            }
        });
        let first = tokio::time::timeout(Duration::from_secs(5), failures_seen.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.task, "flaky");
        assert_eq!(first.failures, 1);
        assert_eq!(first.error, "first failure");
        let second = tokio::time::timeout(Duration::from_secs(5), failures_seen.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.failures, 2);
        assert!(second.error.contains("panicked: second failure"), "{}", second.error);
        assert!(second.restart_in > first.restart_in);
        // The third attempt succeeds and the task ends on its own.
        assert!(supervisor.shutdown_after_tasks_end(Duration::from_secs(5)).await);
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert!(failures_seen.try_recv().unwrap().is_none());
    }

    #[tokio::test]
    async fn shutdown_stops_a_long_running_task() {
        let mut supervisor = Supervisor::new(Bus::new(), CancellationToken::new(), fast());
        supervisor.spawn("forever", |cancel| async move {
            cancel.cancelled().await;
            Ok(())
        });
        assert!(supervisor.shutdown(Duration::from_secs(5)).await);
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let backoff = Backoff { min: Duration::from_millis(100), max: Duration::from_secs(1) };
        let delays: Vec<_> = (1..=6).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(1));
    }

    impl Supervisor {
        /// Waits for every task to end by itself (no cancel), bounded.
        async fn shutdown_after_tasks_end(&mut self, deadline: Duration) -> bool {
            let tasks = &mut self.tasks;
            tokio::time::timeout(deadline, async { while tasks.join_next().await.is_some() {} })
                .await
                .is_ok()
        }
    }
}
