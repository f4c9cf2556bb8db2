//! Project automation for CosmicSyncCore, run as `cargo xtask <command>`.
//!
//! `cargo xtask ci` is the one command that checks everything CI checks; the other
//! commands run single steps. It is plain Rust (no shell scripts) so that it runs the
//! same way on every machine, and it installs what it lacks (cargo-deny).

mod api_fuzz;
mod bench;
mod bench_gun;
mod ci;
mod e2e;
mod fuzz;
mod soak;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command> [options]

commands:
  ci [--keep-going] [--only STEP]... [--skip STEP]...
                    run every CI step in order: fmt, tidy, clippy, deny, doc, test, e2e, fuzz
  fmt               check formatting (cargo fmt --check)
  tidy              check layering, crate docs, workspace dependencies and lock floors
  deny              cargo deny check bans licenses sources (+ advisories, best-effort)
  doc               build the docs with warnings denied
  test              run every test (nextest if installed) and the doctests
  e2e [--quick] [--only SCENARIO]... [--seed N] [--list]
                    run the multi-process scenarios on loopback (release build)
  bench [--quick] [--compare gun] [--only GROUP]...
                    run the benchmarks; write target/bench/results.json and results.md
  soak [--minutes M] [--warm-up-minutes W] [--out DIR]
                    five release nodes under writes and churn, memory over time
  fuzz [--time S] [TARGET]...
                    build the fuzz targets and run each for S seconds (cargo-fuzz)
  api-fuzz [--time S]
                    fuzz the HTTP API of a release node from its OpenAPI document
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    let Some((command, rest)) = args.split_first() else {
        eprint!("{HELP}");
        return Ok(ExitCode::FAILURE);
    };
    let sh = xshell::Shell::new()?;
    sh.change_dir(project_root());
    match command.as_str() {
        "fuzz" => return fuzz::run(&sh, rest),
        "e2e" => return e2e::run(&sh, rest),
        "bench" => return bench::run(&sh, rest),
        "soak" => return soak::run(&sh, rest),
        "api-fuzz" => return api_fuzz::command(&sh, rest),
        _ => {}
    }
    let options = ci::Options::parse(rest)?;
    let steps: Vec<&str> = match command.as_str() {
        "ci" => ci::STEPS.iter().map(|step| step.name).collect(),
        "fmt" | "tidy" | "clippy" | "deny" | "doc" | "test" => vec![command.as_str()],
        "help" | "--help" | "-h" => {
            eprint!("{HELP}");
            return Ok(ExitCode::SUCCESS);
        }
        other => anyhow::bail!("unknown command {other:?}; see `cargo xtask help`"),
    };
    ci::run_steps(&sh, &steps, &options)
}

/// The workspace root: the parent of this crate's manifest directory.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo that runs us, so that `cargo +toolchain xtask` keeps its toolchain.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}
