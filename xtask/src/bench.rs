//! `cargo xtask bench`: the benchmark suite in release mode.
//!
//! Builds `cosmic-node` and the `cosmic-bench` runner of `cosmic-tests` with `--release`,
//! runs the runner (which prints one JSON line per figure), and writes
//! `target/bench/results.json` (the machine, the commit, every figure with median, min,
//! max and method, and with `--compare gun` the Gun.js comparison) and
//! `target/bench/results.md` (the same as Markdown tables), then prints the Markdown.
//!
//! `--quick` runs small sizes and two runs per figure, to check that the suite works; its
//! figures are not the ones to publish. `--only GROUP` (repeatable) limits the groups.
//! `--no-build` runs the release binaries already in the target dir.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};
use xshell::{Shell, cmd};

use crate::cargo;

/// The groups of the runner, for checking `--only` before building.
const GROUPS: [&str; 9] =
    ["store", "propagation", "replication", "catchup", "recon", "blobs", "memory", "scale", "mesh"];

/// The options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Small sizes and two runs per figure: checks the suite works (not figures to publish).
    #[arg(long)]
    quick: bool,
    /// Also run the side-by-side comparison with another system.
    #[arg(long, value_name = "SYSTEM")]
    compare: Option<Compare>,
    /// Run only this group (repeatable).
    #[arg(long, value_name = "GROUP", value_parser = clap::builder::PossibleValuesParser::new(GROUPS))]
    only: Vec<String>,
    /// Use the release binaries already built (e.g. while others edit the sources).
    #[arg(long)]
    no_build: bool,
}

/// What `--compare` measures against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Compare {
    /// Gun.js (the `gun` npm package), through the harness in `xtask/bench/gun`.
    Gun,
}

/// The target dir (honours `CARGO_TARGET_DIR` and config through cargo metadata).
fn target_dir(sh: &Shell) -> anyhow::Result<PathBuf> {
    let cargo = cargo();
    let metadata = cmd!(sh, "{cargo} metadata --format-version 1 --no-deps").quiet().read()?;
    let metadata: Value = serde_json::from_str(&metadata)?;
    let dir = metadata["target_directory"].as_str().context("no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// `cargo xtask bench [--quick] [--compare gun] [--only GROUP]...`.
pub(crate) fn run(sh: &Shell, args: &Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let cargo = cargo();
    if !args.no_build {
        cmd!(
            sh,
            "{cargo} build --release -p cosmic-node -p cosmic-tests --bin cosmic-node --bin cosmic-bench"
        )
        .run()
        .context("building cosmic-node and cosmic-bench")?;
    }
    let target = target_dir(sh)?;
    let exe = std::env::consts::EXE_SUFFIX;
    let node_bin = target.join("release").join(format!("cosmic-node{exe}"));
    let runner = target.join("release").join(format!("cosmic-bench{exe}"));
    let out_dir = target.join("bench");
    std::fs::create_dir_all(&out_dir)?;

    let machine = machine(sh);
    let (figures, errors) = run_runner(&runner, &node_bin, args)?;
    let compare = if args.compare == Some(Compare::Gun) {
        eprintln!("== compare: Gun.js");
        match crate::bench_gun::run(sh, &node_bin, &out_dir, args.quick) {
            Ok(records) => records,
            Err(error) => {
                eprintln!("== compare: Gun.js FAILED: {error:#}");
                vec![json!({ "error": format!("{error:#}") })]
            }
        }
    } else {
        Vec::new()
    };
    let compare_failed = compare.iter().any(|record| record.get("error").is_some());

    let results = json!({
        "suite": "cargo xtask bench",
        "mode": if args.quick { "quick" } else { "full" },
        "only": args.only,
        "seconds": started.elapsed().as_secs(),
        "machine": machine,
        "figures": figures,
        "errors": errors,
        "compare": compare,
    });
    let json_path = out_dir.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&results)? + "\n")?;
    let markdown = markdown(&results);
    let md_path = out_dir.join("results.md");
    std::fs::write(&md_path, &markdown)?;
    #[expect(clippy::print_stdout, reason = "the table is the command's output")]
    {
        println!("{markdown}");
    }
    eprintln!("wrote {} and {}", json_path.display(), md_path.display());
    let failed = !errors.is_empty() || compare_failed;
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Runs `cosmic-bench`, passing its progress through; returns its figures and the errors
/// of the groups that failed.
fn run_runner(
    runner: &Path,
    node_bin: &Path,
    args: &Args,
) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
    let mut command = Command::new(runner);
    if args.quick {
        command.arg("--quick");
    }
    for group in &args.only {
        command.args(["--only", group]);
    }
    let mut child = command
        .env("COSMIC_NODE_BIN", node_bin)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", runner.display()))?;
    let stdout = child.stdout.take().context("piped stdout")?;
    let mut figures = Vec::new();
    let mut errors = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(record) = serde_json::from_str::<Value>(&line) else {
            eprintln!("{line}");
            continue;
        };
        if record.get("error").is_some() {
            errors.push(record);
        } else if record.get("median").is_some() {
            eprintln!(
                "   {} / {}: {} {} ({}–{}, {} runs)",
                record["group"].as_str().unwrap_or_default(),
                record["name"].as_str().unwrap_or_default(),
                number(&record["median"]),
                record["unit"].as_str().unwrap_or_default(),
                number(&record["min"]),
                number(&record["max"]),
                record["runs"],
            );
            figures.push(record);
        }
    }
    let status = child.wait()?;
    if !status.success() && errors.is_empty() {
        errors.push(
            json!({ "group": "runner", "error": format!("cosmic-bench exited with {status}") }),
        );
    }
    Ok((figures, errors))
}

