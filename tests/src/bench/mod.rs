//! The benchmark suite behind `cargo xtask bench`, run by the `cosmic-bench` binary.
//!
//! Each group measures a few figures and returns them as [`Figure`]s: every figure is
//! the median of several runs (at least three in the full run), with the minimum and the
//! maximum, its unit, which way is better, and one sentence on the method. The binary
//! prints each figure as one JSON line on stdout; the runner collects them.
//!
//! Groups that measure the store and reconciliation run in-process on real redb files;
//! the others start real `cosmic-node` processes on loopback (see
//! [`crate::harness::TestNode`]) and drive them through their HTTP API.

use std::time::Duration;

use serde_json::{Value, json};

pub mod inproc;
pub mod mesh;
pub mod procs;

/// What every group gets.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Small sizes and fewer runs, to check that the suite works.
    pub quick: bool,
}

impl Options {
    /// `full` in the full run, `quick` with `--quick`.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }

    /// How many runs each figure takes.
    pub fn runs(&self) -> usize {
        self.pick(3, 2)
    }
}

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// More is better (throughput).
    Higher,
    /// Less is better (latency, bytes, memory).
    Lower,
}

/// One measured figure: the samples of its runs and how they were taken.
#[derive(Debug, Clone)]
pub struct Figure {
    /// The group it belongs to (`store`, `propagation`, ...).
    pub group: &'static str,
    /// Its name within the group.
    pub name: String,
    /// The unit of the samples.
    pub unit: &'static str,
    /// Which way is better.
    pub better: Better,
    /// One value per run.
    pub samples: Vec<f64>,
    /// How it was measured.
    pub method: String,
}

impl Figure {
    /// A figure from its samples.
    pub fn new(
        group: &'static str,
        name: impl Into<String>,
        unit: &'static str,
        better: Better,
        samples: Vec<f64>,
        method: impl Into<String>,
    ) -> Self {
        Self { group, name: name.into(), unit, better, samples, method: method.into() }
    }

    /// The JSON line the binary prints:
    /// `{"group","name","unit","better","median","min","max","runs","samples","method"}`.
    pub fn to_json(&self) -> Value {
        let (median, min, max) = summary(&self.samples);
        json!({
            "group": self.group,
            "name": self.name,
            "unit": self.unit,
            "better": match self.better { Better::Higher => "higher", Better::Lower => "lower" },
            "median": median,
            "min": min,
            "max": max,
            "runs": self.samples.len(),
            "samples": self.samples,
            "method": self.method,
        })
    }
}

/// `(median, min, max)` of `samples` (the median of an even count is the mean of the two
/// middle values); zeros when there are none.
pub fn summary(samples: &[f64]) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
    (median, sorted[0], sorted[n - 1])
}

/// The `q` quantile (0..=1) of `samples` by nearest rank; zero when there are none.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Resident memory (VmRSS) of process `pid` in MiB, from `/proc/<pid>/status`.
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS line for process {pid}"))?;
    Ok(kib / 1024.0)
}

/// Milliseconds in `duration`.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// A group: its name for `--only`, what it measures, and how to run it.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    /// The name for `--only`.
    pub name: &'static str,
    /// One line on what it measures.
    pub about: &'static str,
}

/// Every group, in the order they run.
pub const GROUPS: &[Group] = &[
    Group { name: "store", about: "local writes (durable single, batched) and reads, in-process" },
    Group { name: "propagation", about: "write-to-event latency between two node processes" },
    Group { name: "replication", about: "sustained replicated entries per second, two processes" },
    Group { name: "catchup", about: "a new node catching up on 100,000 entries: time and bytes" },
    Group { name: "recon", about: "reconciliation bytes for 10 and 1,000 differences in 1M" },
    Group { name: "blobs", about: "1 GiB blob add and transfer next to a plain TCP copy" },
    Group { name: "memory", about: "resident memory of an idle node and with 1M entries" },
    Group { name: "scale", about: "one write reaching 20 node processes, and their memory" },
    Group { name: "mesh", about: "one write reaching 100 processes in a random mesh; memory" },
];

/// Runs group `name`; its figures go to `emit` as they are measured.
pub async fn run_group(
    name: &str,
    options: Options,
    emit: &mut dyn FnMut(Figure),
) -> anyhow::Result<()> {
    match name {
        "store" => tokio::task::block_in_place(|| inproc::store(options, emit)),
        "recon" => tokio::task::block_in_place(|| inproc::recon(options, emit)),
        "propagation" => procs::propagation(options, emit).await,
        "replication" => procs::replication(options, emit).await,
        "catchup" => procs::catchup(options, emit).await,
        "blobs" => procs::blobs(options, emit).await,
        "memory" => procs::memory(options, emit).await,
        "scale" => procs::scale(options, emit).await,
        "mesh" => mesh::mesh(options, emit).await,
        other => anyhow::bail!("unknown group {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{quantile, summary};

    #[test]
    fn summary_takes_the_middle_and_the_extremes() {
        assert_eq!(summary(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(summary(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert_eq!(summary(&[]), (0.0, 0.0, 0.0));
    }

    #[test]
    fn quantile_is_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&samples, 0.5), 51.0);
        assert_eq!(quantile(&samples, 0.99), 99.0);
        assert_eq!(quantile(&samples, 1.0), 100.0);
    }
}
