//! `cargo xtask fuzz`: builds the cargo-fuzz targets of `fuzz/` and runs each for a while.
//!
//! The fuzz crate builds on the stable toolchain: cargo-fuzz passes `-Z` flags, which
//! `RUSTC_BOOTSTRAP=1` lets stable accept, and no sanitizer (ours is safe Rust, where a
//! sanitizer finds little, and it doubles the build). Every target runs over a working
//! corpus in `fuzz/target/corpus/<target>` (kept between local runs, never committed)
//! seeded from the committed `fuzz/corpus/<target>` and `fuzz/regressions/<target>`; a
//! crash stops that target, leaves its input in `fuzz/artifacts/<target>/` and fails
//! the command after the other targets have run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::cargo;

/// The cargo-fuzz release installed when it is missing.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Seconds per target when `--time` is not given.
const DEFAULT_SECONDS: u64 = 60;

/// Seconds after which one input counts as a hang (a crash).
const INPUT_TIMEOUT_SECONDS: u64 = 20;

/// The options of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Seconds of fuzzing per target.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_SECONDS)]
    pub(crate) time: u64,
    /// The targets to run (all when none is named).
    #[arg(value_name = "TARGET")]
    pub(crate) targets: Vec<String>,
}

/// `cargo xtask fuzz [--time S] [TARGET]...`.
pub(crate) fn run(sh: &Shell, args: &Args) -> anyhow::Result<ExitCode> {
    let seconds = args.time;
    let only = args.targets.clone();

    let fuzz_dir = sh.current_dir().join("fuzz");
    let all = targets(&fuzz_dir)?;
    if let Some(unknown) = only.iter().find(|name| !all.contains(name)) {
        anyhow::bail!("no fuzz target {unknown:?}; the targets are: {}", all.join(", "));
    }
    let selected = if only.is_empty() { all } else { only };

    install_cargo_fuzz(sh)?;
    let started = Instant::now();
    build(sh)?;
    let build_seconds = started.elapsed().as_secs_f64();
    eprintln!("xtask: fuzz targets built in {build_seconds:.0} s");

    let host = host_triple(sh)?;
    let bin_dir = fuzz_dir.join("target").join(&host).join("release");
    // The checks that go through files make scratch dirs; keep them out of the system's.
    let scratch = fuzz_dir.join("target").join("scratch");
    let mut crashed = Vec::new();
    for target in &selected {
        let outcome = run_target(sh, &fuzz_dir, &bin_dir, &scratch, target, seconds)?;
        eprintln!("{target:<16} {}", outcome.line());
        if let Outcome::Crashed { artifact, .. } = outcome {
            crashed.push((target.clone(), artifact));
        }
    }
    let total = started.elapsed().as_secs_f64();
    if crashed.is_empty() {
        eprintln!("fuzz: {} targets, no crash ({total:.0} s with the build)", selected.len());
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("fuzz: {} of {} targets crashed:", crashed.len(), selected.len());
    for (target, artifact) in &crashed {
        let artifact = artifact
            .as_ref()
            .map_or("(no artifact written)".into(), |path| path.display().to_string());
        eprintln!("  {target}: {artifact}");
        eprintln!("    reproduce: cargo fuzz run --sanitizer none {target} {artifact}");
    }
    eprintln!(
        "fix the decoder, then keep the input in fuzz/regressions/<target>/ (fuzz/README.md)"
    );
    Ok(ExitCode::FAILURE)
}

/// The target names: the `fuzz/fuzz_targets/*.rs` files, sorted.
fn targets(fuzz_dir: &Path) -> anyhow::Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "rs")
            && let Some(stem) = path.file_stem().and_then(|stem| stem.to_str())
        {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    anyhow::ensure!(!names.is_empty(), "no fuzz targets in {}", dir.display());
    Ok(names)
}

fn install_cargo_fuzz(sh: &Shell) -> anyhow::Result<()> {
    let cargo = cargo();
    if cmd!(sh, "{cargo} fuzz --version").quiet().ignore_stdout().ignore_stderr().run().is_ok() {
        return Ok(());
    }
    eprintln!("xtask: cargo-fuzz is missing; installing cargo-fuzz@{CARGO_FUZZ_VERSION}");
    let spec = format!("cargo-fuzz@{CARGO_FUZZ_VERSION}");
    cmd!(sh, "{cargo} install --locked {spec}").run().context("installing cargo-fuzz")?;
    Ok(())
}

