//! `cargo xtask soak`: five release nodes under steady writes and churn for ten minutes,
//! resident memory recorded over time (`target/soak/rss.csv`, `target/soak/soak.md`).

use std::process::ExitCode;

use xshell::{Shell, cmd};

use crate::{cargo, project_root};

/// Builds the release node and the soak runner, then runs it with `args` passed through
/// (`--minutes M`, `--warm-up-minutes W`, `--out DIR`).
pub(crate) fn run(sh: &Shell, args: &[String]) -> anyhow::Result<ExitCode> {
    let cargo = cargo();
    cmd!(sh, "{cargo} build --release -p cosmic-node --bin cosmic-node").run()?;
    cmd!(sh, "{cargo} build --release -p cosmic-tests --bin cosmic-soak").run()?;
    let release = project_root().join("target/release");
    let exe = std::env::consts::EXE_SUFFIX;
    let node = release.join(format!("cosmic-node{exe}"));
    let soak = release.join(format!("cosmic-soak{exe}"));
    // The runner streams its progress and prints the table; its exit code is the verdict.
    match cmd!(sh, "{soak} {args...}").env("COSMIC_NODE_BIN", &node).run() {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("xtask: soak failed: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}
