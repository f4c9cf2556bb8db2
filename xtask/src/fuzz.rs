//! `cargo xtask fuzz`: builds the cargo-fuzz targets and runs each for a while.

use std::process::ExitCode;

/// Runs the fuzz targets (placeholder until the fuzz crate lands).
pub(crate) fn run(_sh: &xshell::Shell, _args: &[String]) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`cargo xtask fuzz` is not available yet")
}
