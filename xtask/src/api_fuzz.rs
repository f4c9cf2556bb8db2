//! `cargo xtask api-fuzz`: property-based fuzzing of the node's HTTP API from its own
//! OpenAPI document.
//!
//! Runs [schemathesis](https://schemathesis.readthedocs.io) (installed, pinned, into a
//! virtualenv under `target/xtask/venv` on first use) against a real `cosmic-node` on a
//! fresh data dir. Every check is on: no 5xx, every status code, content type, header and
//! body as documented, schema-violating input refused, valid input accepted. The rules a
//! JSON Schema cannot state (a space or author id is an ed25519 point, a document key has
//! at most 512 bytes, a CID carries a BLAKE3 multihash) are custom `format`s in the
//! document, and a hooks module written next to the configuration gives schemathesis
//! generators of valid values for them: what was seeded in the node, mixed with fresh
//! valid values. Only the operations whose valid inputs still cannot be generated (a
//! multiaddr somebody answers at, document fields that become child documents under
//! byte-length rules) skip the "valid input is accepted" check.

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

# Nested objects in a document become child documents whose keys and field names follow
# byte-length and character rules (and arrays are refused), which no schema of "any JSON
# object" states. Space ids come from the hooks' valid ids, so only the body is at fault.
[[operations]]
include-path = "/v1/spaces/{space}/docs/{key}"
include-method = "PUT"
checks.positive_data_acceptance.enabled = false

# Whether a valid `Range` is satisfiable depends on the blob's size: 416 is a fair answer.
[[operations]]
include-path = "/v1/blobs/{cid}"
include-method = "GET"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "416", "429", "5xx"]

"#;

/// The schemathesis hooks module (after the `SEEDED_*` lists [`hooks`] puts first):
/// generators of valid values for the document's custom formats. Each mixes values seeded
/// in the node (so that reads find data) with fresh valid ones (so that misses are 404s).
const HOOKS: &str = r#"
import base64

import schemathesis
from hypothesis import strategies as st


def _base32(data):
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


# Ed25519 (RFC 8032 section 5.1): a public key is the compressed point s * B.
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_B = (_BX, _BY, 1, _BX * _BY % _P)


def _add(p, q):
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _public_key(scalar):
    point, base = (0, 1, 1, 0), _B
    while scalar:
        if scalar & 1:
            point = _add(point, base)
        base = _add(base, base)
        scalar >>= 1
    z_inverse = pow(point[2], _P - 2, _P)
    x, y = point[0] * z_inverse % _P, point[1] * z_inverse % _P
    return _base32((y | (x & 1) << 255).to_bytes(32, "little"))


_fresh_keys = st.integers(min_value=1, max_value=_L - 1).map(_public_key)

# CIDv1 (0x01), raw (0x55), BLAKE3 multihash (0x1e) of 32 bytes (0x20): any digest is a
# valid CID, of content nobody may hold.
_fresh_cids = st.binary(min_size=32, max_size=32).map(
    lambda digest: "b" + _base32(bytes([0x01, 0x55, 0x1E, 0x20]) + digest)
)

# Document keys: `/`-separated segments, no control character, at most 512 bytes. `.` and
# `..` are keys too, but an HTTP client folds them out of a URL before sending it.
_segments = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="/"),
    min_size=1,
    max_size=24,
).filter(lambda segment: segment not in (".", ".."))
_fresh_keys_of_docs = st.lists(_segments, min_size=1, max_size=4).map("/".join)



