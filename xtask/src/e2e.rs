//! `cargo xtask e2e`: multi-process scenarios with real `cosmic-node` processes.

use std::process::ExitCode;

/// Runs the scenarios (placeholder until the scenario runner lands).
pub(crate) fn run(_sh: &xshell::Shell, _args: &[String]) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`cargo xtask e2e` is not available yet")
}
