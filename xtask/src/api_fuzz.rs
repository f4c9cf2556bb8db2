//! `cargo xtask api-fuzz`: property-based fuzzing of the node's HTTP API from its own
//! OpenAPI document.
//!
//! Runs [schemathesis](https://schemathesis.readthedocs.io) (installed, pinned, into a
//! virtualenv under `target/xtask/venv` on first use) against a real `cosmic-node` on a
//! fresh data dir. Every check is on: no 5xx, every status code, content type, header and
//! body as documented, schema-violating input refused, valid input accepted. Operations
//! whose inputs have rules JSON Schema cannot state (a multiaddr that must answer, a space
//! or author id that must be a curve point, a CID with a valid multihash) skip only the
//! "valid input is accepted" check.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::cargo;

/// The schemathesis release the fuzzer runs; bump deliberately (its checks change).
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Most test cases per operation and phase.
const MAX_EXAMPLES: u32 = 60;
/// How long the node may take to print its `ready` line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a report line is kept in the error (schemathesis can print huge tracebacks).
const MAX_LINE: usize = 400;

/// The schemathesis configuration: global limits, and the operations that skip the
/// positive-data check because their inputs have rules no schema keyword expresses.
const CONFIG: &str = r#"# Written by `cargo xtask api-fuzz`.
request-timeout = 20
max-stream-events = 5
suppress-health-check = ["too_slow", "filter_too_much", "data_too_large"]

# Every check (a `--checks` option would override the per-operation settings below).
[checks]
enabled = true

# A syntactically valid multiaddr still fails to dial when nobody answers there (422).
[[operations]]
include-path = "/v1/peers"
include-method = "POST"
checks.positive_data_acceptance.enabled = false

# A space id (and an author id in a grant) is 52 base32 characters that must also decode
# to an ed25519 point, a textual expiry must be an RFC 3339 time, and nested document
# fields become child documents that follow the key rules.
[[operations]]
include-path-regex = "^/v1/spaces/"
checks.positive_data_acceptance.enabled = false

# A CID's base32 text must also carry a valid multihash.
[[operations]]
include-path = "/v1/blobs/{cid}"
checks.positive_data_acceptance.enabled = false

"#;

/// `cargo xtask api-fuzz [--time S]`: builds the release node (or takes the binary named
/// by `COSMIC_NODE_BIN`) and fuzzes its API.
pub(crate) fn command(sh: &Shell, args: &[String]) -> anyhow::Result<ExitCode> {
    let mut budget = Duration::from_secs(120);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--time" => {
                let seconds: u64 = args
                    .next()
                    .context("--time needs a number of seconds")?
                    .parse()
                    .context("--time needs a number of seconds")?;
                budget = Duration::from_secs(seconds);
            }
            other => anyhow::bail!("unknown option {other:?}; see `cargo xtask help`"),
        }
    }
    // `COSMIC_NODE_BIN`, as for the end-to-end tests, fuzzes a binary built elsewhere.
    let node_bin = match std::env::var_os("COSMIC_NODE_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let cargo = cargo();
            cmd!(sh, "{cargo} build --release -p cosmic-node --bin cosmic-node").run()?;
            crate::project_root()
                .join("target/release")
                .join(format!("cosmic-node{}", std::env::consts::EXE_SUFFIX))
        }
    };
    run(sh, &node_bin, budget)?;
    Ok(ExitCode::SUCCESS)
}

/// Starts `node_bin` on a temporary data dir and fuzzes its API for about `budget`.
pub(crate) fn run(sh: &Shell, node_bin: &Path, budget: Duration) -> anyhow::Result<()> {
    let work = crate::project_root().join("target/xtask");
    let schemathesis = install_schemathesis(sh, &work.join("venv"))?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |time| time.as_nanos());
    let run_dir = work.join(format!("api-fuzz-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let result = fuzz(sh, &schemathesis, node_bin, &run_dir, budget);
    if result.is_ok() {
        // Keep the data dir and logs of a failed run for a look; drop a passing one.
        let _ = std::fs::remove_dir_all(&run_dir);
    } else {
        eprintln!("api-fuzz: node data dir, logs and report kept in {}", run_dir.display());
    }
    result
}

/// The `schemathesis` executable of the virtualenv at `venv`, created and filled first
/// when it lacks the pinned version.
fn install_schemathesis(sh: &Shell, venv: &Path) -> anyhow::Result<PathBuf> {
    let (bin, exe) = if cfg!(windows) { ("Scripts", ".exe") } else { ("bin", "") };
    let python = venv.join(bin).join(format!("python{exe}"));
    let schemathesis = venv.join(bin).join(format!("schemathesis{exe}"));
    let script = "import importlib.metadata as m; print(m.version('schemathesis'))";
    let installed = |python: &Path| {
        cmd!(sh, "{python} -c {script}")
            .quiet()
            .ignore_stderr()
            .read()
            .is_ok_and(|version| version.trim() == SCHEMATHESIS_VERSION)
    };
    if python.exists() && schemathesis.exists() && installed(&python) {
        return Ok(schemathesis);
    }
    if !python.exists() {
        let system_python = if cfg!(windows) { "python" } else { "python3" };
        eprintln!("api-fuzz: creating a Python virtualenv in {}", venv.display());
        cmd!(sh, "{system_python} -m venv {venv}")
            .run()
            .context("creating the virtualenv (needs Python 3.9+ with venv)")?;
    }
    eprintln!("api-fuzz: installing schemathesis {SCHEMATHESIS_VERSION}");
    let requirement = format!("schemathesis=={SCHEMATHESIS_VERSION}");
    cmd!(sh, "{python} -m pip install --disable-pip-version-check --quiet {requirement}")
        .run()
        .context("installing schemathesis from PyPI")?;
    anyhow::ensure!(installed(&python), "schemathesis {SCHEMATHESIS_VERSION} did not install");
    Ok(schemathesis)
}

/// A running node, killed when dropped.
struct NodeProcess {
    child: Child,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the node on `data_dir` and returns it with its API base URL.
fn start_node(
    node_bin: &Path,
    data_dir: &Path,
    log: &Path,
) -> anyhow::Result<(NodeProcess, String)> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(node_bin)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["run", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--no-mdns"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", node_bin.display()))?;
    let mut node = NodeProcess { child };
    let stdout = node.child.stdout.take().context("no stdout")?;
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = receiver.recv_timeout(left).map_err(|_| {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            anyhow::anyhow!("the node did not print `ready` within {READY_TIMEOUT:?}:\n{log}")
        })?;
        if let Some(api) = line
            .strip_prefix("ready ")
            .and_then(|rest| rest.split_whitespace().find_map(|word| word.strip_prefix("api=")))
        {
            return Ok((node, api.trim_end_matches('/').to_owned()));
        }
    }
}

