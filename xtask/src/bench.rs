//! `cargo xtask bench`: the benchmark suite in release mode.

use std::process::ExitCode;

/// Runs the benchmarks (placeholder until the runner lands).
pub(crate) fn run(_sh: &xshell::Shell, _args: &[String]) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`cargo xtask bench` is not available yet")
}
