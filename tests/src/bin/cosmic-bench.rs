//! `cosmic-bench`: the benchmark suite (see `cosmic_tests::bench`) against the
//! `cosmic-node` binary in `COSMIC_NODE_BIN`; `cargo xtask bench` builds and runs it.
//!
//! Usage: `cosmic-bench [--quick] [--only GROUP]... [--list]`.
//! Each figure is printed on stdout as one JSON line as soon as it is measured; a group
//! that fails prints `{"group": ..., "error": ...}` instead and the others still run.
//! Progress goes to stderr. Exits with 1 when any group failed.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line runner reports on the terminal"
)]

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use cosmic_tests::bench::{self, GROUPS, Options};
use serde_json::json;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("cosmic-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let mut quick = false;
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" => {
                let name = args.next().context("--only needs a group name")?;
                if !GROUPS.iter().any(|group| group.name == name) {
                    bail!("unknown group {name:?}; see --list");
                }
                only.push(name);
            }
            "--list" => {
                for group in GROUPS {
                    println!("{:<12} {}", group.name, group.about);
                }
                return Ok(true);
            }
            "-h" | "--help" => {
                println!("usage: cosmic-bench [--quick] [--only GROUP]... [--list]");
                return Ok(true);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    let options = Options { quick };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut all_passed = true;
    for group in GROUPS {
        if !only.is_empty() && !only.iter().any(|name| name == group.name) {
            continue;
        }
        eprintln!("== {} ({})", group.name, group.about);
        let started = Instant::now();
        let mut emit = |figure: bench::Figure| println!("{}", figure.to_json());
        let result = runtime.block_on(bench::run_group(group.name, options, &mut emit));
        if let Err(error) = result {
            all_passed = false;
            eprintln!("== {} FAILED: {error:#}", group.name);
            println!("{}", json!({ "group": group.name, "error": format!("{error:#}") }));
        } else {
            eprintln!("== {} done in {:.0}s", group.name, started.elapsed().as_secs_f64());
        }
    }
    Ok(all_passed)
}
