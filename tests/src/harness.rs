//! `TestNode`: one `cosmic-node` process on a data dir, killed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a node may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM or SIGINT (the node promises 5 s).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `cosmic-node` binary under test.
pub fn node_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("COSMIC_NODE_BIN") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/cosmic-node
    let exe = std::env::current_exe().expect("the test binary has a path");
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(format!("cosmic-node{}", std::env::consts::EXE_SUFFIX)))
        .expect("the test binary lives in target/<profile>/deps");
    assert!(
        candidate.exists(),
        "cosmic-node binary not found at {}; build it first (`cargo build -p cosmic-node`) \
         or set COSMIC_NODE_BIN (`cargo xtask test` does both)",
        candidate.display()
    );
    candidate
}

/// A `cosmic-node` command with a clean environment: no COSMIC_* or RUST_LOG of ours.
/// Its log filter is `info`, or the value of `COSMIC_TEST_NODE_LOG` (for profiling a
/// test or a benchmark: e.g. `cosmic_sync=debug,info`).
pub fn node_command() -> Command {
    let mut command = Command::new(node_bin());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("COSMIC_") || key == "RUST_LOG" {
            command.env_remove(key.as_ref());
        }
    }
    let filter = std::env::var("COSMIC_TEST_NODE_LOG").unwrap_or_else(|_| "info".to_owned());
    command.env("RUST_LOG", filter);
    command
}

/// Where each started node's log is copied when `COSMIC_TEST_NODE_LOG_DIR` names a
/// directory: `<dir>/<pid>.log`.
fn log_copy(pid: u32) -> Option<std::fs::File> {
    let dir = PathBuf::from(std::env::var_os("COSMIC_TEST_NODE_LOG_DIR")?);
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::File::create(dir.join(format!("{pid}.log"))).ok()
}

/// Runs a short-lived `cosmic-node` command to completion (bounded) and returns
/// (status, stdout, stderr).
pub fn run_to_end(mut command: Command) -> (ExitStatus, String, String) {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn cosmic-node");
    let status = wait_with_deadline(&mut child, EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("cosmic-node did not exit within {EXIT_TIMEOUT:?}"));
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().expect("piped").read_to_string(&mut stdout).expect("read stdout");
    child.stderr.take().expect("piped").read_to_string(&mut stderr).expect("read stderr");
    (status, stdout, stderr)
}

/// Polls `child` until it exits or `deadline` passes; kills it in the second case.
pub fn wait_with_deadline(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running node.
#[derive(Debug)]
pub struct TestNode {
    child: Child,
    data_dir: PathBuf,
    /// Keeps a temporary data dir alive; `None` when the caller owns the dir.
    _temp: Option<tempfile::TempDir>,
    /// The `ready` line's `key=value` fields.
    ready: Vec<(String, String)>,
    stderr_lines: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

impl TestNode {
    /// Starts a node on a new temporary data dir and waits for its ready line.
    pub fn start() -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("node");
        Self::start_in(&data_dir, Some(temp))
    }

    /// Starts a node on `data_dir` and waits for its ready line.
    pub fn start_in(data_dir: &Path, temp: Option<tempfile::TempDir>) -> Self {
        Self::start_with(data_dir, temp, &[], &[])
    }

    /// Starts a node on a new temporary data dir with extra `run` arguments (such as
    /// `--bootstrap ADDR`) and waits for its ready line.
    pub fn start_with_args(extra: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("node");
        Self::start_with(&data_dir, Some(temp), extra, &[])
    }

    /// Starts a node on `data_dir` (kept by the caller, e.g. for restarts) with extra `run`
    /// arguments and waits for its ready line.
    pub fn start_in_with_args(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with(data_dir, None, extra, &[])
    }

    /// Starts a node on `data_dir` with extra `run` arguments and environment variables
    /// (such as `COSMIC_PASSPHRASE`) and waits for its ready line.
    pub fn start_in_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_with(data_dir, None, extra, env)
    }

    fn start_with(
        data_dir: &Path,
        temp: Option<tempfile::TempDir>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = node_command();
        command.envs(env.iter().copied());
        command.arg("--data-dir").arg(data_dir).args([
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--no-mdns",
        ]);
        command.args(extra);
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn cosmic-node");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (stdout_tx, stdout_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if stdout_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (stderr_tx, stderr_rx) = mpsc::channel();
        let mut copy = log_copy(child.id());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(file) = copy.as_mut() {
                    let _ = writeln!(file, "{line}");
                }
                if stderr_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = Self {
            child,
            data_dir: data_dir.to_path_buf(),
            _temp: temp,
            ready: Vec::new(),
            stderr_lines: stderr_rx,
            stderr_seen: Vec::new(),
        };
        let started = Instant::now();
        loop {
            let left = READY_TIMEOUT.saturating_sub(started.elapsed());
            match stdout_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(fields) = line.strip_prefix("ready ") {
                        node.ready = fields
                            .split_whitespace()
                            .filter_map(|field| field.split_once('='))
                            .map(|(key, value)| (key.to_owned(), value.to_owned()))
                            .collect();
                        return node;
                    }
                }
                Err(_) => {
                    let _ = node.child.kill();
                    let _ = node.child.wait();
                    panic!(
                        "cosmic-node printed no ready line within {READY_TIMEOUT:?}; stderr:\n{}",
                        node.stderr().join("\n")
                    );
                }
            }
        }
    }

    /// A field of the ready line, e.g. `peer_id`.
    pub fn ready_field(&self, key: &str) -> Option<&str> {
        self.ready.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The API base URL from the ready line, e.g. `http://127.0.0.1:41234`.
    pub fn api_url(&self) -> &str {
        self.ready_field("api").expect("the ready line has api=")
    }

    /// The API bearer token (the data dir's `api.token`).
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("api.token"))
            .expect("read api.token")
            .trim()
            .to_owned()
    }

    /// The peer-to-peer listen addresses from the ready line.
    pub fn listen_addrs(&self) -> Vec<String> {
        let listen = self.ready_field("listen").expect("the ready line has listen=");
        listen.split(',').filter(|addr| !addr.is_empty()).map(str::to_owned).collect()
    }

    /// A dialable address of this node: its first listen address with `/p2p/<peer id>`.
    pub fn p2p_addr(&self) -> String {
        let peer_id = self.ready_field("peer_id").expect("the ready line has peer_id=");
        format!("{}/p2p/{peer_id}", self.listen_addrs()[0])
    }

    /// The node's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`, `STOP`, `CONT`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Waits (bounded) for the process to exit; `None` if it did not within the deadline.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        wait_with_deadline(&mut self.child, deadline)
    }

    /// Every stderr line the node printed so far.
    pub fn stderr(&mut self) -> &[String] {
        // Give the reader thread a moment to forward what the process wrote last.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            match self.stderr_lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => self.stderr_seen.push(line),
                Err(_) => break,
            }
        }
        &self.stderr_seen
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