/// Puts a space, a document with a child and a link, and a blob in the node through its
/// own command-line client, so list and read answers carry real data.
fn seed(sh: &Shell, node_bin: &Path, data_dir: &Path, run_dir: &Path) -> anyhow::Result<()> {
    let out = cmd!(sh, "{node_bin} --data-dir {data_dir} space create --mode open")
        .quiet()
        .read()
        .context("seeding a space")?;
    let space = out
        .split_whitespace()
        .find(|word| {
            word.len() == 52 && word.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
        })
        .with_context(|| format!("no space id in {out:?}"))?
        .to_owned();
    let blob = run_dir.join("seed.bin");
    std::fs::write(&blob, b"seeded by cargo xtask api-fuzz\n")?;
    let out = cmd!(sh, "{node_bin} --data-dir {data_dir} blob add {blob}")
        .quiet()
        .read()
        .context("seeding a blob")?;
    let cid = out
        .split_whitespace()
        .find(|word| word.starts_with("bafk"))
        .with_context(|| format!("no CID in {out:?}"))?
        .to_owned();
    let doc = format!(
        r##"{{"name": "alice", "age": 42, "address": {{"city": "Paris"}}, "friend": {{"#": "users/bob"}}, "photo": {{"/": "{cid}"}}}}"##
    );
    cmd!(sh, "{node_bin} --data-dir {data_dir} doc put {space} users/alice {doc}")
        .quiet()
        .ignore_stdout()
        .run()
        .context("seeding a document")?;
    let bob = r#"{"name": "bob"}"#;
    cmd!(sh, "{node_bin} --data-dir {data_dir} doc put {space} users/bob {bob}")
        .quiet()
        .ignore_stdout()
        .run()
        .context("seeding a document")?;
    Ok(())
}

fn fuzz(
    sh: &Shell,
    schemathesis: &Path,
    node_bin: &Path,
    run_dir: &Path,
    budget: Duration,
) -> anyhow::Result<()> {
    let data_dir = run_dir.join("node");
    let (node, api) = start_node(node_bin, &data_dir, &run_dir.join("node.log"))?;
    let token = std::fs::read_to_string(data_dir.join("api.token"))
        .context("reading the node's api.token")?
        .trim()
        .to_owned();
    seed(sh, node_bin, &data_dir, run_dir)?;
    let config = run_dir.join("schemathesis.toml");
    std::fs::write(&config, CONFIG)?;
    let schema = format!("{api}/v1/openapi.json");
    let header = format!("Authorization: Bearer {token}");
    let max_time = budget.as_secs().max(10).to_string();
    let max_examples = MAX_EXAMPLES.to_string();
    eprintln!("api-fuzz: fuzzing {schema} for about {max_time}s");
    // One worker: schemathesis' threads trip a CPython 3.11 `ast` race, and the node
    // shares two cores with it anyway.
    let output = Command::new(schemathesis)
        .arg("--no-color")
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(&schema)
        .args(["--header", &header])
        .args(["--mode", "all", "--workers", "1"])
        .args(["--max-examples", &max_examples, "--max-time", &max_time])
        .args(["--report", "junit", "--report-dir"])
        .arg(run_dir.join("report"))
        .current_dir(run_dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", schemathesis.display()))?;
    drop(node);
    let mut report = String::from_utf8_lossy(&output.stdout).into_owned();
    report.push_str(&String::from_utf8_lossy(&output.stderr));
    let report = report.replace(&token, "[token]");
    std::fs::write(run_dir.join("schemathesis.txt"), &report)?;
    if output.status.success() {
        if let Some(summary) = report.lines().rev().find(|line| line.contains(" in ")) {
            eprintln!("api-fuzz: {}", summary.trim_matches(|c| c == '=' || c == ' '));
        }
        return Ok(());
    }
    let mut clipped = String::new();
    for line in report.lines() {
        if line.len() > MAX_LINE {
            let cut = (0..=MAX_LINE).rev().find(|&at| line.is_char_boundary(at)).unwrap_or(0);
            let _ = writeln!(clipped, "{} [...]", &line[..cut]);
        } else {
            let _ = writeln!(clipped, "{line}");
        }
    }
    anyhow::bail!("schemathesis found API faults ({}):\n{clipped}", output.status)
}
