//! `cargo xtask bench --compare gun`: the same workloads against Gun.js and against
//! CosmicSyncCore, in one run.

use std::path::Path;

/// Runs the comparison workloads and returns one JSON record per workload
/// (placeholder until the comparison harness lands).
#[allow(dead_code, reason = "the bench runner calls it with --compare gun")]
pub(crate) fn run(
    _sh: &xshell::Shell,
    _node_bin: &Path,
    _out_dir: &Path,
    _quick: bool,
) -> anyhow::Result<Vec<serde_json::Value>> {
    anyhow::bail!("`cargo xtask bench --compare gun` is not available yet")
}
