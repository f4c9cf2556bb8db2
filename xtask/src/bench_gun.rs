//! `cargo xtask bench --compare gun`: the same workloads against Gun.js and against
//! CosmicSyncCore, in one run.
//!
//! Gun.js is installed from the npm registry into a throwaway directory under
//! `target/bench/gun-work/` (nothing of it is committed); our harness scripts
//! (`xtask/bench/gun/*.mjs`, embedded in this binary) are written next to it. The
//! coordinator script starts both systems on 127.0.0.1, runs the four workloads against
//! each, interleaved run by run, and prints one JSON line per measurement; this module
//! bounds it in time, kills its whole process group at the end, and turns the samples into
//! one record per workload with the ratio between the two systems.
//!
//! To run it alone (until the bench runner calls it), build the release node and run the
//! ignored test:
//! `cargo build --release -p cosmic-node && cargo test -p xtask bench_gun -- --ignored --nocapture`
//! (`COSMIC_GUN_BENCH_FULL=1` for the full sizes instead of the quick ones).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

/// The Gun.js release compared against, pinned so that runs stay comparable.
pub(crate) const GUN_VERSION: &str = "0.2020.1241";

/// The harness scripts, written into the throwaway directory next to Gun.js.
const SCRIPTS: [(&str, &str); 4] = [
    ("common.mjs", include_str!("../bench/gun/common.mjs")),
    ("peer.mjs", include_str!("../bench/gun/peer.mjs")),
    ("relay.mjs", include_str!("../bench/gun/relay.mjs")),
    ("compare.mjs", include_str!("../bench/gun/compare.mjs")),
];

/// How long `npm install` may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(180);

/// One workload: its name in the coordinator's output, unit, and which way is better.
struct Workload {
    name: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    method: &'static str,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "puts",
        unit: "puts/s",
        higher_is_better: true,
        method: "Local puts per second on peer A, each acknowledged, at most 64 unacknowledged \
                 at a time; keys k000000.., each a document {v: 100-byte string, i: int}. \
                 CosmicSyncCore: HTTP PUT to A's own node, acknowledged by the 200 that \
                 follows the durable (fsynced) commit on A. Gun.js: the put callback's ack, \
                 which comes from the relay after its radisk write (A has no storage of its \
                 own; radisk batches writes for up to 250 ms and does not fsync).",
    },
    Workload {
        name: "latency",
        unit: "ms",
        higher_is_better: false,
        method: "Relay-to-peer propagation, median: A puts one document every 20 ms stamped \
                 with its send time; B records when the complete document arrives (Gun.js: \
                 `map().on` on B, a Gun peer of the relay; CosmicSyncCore: the SSE change \
                 stream of B's node). Wall clocks of two processes on one machine.",
    },
    Workload {
        name: "throughput",
        unit: "docs/s",
        higher_is_better: true,
        method: "Sustained replication: A writes the documents as fast as its acks allow (64 in \
                 flight) while B listens; documents divided by the time from A's first put to \
                 B holding all of them.",
    },
    Workload {
        name: "catchup",
        unit: "ms",
        higher_is_better: false,
        method: "Catch-up after reconnect: B is stopped, A writes the documents and the relay \
                 holds them all; then B starts again and the time runs from its start to B \
                 holding all of them. CosmicSyncCore: B's node restarts on its data dir and \
                 bootstraps to R. Gun.js: a new B peer process (no storage) connects to the \
                 relay and subscribes. Process start-up is included on both sides.",
    },
];

/// Runs the comparison workloads and returns one JSON record per workload.
pub(crate) fn run(
    sh: &xshell::Shell,
    node_bin: &Path,
    out_dir: &Path,
    quick: bool,
) -> anyhow::Result<Vec<Value>> {
    let node_bin = std::path::absolute(node_bin).context("resolving the cosmic-node path")?;
    ensure!(
        node_bin.exists(),
        "cosmic-node not found at {} (build it with `cargo build --release -p cosmic-node`)",
        node_bin.display()
    );
    let work = sh.current_dir().join("target/bench/gun-work");
    let installed = prepare(&work)?;
    eprintln!("bench: comparing with Gun.js {installed} (in {})", work.display());

    let limit = if quick { Duration::from_secs(150) } else { Duration::from_secs(480) };
    let mut command = Command::new("node");
    command
        .current_dir(&work)
        .arg("compare.mjs")
        .arg("--node-bin")
        .arg(&node_bin)
        .arg("--work")
        .arg(&work);
    if quick {
        command.arg("--quick");
    }
    let lines = run_coordinator(command, limit)?;

    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let raw = out_dir.join("gun-compare.jsonl");
    std::fs::write(&raw, lines.iter().map(|line| format!("{line}\n")).collect::<String>())
        .with_context(|| format!("writing {}", raw.display()))?;

    let samples = parse_samples(&lines)?;
    let records = records(&samples, &installed, quick)?;
    Ok(records)
}

