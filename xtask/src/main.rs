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

use clap::{Parser, Subcommand};

/// Project automation for CosmicSyncCore: `cargo xtask ci` checks everything CI checks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every CI step in order: fmt, tidy, clippy, deny, doc, test, e2e, fuzz.
    Ci(ci::Options),
    /// Check formatting (cargo fmt --check).
    Fmt,
    /// Check layering, crate docs, lengths, workspace dependencies and lock floors.
    Tidy,
    /// Clippy on every target, warnings denied.
    Clippy,
    /// cargo deny check bans licenses sources (and advisories, best-effort).
    Deny,
    /// Build the docs with warnings denied.
    Doc,
    /// Run every test (nextest if installed) and the doctests.
    Test,
    /// Run the multi-process scenarios on loopback (release build).
    E2e(e2e::Args),
    /// Run the benchmarks; write target/bench/results.json and results.md.
    Bench(bench::Args),
    /// Five release nodes under writes and churn, memory over time.
    Soak(soak::Args),
    /// Build the fuzz targets and run each for a while (cargo-fuzz).
    Fuzz(fuzz::Args),
    /// Fuzz the HTTP API of a release node from its OpenAPI document.
    ApiFuzz(api_fuzz::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    let sh = xshell::Shell::new()?;
    sh.change_dir(project_root());
    let step = match command {
        Command::Ci(options) => {
            let steps: Vec<&str> = ci::STEPS.iter().map(|step| step.name).collect();
            return ci::run_steps(&sh, &steps, &options);
        }
        Command::Fuzz(args) => return fuzz::run(&sh, &args),
        Command::E2e(args) => return e2e::run(&sh, &args),
        Command::Bench(args) => return bench::run(&sh, &args),
        Command::Soak(args) => return soak::run(&sh, &args),
        Command::ApiFuzz(args) => return api_fuzz::command(&sh, &args),
        Command::Fmt => "fmt",
        Command::Tidy => "tidy",
        Command::Clippy => "clippy",
        Command::Deny => "deny",
        Command::Doc => "doc",
        Command::Test => "test",
    };
    ci::run_steps(&sh, &[step], &ci::Options::default())
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
