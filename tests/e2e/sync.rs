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

/// A grants `rights` in `space` to B's node author.
async fn grant_b(api_a: &Api, api_b: &Api, space: &str, rights: &str) {
    let author_b = api_b.ok(Method::GET, "/v1/identity", None).await["author"].clone();
    let grants = format!("/v1/spaces/{space}/grants");
    let granted = api_a
        .call(Method::POST, &grants, Some(json!({"author": author_b, "rights": rights})))
        .await;
    assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.text);
}

/// The value of the metric line that starts with `name` in the node's `/metrics`.
async fn metric(api: &Api, name: &str) -> f64 {
    let answer = api.request(Method::GET, "/metrics").send().await.expect("GET /metrics");
    let text = answer.text().await.expect("the /metrics text");
    let line = text.lines().find(|line| line.starts_with(name));
    let line = line.unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"));
    line.rsplit(' ').next().and_then(|value| value.parse().ok()).expect("a number")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restricted_space_shares_nothing_with_b_until_a_grants_b_and_nothing_new_once_revoked() {
    let (a, b) = pair();
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    let space = api_a.create_space("restricted").await;
    api_a
        .ok(Method::PUT, &format!("/v1/spaces/{space}/docs/notes/1"), Some(json!({"by": "a"})))
        .await;
    let join = api_b.call(Method::POST, &format!("/v1/spaces/{space}/join"), None).await;
    assert!(join.status.is_success(), "{}", join.text);
    // B asks, A refuses: B holds nothing of the space, not even its record.
    eventually("A to refuse B a read", || async {
        (metric(&api_a, "cosmic_reads_refused_total").await >= 1.0).then_some(())
    })
    .await;
    let note = api_b.call(Method::GET, &format!("/v1/spaces/{space}/docs/notes/1"), None).await;
    assert_eq!(note.status, StatusCode::NOT_FOUND, "{}", note.text);
    let path = format!("/v1/spaces/{space}/docs/notes/2");
    let refused = api_b.call(Method::PUT, &path, Some(json!({"by": "b"}))).await;
    assert!(refused.status.is_client_error(), "{}", refused.text);
    // Once granted, B reads what A wrote.
    grant_b(&api_a, &api_b, &space, "write").await;
    eventually("A's note on B", || async {
        let answer =
            api_b.call(Method::GET, &format!("/v1/spaces/{space}/docs/notes/1"), None).await;
        (answer.status == StatusCode::OK).then_some(())
    })
    .await;
    // B's write goes through too, and reaches A.
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

    // A revokes B's rights with the CLI: from then on nothing new moves between them.
    let author_b = api_b.ok(Method::GET, "/v1/identity", None).await["author"].clone();
    let mut revoke = crate::harness::node_command();
    revoke.arg("--data-dir").arg(a.data_dir()).args([
        "space",
        "revoke",
        &space,
        author_b.as_str().unwrap(),
    ]);
    let (status, stdout, stderr) = crate::harness::run_to_end(revoke);
    assert!(status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains(author_b.as_str().unwrap()), "{stdout}");
    let refused_before = metric(&api_a, "cosmic_reads_refused_total").await;
    let after = format!("/v1/spaces/{space}/docs/notes/3");
    api_a.ok(Method::PUT, &after, Some(json!({"by": "a, after"}))).await;
    // B's own change makes B push to A, which A now refuses.
    let from_b = format!("/v1/spaces/{space}/docs/notes/4");
    let _ = api_b.call(Method::PUT, &from_b, Some(json!({"by": "b, after"}))).await;
    eventually("A to refuse B again", || async {
        (metric(&api_a, "cosmic_reads_refused_total").await > refused_before).then_some(())
    })
    .await;
    let note = api_b.call(Method::GET, &after, None).await;
    assert_eq!(note.status, StatusCode::NOT_FOUND, "B got a note written after: {}", note.text);
    let note = api_a.call(Method::GET, &from_b, None).await;
    assert_eq!(note.status, StatusCode::NOT_FOUND, "A took B's note after: {}", note.text);
    // What moved before the revocation stays on both sides.
    api_b.ok(Method::GET, &format!("/v1/spaces/{space}/docs/notes/1"), None).await;
    assert_eq!(api_a.ok(Method::GET, &path, None).await, json!({"by": "b"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_signed_by_the_client_are_checked_stored_and_replicated() {
    use cosmic_auth::AuthorKey;
    use cosmic_store::{Entry, Hlc, Value as FieldValue};

    let (a, b) = pair();
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    let space = api_a.create_space("restricted").await;
    let space_id: cosmic_auth::SpaceId = space.parse().unwrap();
    let post = format!("/v1/spaces/{space}/entries");
    let doc = format!("/v1/spaces/{space}/docs/notes/1");
    // The user's key never leaves the client.
    let user = AuthorKey::generate();
    let clock = || {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        since_epoch.unwrap().as_millis() as u64
    };
    let now = clock();
    let sign = |field: &str, text: &str, millis: u64| {
        let value = FieldValue::String(text.to_owned());
        Entry::sign(&user, space_id, "notes/1", field, value, Hlc::new(millis, 0)).unwrap()
    };
    let body = |entries: &[Entry]| {
        let encoded: Vec<String> =
            entries.iter().map(|entry| data_encoding::BASE64.encode(&entry.encode())).collect();
        json!({ "entries": encoded })
    };
    let refused_with = |answer: &cosmic_tests::client::Answer, status: StatusCode, code: &str| {
        assert_eq!(answer.status, status, "{}", answer.text);
        assert_eq!(answer.body["error"]["code"], code, "{}", answer.text);
    };

    // Without a write right: refused, nothing stored.
    let entries = [sign("text", "hello", now), sign("mood", "fine", now)];
    let answer = api_a.call(Method::POST, &post, Some(body(&entries))).await;
    refused_with(&answer, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(api_a.call(Method::GET, &doc, None).await.status, StatusCode::NOT_FOUND);

    let granted = api_a
        .call(
            Method::POST,
            &format!("/v1/spaces/{space}/grants"),
            Some(json!({"author": user.public().to_string(), "rights": "write"})),
        )
        .await;
    assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.text);

    // Entries are judged at the time they carry: sign after the grant.
    std::thread::sleep(Duration::from_millis(5));
    let now = clock();
    let entries = [sign("text", "hello", now), sign("mood", "fine", now)];

    // Bad input, each refused whole: a forged signature among good entries, an entry of
    // another space, bytes that are not an entry, base64 that is not base64, none at all.
    let mut forged = sign("text", "hello", now);
    forged.value = FieldValue::String("forged".into());
    let answer = api_a.call(Method::POST, &post, Some(body(&[entries[0].clone(), forged]))).await;
    refused_with(&answer, StatusCode::BAD_REQUEST, "invalid_input");
    let elsewhere = Entry::sign(
        &user,
        AuthorKey::generate().public(),
        "notes/1",
        "text",
        FieldValue::Int(1),
        Hlc::new(now, 0),
    )
    .unwrap();
    let answer = api_a.call(Method::POST, &post, Some(body(&[elsewhere]))).await;
    refused_with(&answer, StatusCode::BAD_REQUEST, "invalid_entries");
    for bad in [json!({"entries": ["AAAA"]}), json!({"entries": ["%%%"]}), json!({"entries": []})] {
        let answer = api_a.call(Method::POST, &post, Some(bad.clone())).await;
        refused_with(&answer, StatusCode::BAD_REQUEST, "invalid_entries");
    }
    assert_eq!(api_a.call(Method::GET, &doc, None).await.status, StatusCode::NOT_FOUND);

    // With the right: stored, signed by the user, and once more changes nothing.
    let answer = api_a.call(Method::POST, &post, Some(body(&entries))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body, json!({"results": ["applied", "applied"], "applied": 2}));
    let again = api_a.call(Method::POST, &post, Some(body(&entries))).await;
    assert_eq!(again.body, json!({"results": ["duplicate", "duplicate"], "applied": 0}));
    let meta = api_a.ok(Method::GET, &format!("{doc}?meta=true"), None).await;
    assert_eq!(meta["text"]["author"], user.public().to_string(), "{meta}");
    assert_eq!(meta["text"]["value"], "hello", "{meta}");

    // The refusals are counted by reason, and the network's refusals are shown too.
    let text = api_a.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let value = |name: &str| -> f64 {
        let line = text.lines().find(|line| line.starts_with(name));
        let line = line.unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    // One refused request without a right (two entries, the first decides), one forged.
    assert_eq!(value(r#"cosmic_entries_refused_total{reason="no_right"}"#), 1.0);
    assert_eq!(value(r#"cosmic_entries_refused_total{reason="bad_signature"}"#), 1.0);
    assert_eq!(value(r#"cosmic_entries_refused_total{reason="clock_drift"}"#), 0.0);
    assert_eq!(value(r#"cosmic_net_refused_total{kind="bans"}"#), 0.0);
    assert_eq!(value(r#"cosmic_net_refused_total{kind="rate_limited"}"#), 0.0);

    // They replicate like the node's own writes, to a node that may read the space.
    grant_b(&api_a, &api_b, &space, "read").await;
    join_and_wait(&api_b, &space).await;
    let on_b: Value = eventually("the user's note on B", || async {
        let answer = api_b.call(Method::GET, &doc, None).await;
        (answer.status == StatusCode::OK).then_some(answer.body)
    })
    .await;
    assert_eq!(on_b, json!({"text": "hello", "mood": "fine"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_linked_only_from_a_restricted_space_goes_only_to_its_readers() {
    let (a, b) = pair();
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    let space = api_a.create_space("restricted").await;
    let data: Vec<u8> =
        (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let added = api_a.send(api_a.request(Method::POST, "/v1/blobs").body(data.clone())).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    let cid = added.body["cid"].as_str().expect("a cid").to_owned();
    let doc = format!("/v1/spaces/{space}/docs/files/1");
    api_a.ok(Method::PUT, &doc, Some(json!({"file": {"/": cid}}))).await;
    let join = api_b.call(Method::POST, &format!("/v1/spaces/{space}/join"), None).await;
    assert!(join.status.is_success(), "{}", join.text);
    eventually("A to refuse B a read", || async {
        (metric(&api_a, "cosmic_reads_refused_total").await >= 1.0).then_some(())
    })
    .await;
    // B may not read the space: A does not even say that it holds the blob.
    let blob = format!("/v1/blobs/{cid}");
    let refused = api_b.request(Method::GET, &blob).send().await.expect("GET the blob");
    assert_ne!(refused.status(), StatusCode::OK, "B fetched a blob of a space it may not read");
    assert_eq!(api_b.request(Method::HEAD, &blob).send().await.expect("HEAD").status(), 404);

    // Once B may read the space, it gets the link and the blob.
    grant_b(&api_a, &api_b, &space, "read").await;
    eventually("the link on B", || async {
        (api_b.call(Method::GET, &doc, None).await.status == StatusCode::OK).then_some(())
    })
    .await;
    let fetched: Vec<u8> = eventually("the blob on B", || async {
        let answer = api_b.request(Method::GET, &blob).send().await.ok()?;
        if answer.status() != StatusCode::OK {
            return None;
        }
        answer.bytes().await.ok().map(|bytes| bytes.to_vec())
    })
    .await;
    assert!(fetched == data, "B's copy differs from A's");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_user_cannot_date_entries_back_on_either_node() {
    use cosmic_auth::AuthorKey;
    use cosmic_store::{Entry, Hlc, Value as FieldValue};

    let (a, b) = pair();
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    let space = api_a.create_space("restricted").await;
    let space_id: cosmic_auth::SpaceId = space.parse().unwrap();
    grant_b(&api_a, &api_b, &space, "read").await;
    join_and_wait(&api_b, &space).await;
    let post = format!("/v1/spaces/{space}/entries");
    let doc = format!("/v1/spaces/{space}/docs/notes/1");
    let user = AuthorKey::generate();
    let granted = api_a
        .call(
            Method::POST,
            &format!("/v1/spaces/{space}/grants"),
            Some(json!({"author": user.public().to_string(), "rights": "write"})),
        )
        .await;
    assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.text);
    let granted_at = granted.body["issued_at"].as_u64().unwrap();
    let sign = |field: &str, millis: u64| {
        let value = FieldValue::String(format!("{field} at {millis}"));
        let entry =
            Entry::sign(&user, space_id, "notes/1", field, value, Hlc::new(millis, 0)).unwrap();
        json!({"entries": [data_encoding::BASE64.encode(&entry.encode())]})
    };

    // Before the revocation: written on A, replicated to B.
    std::thread::sleep(Duration::from_millis(5));
    let answer = api_a.call(Method::POST, &post, Some(sign("kept", granted_at + 2))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    eventually("the user's note on B", || async {
        let answer = api_b.call(Method::GET, &doc, None).await;
        (answer.status == StatusCode::OK && answer.body["kept"].is_string()).then_some(())
    })
    .await;

    // A revokes the user, sealed: the note A holds is kept.
    std::thread::sleep(Duration::from_millis(5));
    let revocations = format!("/v1/spaces/{space}/revocations");
    let body = json!({"author": user.public().to_string()});
    let revoked = api_a.call(Method::POST, &revocations, Some(body)).await;
    assert_eq!(revoked.status, StatusCode::CREATED, "{}", revoked.text);
    assert_eq!(revoked.body["sealed"], true, "{}", revoked.text);
    assert_eq!(revoked.body["kept"], 1, "{}", revoked.text);

    // The user signs a new entry dated back to just after the grant. A refuses it at once.
    let backdated = sign("late", granted_at + 1);
    let answer = api_a.call(Method::POST, &post, Some(backdated.clone())).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    assert!(answer.text.contains("not kept by the sealed revocation"), "{}", answer.text);
    assert_eq!(metric(&api_a, r#"cosmic_entries_refused_total{reason="revoked"}"#).await, 1.0);
    // B refuses it too if the revocation reached it already; if not, it takes it in and
    // cuts it off when the revocation comes. Either way B ends without it.
    let answer = api_b.call(Method::POST, &post, Some(backdated)).await;
    assert!(
        answer.status == StatusCode::OK || answer.status == StatusCode::FORBIDDEN,
        "{}",
        answer.text
    );
    eventually("B to end without the entry dated back", || async {
        let refused = metric(&api_b, r#"cosmic_entries_refused_total{reason="revoked"}"#).await;
        let cut_off = metric(&api_b, "cosmic_entries_cut_off_total").await;
        let note = api_b.ok(Method::GET, &doc, None).await;
        (refused + cut_off >= 1.0 && note["late"].is_null()).then_some(())
    })
    .await;
    // What was written before the revocation stays on both; the entry dated back is on
    // neither, and never reached A.
    for api in [&api_a, &api_b] {
        let note = api.ok(Method::GET, &doc, None).await;
        assert!(note["kept"].is_string(), "{note}");
        assert!(note["late"].is_null(), "{note}");
    }
    assert_eq!(metric(&api_a, "cosmic_entries_cut_off_total").await, 0.0);
}
