//! Two real nodes sharing spaces over loopback: live documents and capabilities.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::{Api, SYNC_TIMEOUT};
use crate::harness::TestNode;

/// Two connected nodes: A, and B started with A as its bootstrap peer.
fn pair() -> (TestNode, TestNode) {
    let a = TestNode::start();
    let b = TestNode::start_with_args(&["--bootstrap", &a.p2p_addr()]);
    (a, b)
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `SYNC_TIMEOUT`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < SYNC_TIMEOUT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// B joins A's space and waits until the space's record has reached it.
async fn join_and_wait(b: &Api, space: &str) {
    b.ok(Method::POST, &format!("/v1/spaces/{space}/join"), None).await;
    eventually("the space record on B", || async {
        let spaces = b.ok(Method::GET, "/v1/spaces", None).await;
        spaces
            .as_array()
            .into_iter()
            .flatten()
            .any(|entry| entry["id"] == space && !entry["mode"].is_null())
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_document_put_on_a_appears_on_bs_event_stream_and_in_bs_get() {
    let (a, b) = pair();
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    let space = api_a.create_space("open").await;
    api_b.ok(Method::POST, &format!("/v1/spaces/{space}/join"), None).await;
    let mut events = api_b.events(&space, None).await;
    let document = json!({"name": "Alice", "age": 30, "tags": {"x": true}});
    api_a.ok(Method::PUT, &format!("/v1/spaces/{space}/docs/users/alice"), Some(document)).await;
    let mut fields = Vec::new();
    while fields.len() < 3 {
        let (_, event) = events.next(SYNC_TIMEOUT).await.expect("A's change reaches B's stream");
        if event["doc"] == "users/alice" {
            assert_eq!(event["origin"], a.ready_field("peer_id").unwrap(), "{event}");
            fields.push(event["field"].as_str().unwrap().to_owned());
        }
    }
    fields.sort();
    assert_eq!(fields, ["age", "name", "tags"]);
    let on_b: Value = eventually("the document in B's GET", || async {
        let answer = api_b
            .call(Method::GET, &format!("/v1/spaces/{space}/docs/users/alice?depth=1"), None)
            .await;
        (answer.status == StatusCode::OK).then_some(answer.body)
    })
    .await;
    assert_eq!(on_b, json!({"name": "Alice", "age": 30, "tags": {"x": true}}));
    let on_a =
        api_a.ok(Method::GET, &format!("/v1/spaces/{space}/docs/users/alice?depth=1"), None).await;
    assert_eq!(on_a, on_b);
    // Same entries, same state hash; a write on one side alone makes them differ.
    let state = |api: &Api| {
        let api = api.clone();
        let space = space.clone();
        async move {
            let spaces = api.ok(Method::GET, "/v1/spaces", None).await;
            let entry = spaces.as_array().unwrap().iter().find(|s| s["id"] == space).cloned();
            entry.expect("the space is listed")["state_hash"].as_str().unwrap().to_owned()
        }
    };
    let hash_a = state(&api_a).await;
    assert_eq!(hash_a.len(), 64, "{hash_a}");
    assert_ne!(hash_a, "0".repeat(64));
    eventually("equal state hashes", || async { (state(&api_b).await == hash_a).then_some(()) })
        .await;
    api_b.ok(Method::PUT, &format!("/v1/spaces/{space}/docs/solo"), Some(json!({"x": 1}))).await;
    let after = state(&api_b).await;
    assert_ne!(after, hash_a, "a new entry changes the state hash");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restricted_space_rejects_bs_writes_until_a_grants_b() {
    let (a, b) = pair();
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    let space = api_a.create_space("restricted").await;
    api_a
        .ok(Method::PUT, &format!("/v1/spaces/{space}/docs/notes/1"), Some(json!({"by": "a"})))
        .await;
    join_and_wait(&api_b, &space).await;
    let path = format!("/v1/spaces/{space}/docs/notes/2");
    let refused = api_b.call(Method::PUT, &path, Some(json!({"by": "b"}))).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(refused.client_error("write before the grant"), "forbidden");
    // B can read what A wrote.
    eventually("A's note on B", || async {
        let answer =
            api_b.call(Method::GET, &format!("/v1/spaces/{space}/docs/notes/1"), None).await;
        (answer.status == StatusCode::OK).then_some(())
    })
    .await;
    let author_b = api_b.ok(Method::GET, "/v1/identity", None).await["author"].clone();
    let granted = api_a
        .call(
            Method::POST,
            &format!("/v1/spaces/{space}/grants"),
            Some(json!({"author": author_b, "rights": "write"})),
        )
        .await;
    assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.text);
    // Once the grant has reached B, B's write goes through, and reaches A.
    eventually("B's write accepted after the grant", || async {
        let answer = api_b.call(Method::PUT, &path, Some(json!({"by": "b"}))).await;
        match answer.status {
            StatusCode::OK => Some(()),
            StatusCode::FORBIDDEN => None,
            other => panic!("unexpected answer {other}: {}", answer.text),
        }
    })
    .await;
    let on_a: Value = eventually("B's note on A", || async {
        let answer = api_a.call(Method::GET, &path, None).await;
        (answer.status == StatusCode::OK).then_some(answer.body)
    })
    .await;
    assert_eq!(on_a, json!({"by": "b"}));
}
