//! `cargo xtask e2e`: multi-process scenarios with real `cosmic-node` processes on
//! loopback (convergence, churn, late joiner, blobs, partition, crash loops), run by the
//! `cosmic-scenarios` binary of `cosmic-tests`; the full run ends with API fuzzing.
//!
//! The full run builds in release; `--quick` runs the small variant on a dev build, and
//! the CI step runs it on the `ci` profile the test step has built already.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::cargo;

/// How long the full run fuzzes the API after the scenarios.
const API_FUZZ_BUDGET: Duration = Duration::from_secs(120);

/// One row of the final table.
struct Row {
    name: String,
    passed: bool,
    seconds: f64,
    detail: String,
}

/// The options of `cargo xtask e2e`.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct Args {
    /// Small sizes on a debug build, without the API fuzzer: checks that all runs.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Run only this scenario (repeatable; `api-fuzz` is the API fuzzer).
    #[arg(long, value_name = "SCENARIO")]
    pub(crate) only: Vec<String>,
    /// The seed of the scenarios' random choices.
    #[arg(long, value_name = "N")]
    pub(crate) seed: Option<u64>,
    /// List the scenarios.
    #[arg(long)]
    pub(crate) list: bool,
}

/// `cargo xtask e2e [--quick] [--only SCENARIO]... [--seed N] [--list]`.
pub(crate) fn run(sh: &Shell, args: &Args) -> anyhow::Result<ExitCode> {
    let quick = args.quick;
    let profile = if quick { "dev" } else { "release" };
    let passed = run_with_profile(sh, profile, args)?;
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The target dir (honours `CARGO_TARGET_DIR` and config through cargo metadata).
fn target_dir(sh: &Shell) -> anyhow::Result<PathBuf> {
    let cargo = cargo();
    let metadata = cmd!(sh, "{cargo} metadata --format-version 1 --no-deps").quiet().read()?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata)?;
    let dir = metadata["target_directory"].as_str().context("no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// Builds the node and the runner in `profile`, runs the scenarios selected by `args`
/// and, in a full run, the API fuzzer; prints the table. Returns whether all passed.
pub(crate) fn run_with_profile(sh: &Shell, profile: &str, args: &Args) -> anyhow::Result<bool> {
    let quick = args.quick;
    let cargo = cargo();
    let locked: &[&str] = if profile == "ci" { &["--locked"] } else { &[] };
    cmd!(sh, "{cargo} build {locked...} --profile {profile} -p cosmic-node -p cosmic-tests --bins")
        .run()
        .context("building cosmic-node and cosmic-scenarios")?;
    let out = target_dir(sh)?.join(if profile == "dev" { "debug" } else { profile });
    let exe = std::env::consts::EXE_SUFFIX;
    let node_bin = out.join(format!("cosmic-node{exe}"));
    let runner = out.join(format!("cosmic-scenarios{exe}"));
    if args.list {
        cmd!(sh, "{runner} --list").run()?;
        eprintln!("api-fuzz     the API fuzzer from the OpenAPI document (full run only)");
        return Ok(true);
    }

    // `--only api-fuzz` selects the fuzzer, which is not the runner's.
    let mut runner_args = Vec::new();
    if quick {
        runner_args.push("--quick".to_owned());
    }
    if let Some(seed) = args.seed {
        runner_args.extend(["--seed".to_owned(), seed.to_string()]);
    }
    let only = &args.only;
    for name in only.iter().filter(|name| *name != "api-fuzz") {
        runner_args.extend(["--only".to_owned(), name.clone()]);
    }
    let run_scenarios = only.is_empty() || only.iter().any(|name| name != "api-fuzz");
    let run_fuzz = !quick && (only.is_empty() || only.iter().any(|name| name == "api-fuzz"));

    let mut rows = Vec::new();
    if run_scenarios {
        let results = out.join("e2e-results.tsv");
        let _ = std::fs::remove_file(&results);
        // The runner prints a line per scenario as it ends; its exit code is in the rows.
        let status = match cmd!(sh, "{runner} {runner_args...} --results {results}")
            .env("COSMIC_NODE_BIN", &node_bin)
            .run()
        {
            Ok(()) => "it exited with 0".to_owned(),
            Err(error) => error.to_string(),
        };
        rows.extend(read_results(&results));
        if rows.is_empty() {
            rows.push(Row {
                name: "scenarios".to_owned(),
                passed: false,
                seconds: 0.0,
                detail: format!("the runner produced no results ({status})"),
            });
        }
    }
    if run_fuzz {
        let started = Instant::now();
        let result = crate::api_fuzz::run(sh, &node_bin, API_FUZZ_BUDGET);
        rows.push(Row {
            name: "api-fuzz".to_owned(),
            passed: result.is_ok(),
            seconds: started.elapsed().as_secs_f64(),
            detail: match result {
                Ok(()) => format!("{}s of fuzzing found nothing", API_FUZZ_BUDGET.as_secs()),
                Err(error) => format!("{error:#}"),
            },
        });
    }
    eprintln!("\n== xtask e2e ({}) ==", if quick { "quick" } else { "full" });
    eprintln!("| scenario | result | time | detail |\n|---|---|---|---|");
    for row in &rows {
        let result = if row.passed { "pass" } else { "FAIL" };
        eprintln!("| {} | {result} | {:.1}s | {} |", row.name, row.seconds, row.detail);
    }
    Ok(rows.iter().all(|row| row.passed))
}

/// Reads the runner's tab-separated rows (none if the file is missing).
fn read_results(path: &Path) -> Vec<Row> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(4, '\t');
            let name = fields.next()?.to_owned();
            let passed = fields.next()? == "PASS";
            let seconds = fields.next()?.parse().ok()?;
            let detail = fields.next().unwrap_or_default().to_owned();
            Some(Row { name, passed, seconds, detail })
        })
        .collect()
}