def _is_public_key(text):
    """Whether `text` is a public key the node takes: canonical base32 of a point that
    decompresses and is not of small order (stricter than the node is harmless)."""
    if not isinstance(text, str) or len(text) != 52:
        return False
    try:
        data = base64.b32decode(text.upper() + "====")
    except ValueError:
        return False
    if _base32(data) != text:
        return False
    y = int.from_bytes(data, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= _P:
        return False
    xx = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(xx, (_P + 3) // 8, _P)
    if (x * x - xx) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if (x * x - xx) % _P or (x == 0 and sign):
        return False
    if x & 1 != sign:
        x = _P - x
    point = (x, y, 1, x * y % _P)
    for _ in range(3):
        point = _add(point, point)
    return not (point[0] % _P == 0 and (point[1] - point[2]) % _P == 0)


def _is_cid(text):
    if not isinstance(text, str) or not text.startswith("b"):
        return False
    try:
        data = base64.b32decode(text[1:].upper() + "=" * (-len(text[1:]) % 8))
    except ValueError:
        return False
    return len(data) == 36 and data[:4] == bytes([0x01, 0x55, 0x1E, 0x20]) and _base32(data) == text[1:]


def _is_doc_key(text):
    return (
        isinstance(text, str)
        and len(text.encode("utf-8", "surrogatepass")) <= 512
        and all(segment not in (".", "..") for segment in text.split("/"))
    )


_PATH_RULES = {"space": _is_public_key, "cid": _is_cid, "key": _is_doc_key}


@schemathesis.hook
def filter_case(context, case):
    """Drops a case meant to be valid whose id, key or CID only matches the pattern: the
    coverage phase draws from the pattern and not from the generators above."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return True
    for name, value in (case.path_parameters or {}).items():
        rule = _PATH_RULES.get(name)
        if rule is not None and not rule(value):
            return False
    body = case.body
    if isinstance(body, dict) and "author" in body and "rights" in body:
        return _is_public_key(body["author"])
    return True


schemathesis.openapi.format("cosmic-space-id", st.sampled_from(SEEDED_SPACES) | _fresh_keys)
schemathesis.openapi.format("cosmic-author-id", st.sampled_from(SEEDED_AUTHORS) | _fresh_keys)
schemathesis.openapi.format(
    "cosmic-doc-key", st.sampled_from(SEEDED_DOC_KEYS) | _fresh_keys_of_docs
)
schemathesis.openapi.format("cosmic-cid", st.sampled_from(SEEDED_CIDS) | _fresh_cids)
"#;

/// The options of `cargo xtask api-fuzz`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Seconds of fuzzing.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    time: u64,
}

/// `cargo xtask api-fuzz [--time S]`: builds the release node (or takes the binary named
/// by `COSMIC_NODE_BIN`) and fuzzes its API.
pub(crate) fn command(sh: &Shell, args: &Args) -> anyhow::Result<ExitCode> {
    let budget = Duration::from_secs(args.time);
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

/// What [`seed`] put in the node, and the node's author id.
struct Seeded {
    /// The space id.
    space: String,
    /// The node's author id (the space's admin).
    author: String,
    /// The blob's CID.
    cid: String,
}

/// The hooks module for a node seeded with `seeded`.
fn hooks(seeded: &Seeded) -> String {
    let Seeded { space, author, cid } = seeded;
    format!(
        "# Written by `cargo xtask api-fuzz`.\nSEEDED_SPACES = [\"{space}\"]\n\
         SEEDED_AUTHORS = [\"{author}\"]\nSEEDED_CIDS = [\"{cid}\"]\n\
         SEEDED_DOC_KEYS = [\"users/alice\", \"users/alice/address\", \"users/bob\"]\n{HOOKS}"
    )
}

/// Puts a space, a document with a child and a link, and a blob in the node through its
/// own command-line client, so list and read answers carry real data.
fn seed(sh: &Shell, node_bin: &Path, data_dir: &Path, run_dir: &Path) -> anyhow::Result<Seeded> {
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
    let status = cmd!(sh, "{node_bin} --data-dir {data_dir} status --json")
        .quiet()
        .read()
        .context("reading the node's author id")?;
    let status: serde_json::Value = serde_json::from_str(&status)
        .with_context(|| format!("`status --json` gave {status:?}"))?;
    let author =
        status["author"].as_str().with_context(|| format!("no author id in {status}"))?.to_owned();
    Ok(Seeded { space, author, cid })
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
    let seeded = seed(sh, node_bin, &data_dir, run_dir)?;
    let config = run_dir.join("schemathesis.toml");
    std::fs::write(&config, CONFIG)?;
    let hooks_file = run_dir.join("schemathesis_hooks.py");
    std::fs::write(&hooks_file, hooks(&seeded))?;
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
        .env("SCHEMATHESIS_HOOKS", &hooks_file)
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