/// Builds every target once, at low priority so that other builds on the machine go on.
fn build(sh: &Shell) -> anyhow::Result<()> {
    let cargo = cargo();
    // Stable rustc accepts cargo-fuzz's `-Z` flags with RUSTC_BOOTSTRAP; no nightly needed.
    let _bootstrap = sh.push_env("RUSTC_BOOTSTRAP", "1");
    let fuzz_build = [
        "fuzz",
        "build",
        "--release",
        "--debug-assertions",
        "--sanitizer",
        "none",
        // One codegen unit (cargo-fuzz's default) makes the cold build much slower for
        // a little more speed per input; a short run wants the build done.
        "--codegen-units",
        "16",
    ];
    let niced = cfg!(unix)
        && cmd!(sh, "nice --version").quiet().ignore_stdout().ignore_stderr().run().is_ok();
    let result = if niced {
        cmd!(sh, "nice -n 10 {cargo} {fuzz_build...}").run()
    } else {
        cmd!(sh, "{cargo} {fuzz_build...}").run()
    };
    result.context("building the fuzz targets (cargo fuzz build)")
}

/// The host target triple, where cargo-fuzz puts the binaries.
fn host_triple(sh: &Shell) -> anyhow::Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = cmd!(sh, "{rustc} -vV").quiet().read().context("rustc -vV")?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .context("no host line in rustc -vV")
}

/// How one target's run ended.
enum Outcome {
    /// It ran for its time without a crash.
    Passed { runs: u64, corpus: usize, seconds: f64 },
    /// libFuzzer found an input that panics, hangs or runs out of memory.
    Crashed { artifact: Option<PathBuf>, summary: String },
}

impl Outcome {
    fn line(&self) -> String {
        match self {
            Outcome::Passed { runs, corpus, seconds } => {
                format!("ok      {runs:>10} runs  {corpus:>5} corpus  {seconds:>4.0} s")
            }
            Outcome::Crashed { artifact, summary } => {
                let artifact =
                    artifact.as_ref().map_or("no artifact".into(), |p| p.display().to_string());
                format!("CRASH   {summary}  artifact: {artifact}")
            }
        }
    }
}

fn run_target(
    sh: &Shell,
    fuzz_dir: &Path,
    bin_dir: &Path,
    scratch: &Path,
    target: &str,
    seconds: u64,
) -> anyhow::Result<Outcome> {
    let binary = bin_dir.join(format!("{target}{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(binary.is_file(), "{} was not built", binary.display());
    let work = fuzz_dir.join("target").join("corpus").join(target);
    let corpus = fuzz_dir.join("corpus").join(target);
    let regressions = fuzz_dir.join("regressions").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    for dir in [&work, &artifacts, scratch] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // libFuzzer adds new inputs to the first directory only: the working corpus.
    let mut dirs = vec![work.clone()];
    dirs.extend([corpus, regressions].into_iter().filter(|dir| dir.is_dir()));
    let artifact_prefix = format!("-artifact_prefix={}/", artifacts.display());
    let max_time = format!("-max_total_time={seconds}");
    let timeout = format!("-timeout={INPUT_TIMEOUT_SECONDS}");
    let _tmp = sh.push_env("TMPDIR", scratch);
    let run_started = Instant::now();
    let output =
        cmd!(sh, "{binary} {dirs...} {max_time} {timeout} {artifact_prefix} -print_final_stats=1")
            .ignore_status()
            .quiet()
            .output()
            .with_context(|| format!("running {}", binary.display()))?;
    let elapsed = run_started.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        let runs = stat(&log, "stat::number_of_executed_units:").unwrap_or(0);
        let corpus = std::fs::read_dir(&work).map(Iterator::count).unwrap_or(0);
        return Ok(Outcome::Passed { runs, corpus, seconds: elapsed });
    }
    // Show the fuzzer's own report: the panic message and the backtrace.
    eprintln!("----- {target}: libFuzzer output (last 60 lines) -----");
    let lines: Vec<&str> = log.lines().collect();
    for line in &lines[lines.len().saturating_sub(60)..] {
        eprintln!("{line}");
    }
    eprintln!("----- end of {target} -----");
    let artifact = log.lines().find_map(|line| {
        line.split_once("Test unit written to ").map(|(_, path)| PathBuf::from(path.trim()))
    });
    let summary = log
        .lines()
        .find(|line| line.starts_with("SUMMARY:") || line.contains("deadly signal"))
        .unwrap_or("the fuzzer failed")
        .trim()
        .to_owned();
    Ok(Outcome::Crashed { artifact, summary })
}

/// A number from libFuzzer's `-print_final_stats` output.
fn stat(log: &str, key: &str) -> Option<u64> {
    log.lines().find_map(|line| line.strip_prefix(key)).and_then(|value| value.trim().parse().ok())
}
