//! The CI steps and the runner that prints one line per step and a summary.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::{cargo, tidy};

/// Options of `cargo xtask ci`.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct Options {
    /// Run the steps after a failed one too.
    #[arg(long)]
    keep_going: bool,
    /// Run only this step (repeatable).
    #[arg(long, value_name = "STEP", value_parser = step_name)]
    only: Vec<String>,
    /// Skip this step (repeatable).
    #[arg(long, value_name = "STEP", value_parser = step_name)]
    skip: Vec<String>,
}

/// A step name given on the command line, checked against [`STEPS`].
fn step_name(name: &str) -> anyhow::Result<String> {
    if !STEPS.iter().any(|known| known.name == name) {
        bail!("unknown step {name:?}; steps: {}", step_names());
    }
    Ok(name.to_owned())
}

/// One CI step: a name for the summary, what it runs, and a hint shown when it fails.
pub(crate) struct Step {
    pub(crate) name: &'static str,
    run: fn(&Shell) -> anyhow::Result<Outcome>,
    hint: &'static str,
}

/// How a step ended when it did not fail.
enum Outcome {
    Passed,
    /// Passed, with a part that could not run here, said out loud.
    PassedWithNote(String),
}

/// Every step of `cargo xtask ci`, in the order they run: cheap checks first.
pub(crate) const STEPS: &[Step] = &[
    Step { name: "fmt", run: fmt, hint: "run `cargo fmt --all`" },
    Step {
        name: "tidy",
        run: tidy_step,
        hint: "see the messages above; docs/ARCHITECTURE.md explains the rules",
    },
    Step {
        name: "clippy",
        run: clippy,
        hint: "fix the warnings above; each `allow` needs a reason",
    },
    Step {
        name: "deny",
        run: deny,
        hint: "see deny.toml; a new dependency must fit its license and ban rules",
    },
    Step {
        name: "doc",
        run: doc,
        hint: "every public item needs a doc comment and intra-doc links must resolve",
    },
    Step { name: "test", run: test, hint: "rerun one crate with `cargo nextest run -p <crate>`" },
    Step {
        name: "e2e",
        run: e2e_quick,
        hint: "rerun one with `cargo xtask e2e --quick --only NAME --seed N` (seed printed above)",
    },
    Step {
        name: "fuzz",
        run: fuzz_short,
        hint: "reproduce with the command printed above; fuzz/README.md says how to keep the input",
    },
];

fn step_names() -> String {
    STEPS.iter().map(|step| step.name).collect::<Vec<_>>().join(", ")
}

