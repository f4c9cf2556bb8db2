//! `cosmic-soak`: five real nodes under steady writes and churn, memory sampled over time
//! (see `cosmic_tests::soak`). `cargo xtask soak` builds and runs it.
//!
//! Usage: `cosmic-soak [--minutes M] [--warm-up-minutes W] [--out DIR]`; writes
//! `DIR/rss.csv` and `DIR/soak.md` and exits 1 when the run fails.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line runner reports on the terminal"
)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cosmic_tests::soak::{self, Options};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("cosmic-soak: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let mut out = PathBuf::from("target/soak");
    let mut minutes = None;
    let mut warm_up = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> anyhow::Result<String> {
            args.next().ok_or_else(|| anyhow::anyhow!("{name} needs a value"))
        };
        match arg.as_str() {
            "--minutes" => minutes = Some(value("--minutes")?.parse::<f64>()?),
            "--warm-up-minutes" => warm_up = Some(value("--warm-up-minutes")?.parse::<f64>()?),
            "--out" => out = PathBuf::from(value("--out")?),
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    let mut options = Options::full(&out);
    if let Some(minutes) = minutes {
        anyhow::ensure!(minutes > 0.0, "--minutes must be positive");
        options.duration = Duration::from_secs_f64(minutes * 60.0);
        options.warm_up = options.duration.mul_f64(0.3);
        options.churn_every = options.churn_every.min(options.duration / 4);
    }
    if let Some(warm_up) = warm_up {
        options.warm_up = Duration::from_secs_f64(warm_up * 60.0);
    }
    anyhow::ensure!(options.warm_up < options.duration, "the warm-up must end before the run");
    println!(
        "soak: {} nodes ({} steady), {:?}, warm-up {:?}, {} writes/s per node, restart every {:?}",
        soak::NODES,
        soak::STEADY,
        options.duration,
        options.warm_up,
        options.writes_per_second,
        options.churn_every
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(soak::run(&options, |line| println!("{line}")))?;
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("rss.csv"), report.csv())?;
    let markdown = report.markdown();
    std::fs::write(out.join("soak.md"), &markdown)?;
    println!("\n{markdown}");
    println!("wrote {} and {}", out.join("rss.csv").display(), out.join("soak.md").display());
    let passed = report.passed();
    println!("soak: {}", if passed { "passed" } else { "FAILED" });
    Ok(passed)
}