/// Creates the throwaway directory, installs the pinned Gun.js into it and writes the
/// harness scripts; answers the installed version.
fn prepare(work: &Path) -> anyhow::Result<String> {
    if work.exists() {
        std::fs::remove_dir_all(work).with_context(|| format!("clearing {}", work.display()))?;
    }
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let package = json!({
        "name": "cosmic-gun-comparison",
        "private": true,
        "type": "module",
        "description": "throwaway: Gun.js for `cargo xtask bench --compare gun`",
    });
    std::fs::write(work.join("package.json"), serde_json::to_string_pretty(&package)?)?;
    for (name, text) in SCRIPTS {
        std::fs::write(work.join(name), text)?;
    }
    let mut install = Command::new("npm");
    install
        .current_dir(work)
        .args(["install", "--no-audit", "--no-fund", "--save-exact"])
        .arg(format!("gun@{GUN_VERSION}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let status = wait_bounded(
        install.spawn().context("running npm (is Node.js with npm installed?)")?,
        INSTALL_TIMEOUT,
    )?;
    ensure!(status.success(), "npm install gun@{GUN_VERSION} failed: {status}");
    let manifest = std::fs::read_to_string(work.join("node_modules/gun/package.json"))
        .context("reading the installed Gun.js package.json")?;
    let manifest: Value = serde_json::from_str(&manifest)?;
    let version = manifest["version"].as_str().unwrap_or_default().to_owned();
    ensure!(version == GUN_VERSION, "npm installed Gun.js {version:?}, not {GUN_VERSION}");
    Ok(version)
}

/// Waits for `child` up to `limit`, killing it past that.
fn wait_bounded(mut child: Child, limit: Duration) -> anyhow::Result<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("gave up after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the coordinator in its own process group, collects its stdout lines, and kills the
/// whole group when it exits or overruns `limit`, so that no relay, peer or node survives.
fn run_coordinator(mut command: Command, limit: Duration) -> anyhow::Result<Vec<String>> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().context("running node (is Node.js installed?)")?;
    let stdout = child.stdout.take().context("coordinator stdout")?;
    let (sender, receiver) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut lines = Vec::new();
    let outcome = loop {
        while let Ok(line) = receiver.try_recv() {
            lines.push(line);
        }
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if started.elapsed() > limit => {
                break Err(anyhow::anyhow!("the comparison did not finish within {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(error) => break Err(error.into()),
        }
    };
    kill_group(&mut child);
    let _ = reader.join();
    lines.extend(receiver.try_iter());
    let status = outcome?;
    ensure!(status.success(), "the comparison failed ({status}); see its messages above");
    Ok(lines)
}

/// Kills the coordinator's process group (every relay, peer and node it started) and reaps
/// the coordinator.
fn kill_group(child: &mut Child) {
    #[cfg(unix)]
    {
        let group = format!("-{}", child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Samples per (workload, system), in the order measured.
type Samples = BTreeMap<(String, String), Vec<f64>>;

/// Reads the coordinator's measurement lines; requires its closing line.
fn parse_samples(lines: &[String]) -> anyhow::Result<Samples> {
    let mut samples = Samples::new();
    let mut finished = false;
    for line in lines {
        let Ok(record) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if record["finished"] == json!(true) {
            finished = true;
        }
        let (Some(system), Some(workload), Some(value)) =
            (record["system"].as_str(), record["workload"].as_str(), record["value"].as_f64())
        else {
            continue;
        };
        ensure!(value.is_finite() && value > 0.0, "implausible measurement: {line}");
        samples.entry((workload.to_owned(), system.to_owned())).or_default().push(value);
    }
    ensure!(finished, "the comparison stopped before its end");
    Ok(samples)
}

/// Median, min, max and count of `values` (not empty).
fn summary(values: &[f64]) -> Value {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    };
    json!({
        "median": median,
        "min": sorted[0],
        "max": sorted[sorted.len() - 1],
        "runs": sorted.len(),
    })
}

/// One record per workload: both systems' summaries and the ratio, oriented so that a
/// ratio above 1 means CosmicSyncCore did better.
fn records(samples: &Samples, gun_version: &str, quick: bool) -> anyhow::Result<Vec<Value>> {
    let sizes = if quick {
        "quick sizes: 500 puts, 60 latency samples, 500 streamed, 300 caught up"
    } else {
        "full sizes: 2000 puts, 200 latency samples, 2000 streamed, 1000 caught up"
    };
    let mut out = Vec::new();
    for workload in &WORKLOADS {
        let side = |system: &str| {
            samples
                .get(&(workload.name.to_owned(), system.to_owned()))
                .filter(|values| !values.is_empty())
                .map(|values| summary(values))
                .with_context(|| format!("no {system} samples for {}", workload.name))
        };
        let cosmic = side("cosmic")?;
        let gun = side("gun")?;
        let (ours, theirs) = (
            cosmic["median"].as_f64().unwrap_or(f64::NAN),
            gun["median"].as_f64().unwrap_or(f64::NAN),
        );
        let ratio = if workload.higher_is_better { ours / theirs } else { theirs / ours };
        out.push(json!({
            "workload": workload.name,
            "unit": workload.unit,
            "better": if workload.higher_is_better { "higher" } else { "lower" },
            "cosmic": cosmic,
            "gun": gun,
            "ratio": ratio,
            "method": format!(
                "{} Gun.js {gun_version} from npm. Topology: relay R and peers A and B as \
                 separate processes on 127.0.0.1 (CosmicSyncCore's A and B meet through R \
                 and then replicate over a direct connection; Gun's go through the \
                 relay); both systems are driven by the same \
                 Node.js harness (xtask/bench/gun), Gun.js through its API in-process, \
                 CosmicSyncCore over its HTTP API and SSE (the like-for-like client a \
                 JavaScript application would use: PUTs through `node:http` with a \
                 keep-alive agent, since Node 20's `fetch` holds a client to about 1,000 \
                 PUTs/s on this machine; SSE through `fetch`), fresh processes and data \
                 for every run, \
                 runs interleaved; {sizes}. ratio = {}, so above 1 means CosmicSyncCore is \
                 better.",
                workload.method,
                if workload.higher_is_better { "cosmic/gun" } else { "gun/cosmic" },
            ),
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn samples(pairs: &[(&str, &str, &[f64])]) -> Samples {
        pairs
            .iter()
            .map(|(workload, system, values)| {
                (((*workload).to_owned(), (*system).to_owned()), values.to_vec())
            })
            .collect()
    }

    #[test]
    fn summary_takes_the_median_of_odd_and_even_counts() {
        assert_eq!(summary(&[3.0, 1.0, 2.0])["median"], json!(2.0));
        assert_eq!(summary(&[4.0, 1.0, 3.0, 2.0])["median"], json!(2.5));
        let one = summary(&[5.0, 9.0, 7.0]);
        assert_eq!(
            (one["min"].clone(), one["max"].clone(), one["runs"].clone()),
            (json!(5.0), json!(9.0), json!(3))
        );
    }

    #[test]
    fn ratios_above_one_mean_cosmic_did_better_in_both_directions() {
        let samples = samples(&[
            ("puts", "cosmic", &[200.0]),
            ("puts", "gun", &[100.0]),
            ("latency", "cosmic", &[5.0]),
            ("latency", "gun", &[20.0]),
            ("throughput", "cosmic", &[50.0]),
            ("throughput", "gun", &[100.0]),
            ("catchup", "cosmic", &[300.0]),
            ("catchup", "gun", &[100.0]),
        ]);
        let records = records(&samples, GUN_VERSION, true).expect("all workloads present");
        let ratio: BTreeMap<&str, f64> = records
            .iter()
            .map(|record| {
                (
                    record["workload"].as_str().unwrap_or(""),
                    record["ratio"].as_f64().unwrap_or(f64::NAN),
                )
            })
            .collect();
        assert_eq!(ratio["puts"], 2.0);
        assert_eq!(ratio["latency"], 4.0);
        assert_eq!(ratio["throughput"], 0.5);
        assert!((ratio["catchup"] - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(records[1]["better"], json!("lower"));
    }

    #[test]
    fn a_missing_side_or_an_unfinished_run_is_an_error() {
        let partial = samples(&[("puts", "cosmic", &[1.0])]);
        assert!(records(&partial, GUN_VERSION, true).is_err());
        let lines = vec![r#"{"system":"gun","workload":"puts","run":0,"value":3}"#.to_owned()];
        assert!(parse_samples(&lines).is_err());
        let mut finished = lines.clone();
        finished.push(r#"{"finished":true}"#.to_owned());
        assert_eq!(
            parse_samples(&finished).expect("complete")[&("puts".to_owned(), "gun".to_owned())],
            vec![3.0]
        );
    }

    /// The whole comparison against a release node, quick sizes unless
    /// `COSMIC_GUN_BENCH_FULL=1`; needs Node.js, npm and the npm registry.
    #[test]
    #[ignore = "minutes long; needs node, npm, the registry and a release cosmic-node"]
    fn compare_with_gun() {
        let sh = xshell::Shell::new().expect("shell");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
        sh.change_dir(root);
        let node_bin = std::env::var_os("COSMIC_NODE_BIN")
            .map_or_else(|| root.join("target/release/cosmic-node"), PathBuf::from);
        let quick = std::env::var_os("COSMIC_GUN_BENCH_FULL").is_none();
        let out = root.join("target/bench");
        let records = run(&sh, &node_bin, &out, quick).expect("the comparison runs");
        println!("{}", serde_json::to_string_pretty(&records).expect("json"));
        assert_eq!(records.len(), WORKLOADS.len());
        for record in &records {
            for side in ["cosmic", "gun"] {
                let median = record[side]["median"].as_f64().expect("a median");
                assert!(median.is_finite() && median > 0.0, "{record}");
            }
            let ratio = record["ratio"].as_f64().expect("a ratio");
            assert!(ratio.is_finite() && ratio > 0.0, "{record}");
        }
    }
}
