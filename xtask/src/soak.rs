//! `cargo xtask soak`: five release nodes under steady writes and churn for ten minutes,
//! resident memory recorded over time (`target/soak/rss.csv`, `target/soak/soak.md`).

use std::process::ExitCode;

use xshell::{Shell, cmd};

use crate::{cargo, project_root};

/// The options of `cargo xtask soak`, passed on to the runner.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Minutes of writes and churn (the runner's default when not given).
    #[arg(long, value_name = "M")]
    minutes: Option<u64>,
    /// Minutes of warm-up before the measured time.
    #[arg(long, value_name = "W")]
    warm_up_minutes: Option<u64>,
    /// Where to write the results.
    #[arg(long, value_name = "DIR")]
    out: Option<std::path::PathBuf>,
}

/// Builds the release node and the soak runner, then runs it with `args`.
pub(crate) fn run(sh: &Shell, args: &Args) -> anyhow::Result<ExitCode> {
    let mut runner_args: Vec<String> = Vec::new();
    if let Some(minutes) = args.minutes {
        runner_args.extend(["--minutes".to_owned(), minutes.to_string()]);
    }
    if let Some(minutes) = args.warm_up_minutes {
        runner_args.extend(["--warm-up-minutes".to_owned(), minutes.to_string()]);
    }
    if let Some(out) = &args.out {
        runner_args.extend(["--out".to_owned(), out.display().to_string()]);
    }
    let args = runner_args;
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