/// A number for the tables: three significant digits, at least the integer part.
fn number(value: &Value) -> String {
    let Some(x) = value.as_f64() else { return value.to_string() };
    let magnitude = x.abs();
    let decimals = if magnitude >= 100.0 || magnitude == 0.0 {
        0
    } else if magnitude >= 10.0 {
        1
    } else if magnitude >= 1.0 {
        2
    } else {
        3
    };
    let text = format!("{x:.decimals$}");
    if decimals > 0 {
        return text;
    }
    // Thousands separators for large integers.
    let (sign, digits) = text.strip_prefix('-').map_or(("", text.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// A `median (min–max)` cell.
fn cell(stats: &Value) -> String {
    format!("{} ({}–{})", number(&stats["median"]), number(&stats["min"]), number(&stats["max"]))
}

/// The Markdown report: the machine, the figures table, the methods, the comparison.
fn markdown(results: &Value) -> String {
    let machine = &results["machine"];
    let mut out = String::new();
    out.push_str(&format!(
        "## `cargo xtask bench` ({} run, {})\n\n",
        results["mode"].as_str().unwrap_or_default(),
        machine["date"].as_str().unwrap_or_default()
    ));
    out.push_str(&format!(
        "Machine: {} cores ({}), {} MiB memory, Linux {}; commit {}.\n\n",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("unknown CPU"),
        machine["memory_mib"],
        machine["kernel"].as_str().unwrap_or_default(),
        machine["commit"].as_str().unwrap_or_default(),
    ));
    out.push_str("| group | figure | median (min–max) | unit | runs |\n|---|---|---|---|---|\n");
    let empty = Vec::new();
    let figures = results["figures"].as_array().unwrap_or(&empty);
    for figure in figures {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            figure["group"].as_str().unwrap_or_default(),
            figure["name"].as_str().unwrap_or_default(),
            cell(figure),
            figure["unit"].as_str().unwrap_or_default(),
            figure["runs"],
        ));
    }
    for error in results["errors"].as_array().unwrap_or(&empty) {
        out.push_str(&format!(
            "| {} | FAILED: {} | | | |\n",
            error["group"].as_str().unwrap_or_default(),
            error["error"].as_str().unwrap_or_default().replace('|', "/"),
        ));
    }
    out.push_str(&figure_methods(figures));
    out.push_str(&comparison(results["compare"].as_array().unwrap_or(&empty)));
    out
}

/// The methods of `figures`, each once, after the names of the figures it measured.
fn figure_methods(figures: &[Value]) -> String {
    let mut out = String::from("\nMethods:\n\n");
    let mut seen = Vec::new();
    for figure in figures {
        let method = figure["method"].as_str().unwrap_or_default();
        let name = format!(
            "{} / {}",
            figure["group"].as_str().unwrap_or_default(),
            figure["name"].as_str().unwrap_or_default()
        );
        if let Some((names, _)) =
            seen.iter_mut().find(|(_, m): &&mut (Vec<String>, &str)| *m == method)
        {
            names.push(name);
        } else {
            seen.push((vec![name], method));
        }
    }
    for (names, method) in seen {
        out.push_str(&format!("- {}: {method}.\n", names.join("; ")));
    }
    out
}

/// The side-by-side table of `compare` (the Gun.js records) and their methods; empty
/// when there are none.
fn comparison(compare: &[Value]) -> String {
    let mut out = String::new();
    if !compare.is_empty() {
        out.push_str(
            "\n### Compared with Gun.js\n\n| workload | unit | CosmicSyncCore median (min–max) \
             | Gun.js median (min–max) | ratio |\n|---|---|---|---|---|\n",
        );
        for record in compare {
            if let Some(error) = record.get("error") {
                out.push_str(&format!(
                    "| FAILED: {} | | | | |\n",
                    error.as_str().unwrap_or_default().replace('|', "/")
                ));
                continue;
            }
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                record["workload"].as_str().unwrap_or_default(),
                record["unit"].as_str().unwrap_or_default(),
                cell(&record["cosmic"]),
                cell(&record["gun"]),
                record["ratio"].as_f64().map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}")),
            ));
        }
        out.push_str("\nMethods:\n\n");
        for record in compare {
            if let Some(method) = record["method"].as_str() {
                out.push_str(&format!(
                    "- {}: {method}\n",
                    record["workload"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    out
}

/// What the figures were measured on: cores, CPU, memory, kernel, date, commit.
fn machine(sh: &Shell) -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo").lines().find_map(|line| {
        line.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned())
    });
    let memory_mib = read("/proc/meminfo")
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib / 1024);
    let commit = cmd!(sh, "git rev-parse --short=12 HEAD").quiet().read().unwrap_or_default();
    let dirty = !cmd!(sh, "git status --porcelain --untracked-files=no")
        .quiet()
        .read()
        .unwrap_or_default()
        .trim()
        .is_empty();
    json!({
        "cores": std::thread::available_parallelism().map_or(0, usize::from),
        "cpu": cpu,
        "memory_mib": memory_mib,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "date": cmd!(sh, "date -u +%Y-%m-%dT%H:%M:%SZ").quiet().read().unwrap_or_default(),
        "commit": if dirty { format!("{commit} (with uncommitted changes)") } else { commit },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use clap::Parser as _;

    use super::{Args, Compare, markdown, number};

    /// The bench options as a command line parses them.
    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(list: &[&str]) -> Result<Args, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(list.iter().copied()))
            .map(|cli| cli.args)
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(number(&json!(1_234_567.8)), "1,234,568");
        assert_eq!(number(&json!(123.4)), "123");
        assert_eq!(number(&json!(12.34)), "12.3");
        assert_eq!(number(&json!(1.234)), "1.23");
        assert_eq!(number(&json!(0.1234)), "0.123");
    }

    #[test]
    fn arguments_are_checked() {
        let parsed = parse(&["--quick", "--only", "store", "--compare", "gun"]).unwrap();
        assert!(parsed.quick && parsed.compare == Some(Compare::Gun));
        assert_eq!(parsed.only, ["store"]);
        assert!(parse(&["--only", "nope"]).is_err());
        assert!(parse(&["--compare", "redis"]).is_err());
    }

    #[test]
    fn the_table_shows_each_figure_and_the_comparison() {
        let results = json!({
            "mode": "quick",
            "machine": { "cores": 2, "date": "d", "commit": "c", "kernel": "k", "memory_mib": 1 },
            "figures": [{ "group": "store", "name": "read", "unit": "µs", "median": 2.0,
                          "min": 1.5, "max": 3.25, "runs": 3, "method": "m" }],
            "errors": [{ "group": "scale", "error": "boom" }],
            "compare": [{ "workload": "puts", "unit": "puts/s", "ratio": 2.5, "method": "x",
                          "cosmic": { "median": 100.0, "min": 90.0, "max": 110.0 },
                          "gun": { "median": 40.0, "min": 30.0, "max": 50.0 } }],
        });
        let text = markdown(&results);
        assert!(text.contains("| store | read | 2.00 (1.50–3.25) | µs | 3 |"), "{text}");
        assert!(text.contains("| scale | FAILED: boom |"), "{text}");
        assert!(
            text.contains("| puts | puts/s | 100 (90.0–110) | 40.0 (30.0–50.0) | 2.50 |"),
            "{text}"
        );
    }
}
