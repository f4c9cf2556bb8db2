//! A node's life: init, run, ready line, clean stop on SIGTERM/SIGINT, one node per dir.

use crate::harness::{EXIT_TIMEOUT, TestNode, node_command, run_to_end};

fn assert_peer_id(peer_id: &str) {
    // An ed25519 PeerId in base58 is an identity multihash: it starts with "12D3KooW".
    assert!(peer_id.starts_with("12D3KooW") && peer_id.len() >= 52, "bad peer id {peer_id:?}");
}

#[test]
fn run_prints_ready_and_stops_cleanly_on_sigterm() {
    let mut node = TestNode::start();
    assert_peer_id(node.ready_field("peer_id").expect("ready line has peer_id"));
    node.signal("TERM");
    let status = node.wait_exit(EXIT_TIMEOUT).expect("node exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    let stderr = node.stderr().join("\n");
    assert!(stderr.contains("SIGTERM"), "stderr:\n{stderr}");
    assert!(stderr.contains("stopped"), "stderr:\n{stderr}");
}

#[test]
fn run_stops_cleanly_on_sigint() {
    let mut node = TestNode::start();
    node.signal("INT");
    let status = node.wait_exit(EXIT_TIMEOUT).expect("node exits after SIGINT");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn run_initializes_a_new_data_dir_and_keeps_its_identity_across_restarts() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("fresh");
    let mut first = TestNode::start_in(&data_dir, None);
    let peer_id = first.ready_field("peer_id").unwrap().to_owned();
    for file in ["node.key", "cosmic.toml", "api.token", "lock"] {
        assert!(data_dir.join(file).exists(), "{file} missing");
    }
    first.signal("TERM");
    assert!(first.wait_exit(EXIT_TIMEOUT).unwrap().success());
    drop(first);
    let second = TestNode::start_in(&data_dir, None);
    assert_eq!(second.ready_field("peer_id"), Some(peer_id.as_str()));
}

#[test]
fn second_node_on_a_data_dir_in_use_is_refused_and_harms_nothing() {
    let mut first = TestNode::start();
    let data_dir = first.data_dir().to_path_buf();
    let key_before = std::fs::read(data_dir.join("node.key")).unwrap();
    let token_before = std::fs::read(data_dir.join("api.token")).unwrap();

    let mut second = node_command();
    second.arg("--data-dir").arg(&data_dir).args(["run", "--api", "127.0.0.1:0", "--no-mdns"]);
    let (status, stdout, stderr) = run_to_end(second);
    assert_eq!(status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains("ready"), "the second node must never become ready: {stdout}");
    assert!(
        stderr.contains("is in use by another cosmic-node")
            && stderr.contains(&format!("(pid {})", first.pid())),
        "stderr:\n{stderr}"
    );

    // The first node is untouched: same files, still running, still stops cleanly.
    assert_eq!(std::fs::read(data_dir.join("node.key")).unwrap(), key_before);
    assert_eq!(std::fs::read(data_dir.join("api.token")).unwrap(), token_before);
    first.signal("TERM");
    assert!(first.wait_exit(EXIT_TIMEOUT).unwrap().success());

    // And `init` is refused the same way while a node runs.
    let third = TestNode::start_in(&data_dir, None);
    let mut init = node_command();
    init.arg("--data-dir").arg(&data_dir).arg("init");
    let (status, _, stderr) = run_to_end(init);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("is in use by another cosmic-node"), "stderr:\n{stderr}");
    drop(third);
}

#[test]
fn init_creates_a_private_data_dir_once() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("dir");
    let mut init = node_command();
    init.arg("--data-dir").arg(&data_dir).arg("init");
    let (status, stdout, stderr) = run_to_end(init);
    assert!(status.success(), "stderr:\n{stderr}");
    assert!(stdout.contains("peer_id 12D3KooW"), "stdout:\n{stdout}");
    #[cfg(unix)]
    for file in ["node.key", "api.token"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data_dir.join(file)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let config = std::fs::read_to_string(data_dir.join("cosmic.toml")).unwrap();
    assert!(config.contains("[net]") && config.contains("listen"), "cosmic.toml:\n{config}");

    let mut again = node_command();
    again.arg("--data-dir").arg(&data_dir).arg("init");
    let (status, _, stderr) = run_to_end(again);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("already initialized"), "stderr:\n{stderr}");
}

#[test]
fn config_show_says_where_each_value_came_from() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("dir");
    let extra = temp.path().join("extra.toml");
    std::fs::write(&extra, "[sync]\nmax_clock_drift = \"2m\"\n").unwrap();
    let mut show = node_command();
    show.env("COSMIC_API__ADDR", "127.0.0.1:9999")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--config")
        .arg(&extra)
        .args(["--log-format", "json", "config", "show"]);
    let (status, stdout, stderr) = run_to_end(show);
    assert!(status.success(), "stderr:\n{stderr}");
    let line = |key: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{stdout}"))
            .to_owned()
    };
    assert!(line("api.addr").contains("127.0.0.1:9999"), "{}", line("api.addr"));
    assert!(line("api.addr").contains("COSMIC_API__ADDR"), "{}", line("api.addr"));
    assert!(
        line("sync.max_clock_drift").contains("extra.toml"),
        "{}",
        line("sync.max_clock_drift")
    );
    assert!(line("log.format").contains("--log-format"), "{}", line("log.format"));
    assert!(line("net.mdns").contains("default"), "{}", line("net.mdns"));
}

#[test]
fn bad_configuration_is_one_clear_line_and_exit_code_2() {
    let temp = tempfile::tempdir().unwrap();
    let mut run = node_command();
    run.arg("--data-dir").arg(temp.path()).args(["run", "--listen", "not-a-multiaddr"]);
    let (status, stdout, stderr) = run_to_end(run);
    assert_eq!(status.code(), Some(2), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error:")
            && first.contains("net.listen")
            && first.contains("--listen")
            && first.contains("not-a-multiaddr"),
        "stderr:\n{stderr}"
    );
}