pub(crate) fn run_steps(sh: &Shell, names: &[&str], options: &Options) -> anyhow::Result<ExitCode> {
    let mut results: Vec<(&str, Result<Outcome, anyhow::Error>, f64)> = Vec::new();
    let total = Instant::now();
    for step in STEPS.iter().filter(|step| names.contains(&step.name)) {
        let selected = options.only.is_empty() || options.only.iter().any(|name| name == step.name);
        if !selected || options.skip.iter().any(|name| name == step.name) {
            continue;
        }
        eprintln!("\n== xtask: {} ==", step.name);
        let started = Instant::now();
        let result = (step.run)(sh);
        let seconds = started.elapsed().as_secs_f64();
        let failed = result.is_err();
        match &result {
            Ok(Outcome::Passed) => eprintln!("ok    {:<8} {seconds:>6.0}s", step.name),
            Ok(Outcome::PassedWithNote(note)) => {
                eprintln!("ok    {:<8} {seconds:>6.0}s  ({note})", step.name)
            }
            Err(error) => {
                eprintln!("FAIL  {:<8} {seconds:>6.0}s  {error:#}", step.name);
                eprintln!("hint: {}", step.hint);
            }
        }
        results.push((step.name, result, seconds));
        if failed && !options.keep_going {
            break;
        }
    }

    eprintln!("\n== xtask summary ({:.0}s) ==", total.elapsed().as_secs_f64());
    let mut n_failed = 0;
    for (name, result, seconds) in &results {
        match result {
            Ok(Outcome::Passed) => eprintln!("ok    {name:<8} {seconds:>6.0}s"),
            Ok(Outcome::PassedWithNote(note)) => {
                eprintln!("ok    {name:<8} {seconds:>6.0}s  ({note})")
            }
            Err(error) => {
                n_failed += 1;
                eprintln!("FAIL  {name:<8} {seconds:>6.0}s  {error:#}");
            }
        }
    }
    if results.is_empty() {
        bail!("no step selected; steps: {}", step_names());
    }
    // One plain closing line for whoever reads only the end of the log.
    eprintln!("steps: {} passed, {n_failed} failed", results.len() - n_failed);
    Ok(if n_failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn fmt(sh: &Shell) -> anyhow::Result<Outcome> {
    let cargo = cargo();
    cmd!(sh, "{cargo} fmt --all -- --check").run().context("code is not formatted")?;
    Ok(Outcome::Passed)
}

fn tidy_step(sh: &Shell) -> anyhow::Result<Outcome> {
    let cargo = cargo();
    let metadata = cmd!(sh, "{cargo} metadata --format-version 1 --no-deps")
        .quiet()
        .read()
        .context("cargo metadata failed")?;
    let lock = sh.read_file("Cargo.lock").context("reading Cargo.lock")?;
    let problems = tidy::check_all(&sh.current_dir(), &metadata, &lock)?;
    if problems.is_empty() {
        return Ok(Outcome::Passed);
    }
    for problem in &problems {
        eprintln!("tidy: {problem}");
    }
    bail!("{} tidy problem(s)", problems.len())
}

fn clippy(sh: &Shell) -> anyhow::Result<Outcome> {
    let cargo = cargo();
    cmd!(sh, "{cargo} clippy --workspace --all-targets --locked --profile ci -- -D warnings")
        .run()
        .context("clippy found problems")?;
    Ok(Outcome::Passed)
}

const CARGO_DENY_VERSION: &str = "0.20.2";

fn deny(sh: &Shell) -> anyhow::Result<Outcome> {
    let cargo = cargo();
    if cmd!(sh, "{cargo} deny --version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        eprintln!("xtask: cargo-deny is missing; installing cargo-deny@{CARGO_DENY_VERSION}");
        let spec = format!("cargo-deny@{CARGO_DENY_VERSION}");
        cmd!(sh, "{cargo} install --locked {spec}").run().context("installing cargo-deny")?;
    }
    cmd!(sh, "{cargo} deny --all-features check bans licenses sources")
        .run()
        .context("cargo deny check bans licenses sources")?;
    // The advisory database lives on a host these machines cannot reach. Try it, and say
    // plainly when it could not run, but fail on advisories it did find.
    let output = cmd!(sh, "{cargo} deny --all-features check advisories")
        .ignore_status()
        .output()
        .context("running cargo deny check advisories")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        return Ok(Outcome::Passed);
    }
    if advisories_fetch_failed(&stderr) {
        eprintln!("{}", last_lines(&stderr, 5));
        return Ok(Outcome::PassedWithNote(
            "advisories SKIPPED: the advisory database could not be fetched".to_owned(),
        ));
    }
    eprintln!("{stderr}");
    bail!("cargo deny check advisories found problems")
}

fn advisories_fetch_failed(stderr: &str) -> bool {
    let stderr = stderr.to_lowercase();
    [
        "failed to fetch",
        "failed to open advisory database",
        "unable to fetch",
        "failed to load advisory database",
        "failed to connect",
        "could not resolve",
        "network",
    ]
    .iter()
    .any(|needle| stderr.contains(needle))
        && !stderr.contains("error[vulnerability]")
        && !stderr.contains("error[unmaintained]")
        && !stderr.contains("error[unsound]")
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn doc(sh: &Shell) -> anyhow::Result<Outcome> {
    let cargo = cargo();
    let _flags = sh.push_env("RUSTDOCFLAGS", "-D warnings");
    cmd!(sh, "{cargo} doc --workspace --no-deps --locked --profile ci")
        .run()
        .context("cargo doc found problems")?;
    Ok(Outcome::Passed)
}

fn test(sh: &Shell) -> anyhow::Result<Outcome> {
    let cargo = cargo();
    // End-to-end tests drive the real binary; build it first and say where it is, since
    // tests never run cargo themselves.
    cmd!(sh, "{cargo} build --locked --profile ci -p cosmic-node --bin cosmic-node")
        .run()
        .context("building cosmic-node for the end-to-end tests")?;
    let metadata = cmd!(sh, "{cargo} metadata --format-version 1 --no-deps").quiet().read()?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata)?;
    let target_dir = metadata["target_directory"].as_str().context("no target_directory")?;
    let node_bin = std::path::Path::new(target_dir).join("ci").join("cosmic-node");
    let _bin = sh.push_env("COSMIC_NODE_BIN", &node_bin);
    let have_nextest =
        cmd!(sh, "{cargo} nextest --version").quiet().ignore_stdout().ignore_stderr().run().is_ok();
    let note = if have_nextest {
        cmd!(sh, "{cargo} nextest run --workspace --locked --cargo-profile ci --profile ci")
            .run()
            .context("tests failed")?;
        None
    } else {
        cmd!(sh, "{cargo} test --workspace --locked --profile ci").run().context("tests failed")?;
        Some("cargo-nextest not installed: ran cargo test".to_owned())
    };
    cmd!(sh, "{cargo} test --workspace --locked --profile ci --doc")
        .run()
        .context("doctests failed")?;
    Ok(match note {
        Some(note) => Outcome::PassedWithNote(note),
        None => Outcome::Passed,
    })
}

/// The quick multi-process scenarios on the `ci` build the test step made.
fn e2e_quick(sh: &Shell) -> anyhow::Result<Outcome> {
    let quick = crate::e2e::Args { quick: true, ..crate::e2e::Args::default() };
    let passed = crate::e2e::run_with_profile(sh, "ci", &quick)?;
    if !passed {
        bail!("a scenario failed (see the table above)");
    }
    Ok(Outcome::Passed)
}

/// A short fuzz run: every target over its corpus and regressions, then 5 s of new inputs.
fn fuzz_short(sh: &Shell) -> anyhow::Result<Outcome> {
    let code = crate::fuzz::run(sh, &crate::fuzz::Args { time: 5, targets: Vec::new() })?;
    if code != ExitCode::SUCCESS {
        bail!("a fuzz target crashed (see above)");
    }
    Ok(Outcome::Passed)
}
