//! Multi-process scenarios behind `cargo xtask e2e`: real `cosmic-node` processes on
//! loopback under concurrent writes, churn, late joining, large blobs, partitions and
//! crashes.
//!
//! Each scenario is a module with `run(&Options) -> anyhow::Result<Report>`. [`run_one`]
//! runs one of them under its overall deadline: when the deadline passes, the scenario's
//! task is aborted, which drops (and so kills) every node process it started and removes
//! its temporary data dirs, and the scenario fails. A panic inside a scenario (e.g. a node
//! that never prints its ready line) is a failure too, with the panic message as reason.
//!
//! `--quick` runs the same scenarios, smaller (fewer nodes, entries, bytes, crashes), so
//! that the whole set fits in a few minutes on a debug build.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

pub mod blobs;
pub mod churn;
pub mod common;
pub mod convergence;
pub mod crash_blobs;
pub mod crash_loop;
pub mod late_joiner;
pub mod partition;

/// What every scenario gets.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The small variant (CI).
    pub quick: bool,
    /// The seed of every random choice (kill moments, data); printed, settable.
    pub seed: u64,
}

impl Options {
    /// `full` in the full run, `quick` with `--quick`.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

/// What a passed scenario measured: one line of figures for the table.
#[derive(Debug, Clone)]
pub struct Report {
    /// Figures such as time to converge and entries per second.
    pub detail: String,
}

/// A scenario's future.
pub type ScenarioFuture = Pin<Box<dyn Future<Output = anyhow::Result<Report>> + Send>>;

/// One scenario: its name on the command line, what it checks, its deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The name for `--only`.
    pub name: &'static str,
    /// One line on what it does.
    pub about: &'static str,
    /// The overall deadline of the full variant.
    pub deadline: Duration,
    /// The overall deadline of the quick variant.
    pub quick_deadline: Duration,
    /// Starts it.
    pub start: fn(Options) -> ScenarioFuture,
}

impl Scenario {
    /// The deadline for these options.
    pub fn deadline_for(&self, options: &Options) -> Duration {
        options.pick(self.deadline, self.quick_deadline)
    }
}

const fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// Every scenario, in the order they run.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "convergence",
        about: "nodes write concurrently to overlapping documents; all end with equal state",
        deadline: minutes(6),
        quick_deadline: minutes(2),
        start: |o| Box::pin(async move { convergence::run(&o).await }),
    },
    Scenario {
        name: "churn",
        about: "nodes stopped (SIGTERM, SIGKILL) and restarted under writes; no acked write lost",
        deadline: minutes(8),
        quick_deadline: minutes(2),
        start: |o| Box::pin(async move { churn::run(&o).await }),
    },
    Scenario {
        name: "late-joiner",
        about: "a new node joins a space holding many entries and catches up",
        deadline: minutes(15),
        quick_deadline: minutes(2),
        start: |o| Box::pin(async move { late_joiner::run(&o).await }),
    },
    Scenario {
        name: "blobs",
        about: "a large blob added on one node is fetched by the others, byte for byte",
        deadline: minutes(10),
        quick_deadline: minutes(2),
        start: |o| Box::pin(async move { blobs::run(&o).await }),
    },
    Scenario {
        name: "partition",
        about: "groups frozen in turn (SIGSTOP/SIGCONT) keep writing and converge after healing",
        deadline: minutes(8),
        quick_deadline: minutes(2),
        start: |o| Box::pin(async move { partition::run(&o).await }),
    },
    Scenario {
        name: "crash-loop",
        about: "SIGKILL at random moments while writing and syncing; stores open, nothing lost",
        deadline: minutes(20),
        quick_deadline: minutes(3),
        start: |o| Box::pin(async move { crash_loop::run(&o).await }),
    },
    Scenario {
        name: "crash-blobs",
        about: "SIGKILL during blob adds and fetches; blobs absent or complete, retries succeed",
        deadline: minutes(8),
        quick_deadline: minutes(2),
        start: |o| Box::pin(async move { crash_blobs::run(&o).await }),
    },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|scenario| scenario.name == name)
}

/// How one scenario ended.
#[derive(Debug)]
pub struct Outcome {
    /// The scenario's name.
    pub name: &'static str,
    /// Its figures, or why it failed.
    pub result: anyhow::Result<Report>,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Runs `scenario` under its deadline; never panics.
pub async fn run_one(scenario: &Scenario, options: Options) -> Outcome {
    let started = Instant::now();
    let deadline = scenario.deadline_for(&options);
    let mut task = tokio::spawn((scenario.start)(options));
    let result = match tokio::time::timeout(deadline, &mut task).await {
        Ok(Ok(result)) => result,
        Ok(Err(error)) => Err(anyhow::anyhow!("panicked: {}", panic_message(error))),
        Err(_) => {
            // Dropping the scenario's future kills its nodes and removes its data dirs.
            task.abort();
            let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
            Err(anyhow::anyhow!(
                "overall deadline of {}s exceeded; every node of the scenario was killed",
                deadline.as_secs()
            ))
        }
    };
    Outcome { name: scenario.name, result, elapsed: started.elapsed() }
}

fn panic_message(error: tokio::task::JoinError) -> String {
    if !error.is_panic() {
        return error.to_string();
    }
    let payload = error.into_panic();
    if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else {
        "a panic without a message".to_owned()
    }
}
