//! `cosmic-scenarios`: runs the multi-process scenarios (see `cosmic_tests::scenarios`)
//! against the `cosmic-node` binary in `COSMIC_NODE_BIN`, one line per scenario as it ends
//! and a table at the end; exits with 1 when any scenario failed.
//!
//! Usage: `cosmic-scenarios [--quick] [--only NAME]... [--seed N] [--list] [--results FILE]`.
//! `--results FILE` also writes the rows as tab-separated lines
//! (`name`, `PASS`/`FAIL`, seconds, detail) for `cargo xtask e2e`.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line runner reports on the terminal"
)]

use std::process::ExitCode;

use anyhow::{Context, bail};
use cosmic_tests::scenarios::{self, Options, Outcome, SCENARIOS};

struct Args {
    quick: bool,
    only: Vec<String>,
    seed: Option<u64>,
    list: bool,
    results: Option<std::path::PathBuf>,
}

fn parse() -> anyhow::Result<Args> {
    let mut parsed =
        Args { quick: false, only: Vec::new(), seed: None, list: false, results: None };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => parsed.quick = true,
            "--list" => parsed.list = true,
            "--only" => {
                let name = args.next().context("--only needs a scenario name")?;
                if scenarios::find(&name).is_none() {
                    bail!("unknown scenario {name:?}; see --list");
                }
                parsed.only.push(name);
            }
            "--seed" => {
                let seed = args.next().context("--seed needs a number")?;
                parsed.seed = Some(seed.parse().context("--seed needs a number")?);
            }
            "--results" => {
                parsed.results = Some(args.next().context("--results needs a file")?.into());
            }
            "-h" | "--help" => {
                println!(
                    "usage: cosmic-scenarios [--quick] [--only NAME]... [--seed N] [--list] [--results FILE]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(parsed)
}

/// One row of the table: `(name, passed, seconds, detail)`.
fn row(outcome: &Outcome) -> (String, bool, f64, String) {
    let (passed, detail) = match &outcome.result {
        Ok(report) => (true, report.detail.clone()),
        Err(error) => (false, format!("{error:#}")),
    };
    (
        outcome.name.to_owned(),
        passed,
        outcome.elapsed.as_secs_f64(),
        detail.replace(['\n', '\t'], " "),
    )
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("cosmic-scenarios: {error:#}");
            return ExitCode::from(2);
        }
    };
    if args.list {
        for scenario in SCENARIOS {
            println!("{:<12} {}", scenario.name, scenario.about);
        }
        return ExitCode::SUCCESS;
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let options = Options { quick: args.quick, seed };
    let selected: Vec<_> = SCENARIOS
        .iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|name| name == s.name))
        .collect();
    println!(
        "cosmic-scenarios: {} scenario(s), {}, seed {seed} (rerun with --seed {seed})",
        selected.len(),
        if args.quick { "quick" } else { "full" }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut rows = Vec::new();
    for scenario in selected {
        println!("... {} (deadline {}s)", scenario.name, scenario.deadline_for(&options).as_secs());
        let outcome = runtime.block_on(scenarios::run_one(scenario, options));
        let row = row(&outcome);
        println!("{} {} {:.1}s  {}", if row.1 { "PASS" } else { "FAIL" }, row.0, row.2, row.3);
        rows.push(row);
    }
    // With --results the caller (`cargo xtask e2e`) prints the table, with its own rows.
    if args.results.is_none() {
        println!("\n| scenario | result | time | detail |\n|---|---|---|---|");
        for (name, passed, seconds, detail) in &rows {
            println!(
                "| {name} | {} | {seconds:.1}s | {detail} |",
                if *passed { "pass" } else { "FAIL" }
            );
        }
    }
    if let Some(path) = &args.results {
        let text: String = rows
            .iter()
            .map(|(name, passed, seconds, detail)| {
                format!(
                    "{name}\t{}\t{seconds:.1}\t{detail}\n",
                    if *passed { "PASS" } else { "FAIL" }
                )
            })
            .collect();
        if let Err(error) = std::fs::write(path, text) {
            eprintln!("cosmic-scenarios: writing {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if rows.iter().all(|row| row.1) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
