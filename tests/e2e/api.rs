//! The HTTP API of real `cosmic-node run` processes on loopback: tokens, bad input,
//! resumable event streams, and blobs moving between two nodes.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub(crate) use cosmic_tests::client::{Api, SYNC_TIMEOUT, http_client};

use crate::harness::TestNode;

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_or_with_a_wrong_token_get_401() {
    let node = TestNode::start();
    let space = Api::new(&node).create_space("open").await;
    let anonymous = http_client();
    let wrong = Api::with_token(&node, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let routes = [
        (Method::GET, "/v1/status".to_owned()),
        (Method::GET, "/v1/identity".to_owned()),
        (Method::GET, "/v1/peers".to_owned()),
        (Method::POST, "/v1/peers".to_owned()),
        (Method::GET, "/v1/spaces".to_owned()),
        (Method::POST, "/v1/spaces".to_owned()),
        (Method::POST, format!("/v1/spaces/{space}/join")),
        (Method::POST, format!("/v1/spaces/{space}/leave")),
        (Method::POST, format!("/v1/spaces/{space}/grants")),
        (Method::GET, format!("/v1/spaces/{space}/docs")),
        (Method::GET, format!("/v1/spaces/{space}/docs/a/b")),
        (Method::PUT, format!("/v1/spaces/{space}/docs/a/b")),
        (Method::DELETE, format!("/v1/spaces/{space}/docs/a/b")),
        (Method::GET, format!("/v1/spaces/{space}/events")),
        (Method::POST, "/v1/blobs".to_owned()),
        (
            Method::GET,
            "/v1/blobs/bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi".to_owned(),
        ),
        (
            Method::DELETE,
            "/v1/blobs/bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi".to_owned(),
        ),
        (Method::GET, "/v1/openapi.json".to_owned()),
        (Method::GET, "/metrics".to_owned()),
    ];
    for (method, path) in &routes {
        let request = anonymous.request(method.clone(), wrong.url(path));
        let answer = wrong.send(request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "no token: {method} {path}");
        assert_eq!(answer.client_error(path), "unauthorized");
        let answer = wrong.call(method.clone(), path, None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "wrong token: {method} {path}");
        assert_eq!(answer.client_error(path), "unauthorized");
    }
    // Health needs no token; the right token opens everything else.
    let health = anonymous.get(wrong.url("/v1/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let status = Api::new(&node).ok(Method::GET, "/v1/status", None).await;
    assert_eq!(status["peer_id"], node.ready_field("peer_id").unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_bad_input_with_a_json_4xx() {
    let node = TestNode::start();
    let api = Api::new(&node);
    let space = api.create_space("open").await;
    let unknown = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let docs = format!("/v1/spaces/{space}/docs");
    let oversized = json!({ "big": "x".repeat(5 * 1024 * 1024) });
    let cases: Vec<(Method, String, Option<Value>, Option<&str>)> = vec![
        (Method::POST, "/v1/peers".into(), Some(json!({"addr": "not/a/multiaddr"})), None),
        (Method::POST, "/v1/peers".into(), Some(json!({})), None),
        (Method::POST, "/v1/spaces".into(), Some(json!({"mode": "closed"})), None),
        (Method::POST, "/v1/spaces/nope/join".into(), None, None),
        (Method::POST, "/v1/spaces/nope/leave".into(), None, None),
        (
            Method::POST,
            format!("/v1/spaces/{space}/grants"),
            Some(json!({"author": "x", "rights": "read"})),
            None,
        ),
        (
            Method::POST,
            format!("/v1/spaces/{unknown}/grants"),
            Some(json!({"author": space, "rights": "read"})),
            None,
        ),
        (Method::GET, format!("{docs}?limit=-3"), None, None),
        (Method::GET, format!("/v1/spaces/{unknown}/docs"), None, None),
        (Method::GET, format!("{docs}/missing"), None, None),
        (Method::GET, format!("{docs}/x?depth=1000"), None, None),
        (Method::PUT, format!("{docs}/x"), None, Some("{not json")),
        (Method::PUT, format!("{docs}/x"), Some(json!("a string")), None),
        (Method::PUT, format!("{docs}/x"), Some(json!({"link": {"/": "bafy-not-a-cid"}})), None),
        (Method::PUT, format!("/v1/spaces/{unknown}/docs/x"), Some(json!({"a": 1})), None),
        (Method::DELETE, format!("{docs}/missing"), None, None),
        (Method::GET, format!("/v1/spaces/{unknown}/events"), None, None),
        (Method::GET, "/v1/blobs/not-a-cid".into(), None, None),
        (
            Method::GET,
            "/v1/blobs/bafkr4ibzhd2hoyisnefozwa2lvfv3xt7ss6dv3ow6bgnwtbmjzn2ezdnaq".into(),
            None,
            None,
        ),
        (Method::DELETE, "/v1/blobs/zzz".into(), None, None),
        (Method::GET, "/v1/no-such-route".into(), None, None),
        (Method::PATCH, "/v1/spaces".into(), None, None),
    ];
    for (method, path, body, raw) in cases {
        let mut request = api.request(method.clone(), &path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(raw) = raw {
            request = request.header("content-type", "application/json").body(raw.to_owned());
        }
        let answer = api.send(request).await;
        answer.client_error(&format!("{method} {path}"));
    }
    // A body over `api.max_request_size` (4 MiB): the node answers 413 before reading it
    // all and closes the connection, so this one goes on a connection of its own.
    let own = Api::new(&node);
    let answer = own.call(Method::PUT, &format!("{docs}/x"), Some(oversized)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.client_error("oversized"), "payload_too_large");
    // The node is unharmed by all of that.
    api.ok(Method::PUT, &format!("{docs}/x"), Some(json!({"ok": true}))).await;
    assert_eq!(api.ok(Method::GET, &format!("{docs}/x"), None).await["ok"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn last_event_id_resume_loses_nothing_across_a_reconnect() {
    let node = TestNode::start();
    let api = Api::new(&node);
    let space = api.create_space("open").await;
    let docs = format!("/v1/spaces/{space}/docs");
    let mut events = api.events(&space, None).await;
    for n in 0..3 {
        api.ok(Method::PUT, &format!("{docs}/before/{n}"), Some(json!({"n": n}))).await;
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(events.next(SYNC_TIMEOUT).await.expect("an event"));
    }
    let last_id = seen.last().unwrap().0;
    drop(events);
    // Written while nobody listens.
    for n in 0..4 {
        api.ok(Method::PUT, &format!("{docs}/during/{n}"), Some(json!({"n": n}))).await;
    }
    let mut resumed = api.events(&space, Some(last_id)).await;
    api.ok(Method::PUT, &format!("{docs}/after/0"), Some(json!({"n": 0}))).await;
    let mut docs_seen = Vec::new();
    for _ in 0..5 {
        let (id, data) = resumed.next(SYNC_TIMEOUT).await.expect("an event after resuming");
        assert!(id > last_id, "event {id} repeats one seen before {last_id}");
        docs_seen.push(data["doc"].as_str().unwrap().to_owned());
    }
    assert_eq!(docs_seen, ["during/0", "during/1", "during/2", "during/3", "after/0"]);
    assert!(resumed.next(Duration::from_millis(500)).await.is_none(), "a duplicate arrived");
    // `?since=` works like the header.
    let mut since = api.events(&space, None).await;
    let first = since.next(SYNC_TIMEOUT).await.unwrap();
    assert_eq!(first.1["doc"], "before/0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_added_on_a_downloads_byte_for_byte_from_b() {
    let a = TestNode::start();
    let b = TestNode::start_with_args(&["--bootstrap", &a.p2p_addr()]);
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    let data: Vec<u8> =
        (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let added = api_a.send(api_a.request(Method::POST, "/v1/blobs").body(data.clone())).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    let cid = added.body["cid"].as_str().unwrap().to_owned();
    assert_eq!(added.body["size"], data.len());
    // B does not hold it yet.
    let head = api_b.request(Method::HEAD, &format!("/v1/blobs/{cid}")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    // Wait until B is connected to A (bootstrap dial), then download through B.
    let started = Instant::now();
    loop {
        let peers = api_b.ok(Method::GET, "/v1/peers", None).await;
        let connected = peers.as_array().unwrap().iter().any(|peer| {
            peer["peer_id"] == a.ready_field("peer_id").unwrap() && peer["state"] == "connected"
        });
        if connected {
            break;
        }
        assert!(started.elapsed() < SYNC_TIMEOUT, "B never connected to A: {peers}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let response = api_b.request(Method::GET, &format!("/v1/blobs/{cid}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.content_length(), Some(data.len() as u64));
    let downloaded = response.bytes().await.unwrap();
    assert!(downloaded[..] == data[..], "B's copy differs from A's");
    // Now B holds it and serves ranges itself.
    let head = api_b.request(Method::HEAD, &format!("/v1/blobs/{cid}")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let range = api_b
        .request(Method::GET, &format!("/v1/blobs/{cid}"))
        .header("Range", "bytes=-1000")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(range.bytes().await.unwrap()[..], data[data.len() - 1000..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_line_names_the_bound_api_and_the_real_listen_addresses() {
    let node = TestNode::start();
    let api = node.api_url();
    assert!(api.starts_with("http://127.0.0.1:") && !api.ends_with(":0"), "api={api}");
    let listen = node.listen_addrs();
    assert!(!listen.is_empty());
    for addr in &listen {
        assert!(addr.starts_with("/ip4/127.0.0.1/tcp/") && !addr.ends_with("/tcp/0"), "{addr}");
    }
    // The status route agrees, and the CLI client finds the API in the data dir.
    let status = Api::new(&node).ok(Method::GET, "/v1/status", None).await;
    assert_eq!(status["listen"], json!(listen));
    let recorded = std::fs::read_to_string(node.data_dir().join("api.url")).unwrap();
    assert_eq!(recorded.trim(), api);
}

#[test]
fn a_taken_api_port_fails_the_start_with_a_clear_error() {
    let first = TestNode::start();
    let taken = first.api_url().trim_start_matches("http://").to_owned();
    let temp = tempfile::tempdir().unwrap();
    let mut second = crate::harness::node_command();
    second.arg("--data-dir").arg(temp.path()).args([
        "run",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        &taken,
        "--no-mdns",
    ]);
    let (status, stdout, stderr) = crate::harness::run_to_end(second);
    assert_eq!(status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains("ready"), "{stdout}");
    assert!(stderr.contains(&format!("cannot serve the HTTP API on {taken}")), "{stderr}");
}

#[test]
fn the_default_api_address_is_loopback() {
    let temp = tempfile::tempdir().unwrap();
    let mut show = crate::harness::node_command();
    show.arg("--data-dir").arg(temp.path().join("node")).args(["config", "show", "--json"]);
    let (status, stdout, stderr) = crate::harness::run_to_end(show);
    assert!(status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let settings: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let addr = settings.iter().find(|setting| setting["key"] == "api.addr").unwrap();
    assert_eq!(addr["origin"], "default", "{addr}");
    let value: String = serde_json::from_str(addr["value"].as_str().unwrap()).unwrap();
    let addr: std::net::SocketAddr = value.parse().unwrap();
    assert!(addr.ip().is_loopback(), "default api.addr {addr} is not loopback");
}

/// Runs `cosmic-node run` with `--api api_addr` until its ready line, stops it and returns
/// (stdout, stderr).
fn run_until_ready(api_addr: &str) -> (String, String) {
    use std::io::{BufRead as _, Read as _};
    let temp = tempfile::tempdir().expect("temp dir");
    let mut command = crate::harness::node_command();
    command.arg("--data-dir").arg(temp.path().join("node")).args([
        "run",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        api_addr,
        "--no-mdns",
    ]);
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("spawn cosmic-node");
    let stdout = child.stdout.take().expect("piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + crate::harness::READY_TIMEOUT;
    let mut seen = String::new();
    while !seen.contains("ready ") {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    crate::harness::wait_with_deadline(&mut child, crate::harness::EXIT_TIMEOUT)
        .expect("the killed node exits");
    let mut stderr = String::new();
    child.stderr.take().expect("piped").read_to_string(&mut stderr).expect("read stderr");
    assert!(seen.contains("ready "), "no ready line; stdout:\n{seen}\nstderr:\n{stderr}");
    (seen, stderr)
}

#[test]
fn a_non_loopback_api_address_logs_a_warning_naming_the_risk() {
    let (stdout, stderr) = run_until_ready("0.0.0.0:0");
    assert!(stdout.contains("api=http://0.0.0.0:"), "{stdout}");
    let warning = stderr
        .lines()
        .find(|line| line.contains("WARN") && line.contains("beyond loopback"))
        .unwrap_or_else(|| panic!("no warning about the API address in:\n{stderr}"));
    assert!(warning.contains("bearer token"), "{warning}");
    assert!(warning.contains("unencrypted"), "{warning}");
    // On loopback the same start stays quiet about it.
    let (_, stderr) = run_until_ready("127.0.0.1:0");
    assert!(!stderr.contains("beyond loopback"), "{stderr}");
}
