//! `cosmic-node identity`: create, list, export and import author identities.

use crate::harness::{EXIT_TIMEOUT, node_bin, node_command, run_to_end, wait_with_deadline};

fn identity(
    data_dir: &std::path::Path,
    args: &[&str],
) -> (std::process::ExitStatus, String, String) {
    let mut command = node_command();
    command.env("COSMIC_PASSPHRASE", "correct horse battery staple");
    command.arg("--data-dir").arg(data_dir).arg("identity").args(args);
    run_to_end(command)
}

#[test]
fn identities_move_between_data_dirs_in_encrypted_form() {
    let temp = tempfile::tempdir().unwrap();
    let a = temp.path().join("a");
    let b = temp.path().join("b");

    let (status, stdout, stderr) = identity(&a, &["create", "alice"]);
    assert!(status.success(), "stderr:\n{stderr}");
    let author = stdout.trim().strip_prefix("created alice ").expect("created line").to_owned();
    assert_eq!(author.len(), 52, "author id {author:?}");

    let (status, stdout, _) = identity(&a, &["list"]);
    assert!(status.success());
    assert_eq!(stdout.trim(), format!("alice {author}"));

    let exported = temp.path().join("alice.identity");
    let exported_str = exported.to_str().unwrap();
    let (status, _, stderr) = identity(&a, &["export", "alice", exported_str]);
    assert!(status.success(), "stderr:\n{stderr}");
    let bytes = std::fs::read(&exported).unwrap();
    assert!(!bytes.windows(4).any(|w| w == b"hors"), "the export must be encrypted");

    let (status, stdout, stderr) = identity(&b, &["import", "alice2", exported_str]);
    assert!(status.success(), "stderr:\n{stderr}");
    assert_eq!(stdout.trim(), format!("imported alice2 {author}"));

    // Creating the same alias twice, or importing a damaged file, is a clear error.
    let (status, _, stderr) = identity(&a, &["create", "alice"]);
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    let damaged = temp.path().join("damaged.identity");
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let (status, _, stderr) = identity(&b, &["import", "bob", damaged.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.starts_with("error:"), "stderr:\n{stderr}");
    let (_, stdout, _) = identity(&b, &["list"]);
    assert_eq!(stdout.trim(), format!("alice2 {author}"), "nothing half-imported");

    // A damaged file in the keystore is named on stderr and hides no other identity.
    std::fs::write(b.join("keystore").join("carol.identity"), b"not an identity").unwrap();
    let (status, stdout, stderr) = identity(&b, &["list"]);
    assert!(status.success(), "stderr:\n{stderr}");
    assert_eq!(stdout.trim(), format!("alice2 {author}"));
    assert!(stderr.contains("warning: skipped a damaged identity file"), "stderr:\n{stderr}");
    assert!(stderr.contains("carol.identity"), "stderr:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_started_with_identities_signs_writes_as_the_author_each_asks_for() {
    use reqwest::{Method, StatusCode};
    use serde_json::json;

    use crate::api::Api;
    use crate::harness::{EXIT_TIMEOUT, TestNode};

    const PASSPHRASE: (&str, &str) = ("COSMIC_PASSPHRASE", "correct horse battery staple");
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("node");
    let mut authors = Vec::new();
    for alias in ["alice", "bob"] {
        let (status, stdout, stderr) = identity(&data_dir, &["create", alias]);
        assert!(status.success(), "stderr:\n{stderr}");
        let prefix = format!("created {alias} ");
        authors.push(stdout.trim().strip_prefix(&prefix).expect("created line").to_owned());
    }
    let (alice, bob) = (authors[0].clone(), authors[1].clone());

    let args = ["--identity", "alice", "--identity", "bob"];
    let mut node = TestNode::start_in_with_env(&data_dir, &args, &[PASSPHRASE]);
    let api = Api::new(&node);
    let me = api.ok(Method::GET, "/v1/identity", None).await;
    assert_eq!(
        me["identities"],
        json!([{"alias": "alice", "author": alice}, {"alias": "bob", "author": bob}])
    );
    let node_author = me["author"].as_str().unwrap().to_owned();
    let space = api.create_space("open").await;
    let doc = format!("/v1/spaces/{space}/docs/notes/1");

    // Through the API: by alias, by author id, and by default the node author.
    let put = api.call(Method::PUT, &format!("{doc}?author=alice"), Some(json!({"a": 1}))).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    let put = api.call(Method::PUT, &format!("{doc}?author={bob}"), Some(json!({"b": 2}))).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    let put = api.call(Method::PUT, &doc, Some(json!({"n": 3}))).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    // Through the CLI.
    let mut cli = crate::harness::node_command();
    cli.arg("--data-dir").arg(&data_dir).args([
        "doc",
        "put",
        "--as",
        "bob",
        &space,
        "notes/1",
        r#"{"c": 4}"#,
    ]);
    let (status, _, stderr) = run_to_end(cli);
    assert!(status.success(), "stderr:\n{stderr}");

    let meta = api.ok(Method::GET, &format!("{doc}?meta=true"), None).await;
    let signer = |field: &str| meta[field]["author"].as_str().unwrap_or_default().to_owned();
    assert_eq!(signer("a"), alice, "{meta}");
    assert_eq!(signer("b"), bob, "{meta}");
    assert_eq!(signer("n"), node_author, "{meta}");
    assert_eq!(signer("c"), bob, "{meta}");

    // An author that is not unlocked is refused, and nothing is written.
    let stranger = "carol";
    let refused =
        api.call(Method::PUT, &format!("{doc}?author={stranger}"), Some(json!({"x": 0}))).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert_eq!(refused.body["error"]["code"], "unknown_author", "{}", refused.text);
    let after = api.ok(Method::GET, &doc, None).await;
    assert!(after.get("x").is_none(), "{after}");
    node.signal("TERM");
    assert!(node.wait_exit(EXIT_TIMEOUT).unwrap().success());
    drop(node);

    // A wrong passphrase stops the start with that reason, before the node is ready.
    let mut wrong = crate::harness::node_command();
    wrong.env("COSMIC_PASSPHRASE", "not the passphrase").arg("--data-dir").arg(&data_dir).args([
        "run",
        "--api",
        "127.0.0.1:0",
        "--no-mdns",
        "--identity",
        "alice",
    ]);
    let (status, stdout, stderr) = run_to_end(wrong);
    assert_eq!(status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains("ready"), "{stdout}");
    assert!(stderr.contains("wrong passphrase for identity \"alice\""), "stderr:\n{stderr}");

    // So does a damaged identity file, and an identity that does not exist.
    let file = std::fs::read_dir(data_dir.join("keystore"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.to_string_lossy().contains("bob"))
        .expect("bob's identity file");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();
    for (alias, reason) in [("bob", "unlocking identity \"bob\""), ("dave", "no identity named")] {
        let mut start = crate::harness::node_command();
        start.env(PASSPHRASE.0, PASSPHRASE.1).arg("--data-dir").arg(&data_dir).args([
            "run",
            "--api",
            "127.0.0.1:0",
            "--no-mdns",
            "--identity",
            alias,
        ]);
        let (status, stdout, stderr) = run_to_end(start);
        assert_eq!(status.code(), Some(1), "{alias}: stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(!stdout.contains("ready"), "{stdout}");
        assert!(stderr.contains(reason), "{alias}: stderr:\n{stderr}");
    }
}

/// Runs `cosmic-node --data-dir DIR ARGS` on a terminal of its own (`script` from
/// util-linux gives it one) and answers its prompts: for each `(prompt, answer)`, waits
/// until `prompt` shows, then types `answer` and Enter. Returns its exit status and all it
/// wrote to the terminal. No `COSMIC_` variable reaches it, so passphrases are asked.
fn on_a_terminal(
    data_dir: &std::path::Path,
    args: &str,
    answers: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    use std::io::{Read as _, Write as _};
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    let line = format!("'{}' --data-dir '{}' {args}", node_bin().display(), data_dir.display());
    let mut command = Command::new("script");
    command.args(["-q", "-e", "-c", &line, "/dev/null"]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("COSMIC_") {
            command.env_remove(key);
        }
    }
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = command.spawn().expect("spawn script (util-linux)");
    let shown = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().expect("piped");
    let reader = {
        let shown = shown.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                shown
                    .lock()
                    .expect("the output buffer")
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        })
    };
    let mut stdin = child.stdin.take().expect("piped");
    let mut seen = 0;
    for (prompt, answer) in answers {
        let started = Instant::now();
        loop {
            let text = shown.lock().expect("the output buffer").clone();
            if let Some(at) = text[seen..].find(prompt) {
                seen += at + prompt.len();
                break;
            }
            assert!(started.elapsed() < EXIT_TIMEOUT, "no prompt {prompt:?} in:\n{text}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        stdin.write_all(format!("{answer}\n").as_bytes()).expect("type on the terminal");
        stdin.flush().expect("type on the terminal");
    }
    let status = wait_with_deadline(&mut child, EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("`{line}` did not exit within {EXIT_TIMEOUT:?}"));
    drop(stdin);
    reader.join().expect("the output reader");
    let output = shown.lock().expect("the output buffer").clone();
    (status, output)
}

#[test]
fn passphrases_are_asked_on_the_terminal_when_the_environment_has_none() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("a");

    // A new identity: the passphrase is asked twice, without echo.
    let answers = [("new passphrase:", "sesame"), ("repeat passphrase:", "sesame")];
    let (status, output) = on_a_terminal(&data_dir, "identity create alice", &answers);
    assert!(status.success(), "{output}");
    assert!(
        output.contains("new passphrase:") && output.contains("repeat passphrase:"),
        "{output}"
    );
    assert!(output.contains("created alice "), "{output}");
    assert!(!output.contains("sesame"), "the passphrase was echoed: {output}");
    // Two different answers: refused, nothing created.
    let answers = [("new passphrase:", "one"), ("repeat passphrase:", "two")];
    let (status, output) = on_a_terminal(&data_dir, "identity create bob", &answers);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("the two passphrases differ"), "{output}");
    let (status, output) = on_a_terminal(&data_dir, "identity list", &[]);
    assert!(status.success(), "{output}");
    assert!(output.contains("alice ") && !output.contains("bob"), "{output}");

    // Unlocking for a run: a wrong answer stops the start with that reason.
    let args = "run --api 127.0.0.1:0 --listen /ip4/127.0.0.1/tcp/0 --no-mdns --identity alice";
    let (status, output) = on_a_terminal(&data_dir, args, &[("passphrase for alice:", "sesam")]);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("wrong passphrase for identity \"alice\""), "{output}");
    assert!(!output.contains("ready"), "{output}");

    // No terminal and no COSMIC_PASSPHRASE: a clear error that names the variable.
    let mut command = node_command();
    command.arg("--data-dir").arg(&data_dir).args(["identity", "create", "carol"]);
    let (status, _, stderr) = run_to_end(command);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("set COSMIC_PASSPHRASE instead"), "{stderr}");
}
