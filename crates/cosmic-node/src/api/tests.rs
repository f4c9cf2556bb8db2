//! Tests of the API router, in process, against a real node on a temporary data dir.
#![allow(clippy::disallowed_methods, reason = "test tasks end with the test")]

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use futures::StreamExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use utoipa::OpenApi as _;

use super::{ApiDoc, AppState, router};
use crate::Node;

/// A node with its API served in process (no listener), and its token.
struct Fixture {
    node: Node,
    app: Router,
    token: String,
    _dir: tempfile::TempDir,
}

fn config(dir: &std::path::Path) -> cosmic_config::Config {
    let mut config = cosmic_config::Config::default();
    config.node.data_dir = dir.join("node");
    config.net.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.net.mdns = false;
    config.api.enabled = false;
    config.api.max_request_size = 64 * 1024;
    config.blobs.max_blob_size = 1024 * 1024;
    config
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await.unwrap();
    Fixture::around(node, dir)
}

/// One answer: status, headers and body.
struct Answer {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!("not JSON ({error}): {}", String::from_utf8_lossy(&self.body))
        })
    }

    /// Asserts a 4xx in the error shape and returns its code.
    fn assert_client_error(&self, what: &str) -> String {
        assert!(
            self.status.is_client_error(),
            "{what}: expected a 4xx, got {} {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        let code = body["error"]["code"].as_str().unwrap_or_else(|| panic!("{what}: {body}"));
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
        code.to_owned()
    }
}

impl Fixture {
    /// The API of a started node whose data dir lives in `dir`.
    fn around(node: Node, dir: tempfile::TempDir) -> Fixture {
        let token = node.shared.data_dir.api_token().unwrap();
        let state = AppState::new(node.shared.clone(), token.clone(), Default::default());
        Fixture { node, app: router(state), token, _dir: dir }
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        Answer { status, content_type, body: body.to_vec() }
    }

    fn request(&self, method: Method, uri: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Answer {
        let builder = self.request(method, uri);
        let request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
            None => builder.body(Body::empty()).unwrap(),
        };
        self.send(request).await
    }

    async fn raw(&self, method: Method, uri: &str, body: &str) -> Answer {
        let request = self
            .request(method, uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.send(request).await
    }

    async fn create_space(&self, mode: &str) -> String {
        let answer = self.call(Method::POST, "/v1/spaces", Some(json!({ "mode": mode }))).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&answer.body));
        answer.json()["id"].as_str().unwrap().to_owned()
    }
}

/// The `.route("...")` paths of the router, read from its source, in OpenAPI form.
fn router_paths() -> BTreeSet<String> {
    include_str!("mod.rs")
        .lines()
        .filter_map(|line| line.trim().strip_prefix(".route(\""))
        .chain(include_str!("mod.rs").lines().filter_map(|line| line.trim().strip_prefix("\"/")))
        .filter_map(|rest| rest.split('"').next())
        .map(|path| if path.starts_with('/') { path.to_owned() } else { format!("/{path}") })
        .filter(|path| path.starts_with("/v1") || path == "/metrics")
        .map(|path| path.replace("{*", "{"))
        .collect()
}

fn sample_uri(path: &str, space: &str) -> String {
    path.replace("{space}", space)
        .replace("{key}", "users/alice")
        .replace("{cid}", "bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi")
}

const ALL_METHODS: [Method; 5] =
    [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::HEAD];

#[tokio::test]
async fn every_route_is_in_the_openapi_document_and_needs_the_token() {
    let fixture = fixture().await;
    let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let documented: BTreeSet<String> =
        document["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(router_paths(), documented, "router routes vs OpenAPI paths");
    let space = cosmic_auth::SpaceKey::generate().id().to_string();
    for (path, item) in document["paths"].as_object().unwrap() {
        let uri = sample_uri(path, &space);
        for method in ALL_METHODS {
            let documented_method = item.get(method.as_str().to_lowercase()).is_some()
                // axum answers HEAD with the GET handler.
                || (method == Method::HEAD && item.get("get").is_some());
            let request = Request::builder().method(method.clone()).uri(&uri);
            let answer = fixture.send(request.body(Body::empty()).unwrap()).await;
            if !documented_method {
                assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                if method != Method::HEAD {
                    assert_eq!(answer.assert_client_error("405"), "method_not_allowed");
                }
            } else if path == "/v1/health" {
                assert_eq!(answer.status, StatusCode::OK, "{method} {path}");
            } else {
                assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{method} {path}");
                if method != Method::HEAD {
                    assert_eq!(answer.assert_client_error(path), "unauthorized");
                }
                // A wrong token is refused just the same.
                let request = Request::builder()
                    .method(method.clone())
                    .uri(&uri)
                    .header(header::AUTHORIZATION, "Bearer wrong-token-wrong-token-wrong-token");
                let answer = fixture.send(request.body(Body::empty()).unwrap()).await;
                assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            }
        }
    }
    let answer = fixture.call(Method::GET, "/v1/nothing-here", None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.assert_client_error("unknown route"), "not_found");
    fixture.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_route_answers_bad_input_with_a_json_4xx() {
    let fixture = fixture().await;
    let space = fixture.create_space("open").await;
    let unknown = cosmic_auth::SpaceKey::generate().id().to_string();
    let big = "x".repeat(70 * 1024);
    let docs = format!("/v1/spaces/{space}/docs");
    let grant_read = format!(r#"{{"author": "{space}", "rights": "read"}}"#);
    let grant_soon = format!(r#"{{"author": "{space}", "rights": "read", "expires": "soon"}}"#);
    let too_big = format!(r#"{{"big": "{big}"}}"#);
    let missing_cid = cosmic_blobs::Cid::of_bytes(b"nobody has this");
    let nobody = format!(
        r#"{{"addr": "/ip4/127.0.0.1/tcp/1/p2p/{}"}}"#,
        cosmic_auth::NodeKey::generate().peer_id()
    );
    let cases: Vec<(Method, String, Option<&str>, &str)> = vec![
        (Method::POST, "/v1/peers".into(), Some("{"), "invalid_json"),
        (Method::POST, "/v1/peers".into(), Some(nobody.as_str()), "dial_failed"),
        (
            Method::POST,
            "/v1/peers".into(),
            Some(r#"{"addr": "not a multiaddr"}"#),
            "invalid_multiaddr",
        ),
        (Method::POST, "/v1/peers".into(), Some(r#"{"address": "/ip4/1.2.3.4"}"#), "invalid_json"),
        (Method::POST, "/v1/spaces".into(), Some(r#"{"mode": "secret"}"#), "invalid_json"),
        (Method::POST, "/v1/spaces".into(), Some("[]"), "invalid_json"),
        (Method::POST, "/v1/spaces/not-a-space/join".into(), Some("{}"), "invalid_space"),
        (Method::POST, "/v1/spaces/not-a-space/leave".into(), Some("{}"), "invalid_space"),
        (Method::POST, "/v1/spaces/not-a-space/grants".into(), Some("{}"), "invalid_json"),
        (
            Method::POST,
            format!("/v1/spaces/{space}/grants"),
            Some(r#"{"author": "nobody", "rights": "write"}"#),
            "invalid_author",
        ),
        (
            Method::POST,
            format!("/v1/spaces/{space}/grants"),
            Some(r#"{"author": "aaaa", "rights": "everything"}"#),
            "invalid_json",
        ),
        (
            Method::POST,
            format!("/v1/spaces/{unknown}/grants"),
            Some(grant_read.as_str()),
            "unknown_space",
        ),
        (
            Method::POST,
            format!("/v1/spaces/{space}/grants"),
            Some(grant_soon.as_str()),
            "invalid_expires",
        ),
        (Method::GET, format!("{docs}?limit=0"), None, "invalid_query"),
        (Method::GET, format!("{docs}?limit=many"), None, "invalid_query"),
        (Method::GET, format!("{docs}?colour=red"), None, "invalid_query"),
        (Method::GET, format!("/v1/spaces/{unknown}/docs"), None, "unknown_space"),
        (Method::GET, "/v1/spaces/x/docs".into(), None, "invalid_space"),
        (Method::GET, format!("{docs}/users/nobody"), None, "doc_not_found"),
        (Method::GET, format!("{docs}/a?depth=99"), None, "invalid_query"),
        (Method::GET, format!("{docs}/a?meta=maybe"), None, "invalid_query"),
        (Method::GET, format!("/v1/spaces/{unknown}/docs/a"), None, "unknown_space"),
        (Method::PUT, format!("{docs}/a"), Some("{\"name\": "), "invalid_json"),
        (Method::PUT, format!("{docs}/a"), Some("[1, 2]"), "invalid_document"),
        (Method::PUT, format!("{docs}/a"), Some(r#"{"list": [1, 2]}"#), "invalid_value"),
        (
            Method::PUT,
            format!("{docs}/a"),
            Some(r#"{"file": {"/": "not-a-cid"}}"#),
            "invalid_value",
        ),
        (Method::PUT, format!("{docs}//a"), Some(r#"{"x": 1}"#), "invalid_key"),
        (Method::PUT, format!("{docs}/a"), Some(too_big.as_str()), "payload_too_large"),
        (Method::PUT, format!("/v1/spaces/{unknown}/docs/a"), Some(r#"{"x": 1}"#), "unknown_space"),
        (Method::DELETE, format!("{docs}/users/nobody"), None, "doc_not_found"),
        (Method::DELETE, "/v1/spaces/zz/docs/a".into(), None, "invalid_space"),
        (Method::GET, format!("/v1/spaces/{unknown}/events"), None, "unknown_space"),
        (Method::GET, format!("/v1/spaces/{space}/events?since=-1"), None, "invalid_query"),
        (Method::GET, "/v1/spaces/nope/events".into(), None, "invalid_space"),
        (Method::GET, "/v1/blobs/not-a-cid".into(), None, "invalid_cid"),
        (
            Method::GET,
            "/v1/blobs/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG".into(),
            None,
            "invalid_cid",
        ),
        (Method::GET, format!("/v1/blobs/{missing_cid}"), None, "blob_not_found"),
        (Method::DELETE, format!("/v1/blobs/{missing_cid}"), None, "blob_not_found"),
        (Method::DELETE, "/v1/blobs/bafy".into(), None, "invalid_cid"),
    ];
    for (method, uri, body, expected) in cases {
        let answer = match body {
            Some(body) => fixture.raw(method.clone(), &uri, body).await,
            None => fixture.call(method.clone(), &uri, None).await,
        };
        let code = answer.assert_client_error(&format!("{method} {uri}"));
        assert_eq!(code, expected, "{method} {uri}");
        assert!(answer.content_type.starts_with("application/json"), "{method} {uri}");
    }
    // A blob over `blobs.max_blob_size`, declared or not.
    let request = fixture
        .request(Method::POST, "/v1/blobs")
        .body(Body::from(vec![7u8; 1024 * 1024 + 1]))
        .unwrap();
    assert_eq!(fixture.send(request).await.assert_client_error("big blob"), "blob_too_large");
    let chunks = futures::stream::iter(
        (0..17).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![1u8; 64 * 1024]))),
    );
    let request =
        fixture.request(Method::POST, "/v1/blobs").body(Body::from_stream(chunks)).unwrap();
    assert_eq!(
        fixture.send(request).await.assert_client_error("streamed big blob"),
        "blob_too_large"
    );
    // HEAD of a bad CID or a missing blob: a 4xx without a body.
    let answer = fixture.call(Method::HEAD, "/v1/blobs/nope", None).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let answer = fixture.call(Method::HEAD, &format!("/v1/blobs/{missing_cid}"), None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    // A body without a JSON content type.
    let request = fixture
        .request(Method::POST, "/v1/spaces")
        .body(Body::from(r#"{"mode": "open"}"#))
        .unwrap();
    let answer = fixture.send(request).await;
    assert_eq!(answer.assert_client_error("no content type"), "unsupported_media_type");
    // A Last-Event-ID that is not a number.
    let request = fixture
        .request(Method::GET, &format!("/v1/spaces/{space}/events"))
        .header("Last-Event-ID", "yesterday")
        .body(Body::empty())
        .unwrap();
    let answer = fixture.send(request).await;
    assert_eq!(answer.assert_client_error("Last-Event-ID"), "invalid_last_event_id");
    // A `since` beyond the documented maximum, with or without a Last-Event-ID.
    for last_event_id in [None, Some("0")] {
        let mut request = fixture
            .request(Method::GET, &format!("/v1/spaces/{space}/events?since=9223372036854775808"));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let answer = fixture.send(request.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.assert_client_error("since over the maximum"), "invalid_since");
    }
    // And a Last-Event-ID beyond it.
    let request = fixture
        .request(Method::GET, &format!("/v1/spaces/{space}/events?since=0"))
        .header("Last-Event-ID", "9223372036854775808")
        .body(Body::empty())
        .unwrap();
    let answer = fixture.send(request).await;
    assert_eq!(
        answer.assert_client_error("Last-Event-ID over the maximum"),
        "invalid_last_event_id"
    );
    fixture.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn documents_round_trip_with_links_meta_paging_and_delete() {
    let fixture = fixture().await;
    let space = fixture.create_space("open").await;
    let docs = format!("/v1/spaces/{space}/docs");
    let put = fixture
        .call(
            Method::PUT,
            &format!("{docs}/users/alice"),
            Some(json!({"name": "Alice", "age": 30, "address": {"city": "Lyon"}, "friend": {"#": "users/bob"}})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", String::from_utf8_lossy(&put.body));
    assert_eq!(put.json()["changed"], 5);
    let alice = fixture.call(Method::GET, &format!("{docs}/users/alice"), None).await.json();
    assert_eq!(alice["name"], "Alice");
    assert_eq!(alice["address"], json!({"#": "users/alice/address"}));
    let deep = fixture.call(Method::GET, &format!("{docs}/users/alice?depth=1"), None).await.json();
    assert_eq!(deep["address"]["city"], "Lyon");
    let meta =
        fixture.call(Method::GET, &format!("{docs}/users/alice?meta=true"), None).await.json();
    let identity = fixture.call(Method::GET, "/v1/identity", None).await.json();
    assert_eq!(meta["name"]["value"], "Alice");
    assert_eq!(meta["name"]["author"], identity["author"]);
    assert!(meta["name"]["hlc"].as_str().unwrap().contains('.'));
    // Merge and delete a field with null.
    fixture
        .call(Method::PUT, &format!("{docs}/users/alice"), Some(json!({"age": null, "x": 1})))
        .await;
    let alice = fixture.call(Method::GET, &format!("{docs}/users/alice"), None).await.json();
    assert!(alice.get("age").is_none() && alice["x"] == 1 && alice["name"] == "Alice", "{alice}");
    for key in ["users/bob", "users/carol", "posts/1"] {
        let answer =
            fixture.call(Method::PUT, &format!("{docs}/{key}"), Some(json!({"k": key}))).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let page =
        fixture.call(Method::GET, &format!("{docs}?prefix=users/&limit=2"), None).await.json();
    assert_eq!(page["keys"], json!(["users/alice", "users/alice/address"]));
    let next = page["next"].as_str().unwrap();
    let page = fixture
        .call(Method::GET, &format!("{docs}?prefix=users/&limit=2&after={next}"), None)
        .await
        .json();
    assert_eq!(page["keys"], json!(["users/bob", "users/carol"]));
    let deleted = fixture.call(Method::DELETE, &format!("{docs}/users/bob"), None).await;
    assert_eq!(deleted.json()["deleted"], 1);
    let gone = fixture.call(Method::GET, &format!("{docs}/users/bob"), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let spaces = fixture.call(Method::GET, "/v1/spaces", None).await.json();
    assert_eq!(spaces[0]["id"], space.as_str());
    assert_eq!(spaces[0]["mode"], "open");
    assert_eq!(spaces[0]["owned"], true);
    fixture.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn restricted_space_grants_are_signed_and_stored() {
    let fixture = fixture().await;
    let space = fixture.create_space("restricted").await;
    // The node author holds admin from creation, so its own writes go through.
    let put = fixture
        .call(Method::PUT, &format!("/v1/spaces/{space}/docs/a"), Some(json!({"x": 1})))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", String::from_utf8_lossy(&put.body));
    let other = cosmic_auth::AuthorKey::generate().public().to_string();
    let answer = fixture
        .call(
            Method::POST,
            &format!("/v1/spaces/{space}/grants"),
            Some(json!({"author": other, "rights": "write", "expires": "2100-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&answer.body));
    let grant = answer.json();
    assert_eq!(grant["author"], other.as_str());
    assert_eq!(grant["issuer"], space.as_str());
    assert_eq!(grant["expires"], 4_102_444_800_000u64);
    let id: cosmic_auth::SpaceId = space.parse().unwrap();
    assert_eq!(fixture.node.store().statements(&id).unwrap().len(), 2);
    fixture.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn revocations_end_rights_from_now_and_need_the_space_key_or_admin() {
    let fixture = fixture().await;
    let space = fixture.create_space("restricted").await;
    let other = cosmic_auth::AuthorKey::generate().public();
    let grants = format!("/v1/spaces/{space}/grants");
    let granted = fixture
        .call(Method::POST, &grants, Some(json!({"author": other, "rights": "write"})))
        .await;
    assert_eq!(granted.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&granted.body));
    let revocations = format!("/v1/spaces/{space}/revocations");
    let answer = fixture.call(Method::POST, &revocations, Some(json!({"author": other}))).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&answer.body));
    let revocation = answer.json();
    assert_eq!(revocation["author"], other.to_string());
    assert_eq!(revocation["issuer"], space.as_str());
    assert_eq!(revocation["sealed"], true, "sealed unless asked otherwise");
    assert_eq!(revocation["kept"], 0, "the author wrote nothing");
    assert!(
        revocation["issued_at"].as_u64().unwrap() >= granted.json()["issued_at"].as_u64().unwrap()
    );
    let id: cosmic_auth::SpaceId = space.parse().unwrap();
    let statements = fixture.node.store().statements(&id).unwrap();
    assert_eq!(statements.len(), 3);
    let right = |at| {
        cosmic_auth::check_access(
            &id,
            cosmic_auth::SpaceMode::Restricted,
            &other,
            cosmic_auth::Right::Write,
            at,
            &statements,
        )
    };
    let issued_at = cosmic_auth::Timestamp(revocation["issued_at"].as_u64().unwrap());
    assert!(right(cosmic_auth::Timestamp(issued_at.0 + 1)).is_err(), "revoked from now on");
    // Bad input: no author, a malformed one.
    let bad = fixture.call(Method::POST, &revocations, Some(json!({"author": "nobody"}))).await;
    assert_eq!(bad.assert_client_error("a malformed author id"), "invalid_author");
    let bad = fixture.call(Method::POST, &revocations, Some(json!({}))).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "no author: not the documented shape");
    assert_eq!(fixture.node.store().statements(&id).unwrap().len(), 3);
    // A node with neither the space key nor admin may not revoke.
    let foreign = cosmic_auth::SpaceKey::generate();
    let store = fixture.node.store();
    let foreign = store.create_space(&foreign, cosmic_auth::SpaceMode::Restricted).unwrap().space;
    let path = format!("/v1/spaces/{foreign}/revocations");
    let answer = fixture.call(Method::POST, &path, Some(json!({"author": other}))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.assert_client_error("a revocation by a non-admin"), "forbidden");
    assert!(store.statements(&foreign).unwrap().is_empty());
    fixture.node.shutdown().await.unwrap();
}

/// Grants `user` write on `space` through the API (until `expires`, Unix ms, if any);
/// returns the grant's `issued_at`.
async fn grant_write(
    fixture: &Fixture,
    space: &str,
    user: &cosmic_auth::AuthorKey,
    expires: Option<u64>,
) -> u64 {
    let mut body = json!({"author": user.public(), "rights": "write"});
    if let Some(expires) = expires {
        body["expires"] = json!(expires);
    }
    let granted =
        fixture.call(Method::POST, &format!("/v1/spaces/{space}/grants"), Some(body)).await;
    assert_eq!(granted.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&granted.body));
    granted.json()["issued_at"].as_u64().unwrap()
}

/// Posts one entry signed by `user` (field `field` of document `notes`, dated `millis`)
/// to `POST /v1/spaces/{space}/entries`; the answer and the entry.
async fn post_signed(
    fixture: &Fixture,
    user: &cosmic_auth::AuthorKey,
    space: cosmic_auth::SpaceId,
    field: &str,
    millis: u64,
) -> (Answer, cosmic_store::Entry) {
    let hlc = cosmic_store::Hlc::new(millis, 0);
    let value = cosmic_store::Value::Int(1);
    let entry = cosmic_store::Entry::sign(user, space, "notes", field, value, hlc).unwrap();
    let body = json!({"entries": [data_encoding::BASE64.encode(&entry.encode())]});
    (fixture.call(Method::POST, &format!("/v1/spaces/{space}/entries"), Some(body)).await, entry)
}

#[tokio::test]
async fn a_sealed_revocation_keeps_what_the_node_held_and_refuses_entries_dated_back() {
    let fixture = fixture().await;
    let space = fixture.create_space("restricted").await;
    let id: cosmic_auth::SpaceId = space.parse().unwrap();
    let user = cosmic_auth::AuthorKey::generate();
    let granted_at = grant_write(&fixture, &space, &user, None).await;
    let (answer, kept) = post_signed(&fixture, &user, id, "before", granted_at + 1).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
    // Revocations count from the millisecond they are issued: let one pass.
    tokio::time::sleep(Duration::from_millis(5)).await;

    let revocations = format!("/v1/spaces/{space}/revocations");
    let answer =
        fixture.call(Method::POST, &revocations, Some(json!({"author": user.public()}))).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&answer.body));
    let revocation = answer.json();
    assert_eq!(revocation["sealed"], true);
    assert_eq!(revocation["kept"], 1);
    let issued_at = revocation["issued_at"].as_u64().unwrap();
    assert!(issued_at > granted_at + 1);

    // Dated back to just after the grant: refused with the reason, counted, not stored.
    let (answer, _) = post_signed(&fixture, &user, id, "after", granted_at + 1).await;
    assert_eq!(answer.assert_client_error("an entry dated back"), "forbidden");
    let message = answer.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("not kept by the sealed revocation"), "{message}");
    let store = fixture.node.store();
    assert!(store.get_entry(&id, "notes", "after").unwrap().is_none());
    assert_eq!(store.get_entry(&id, "notes", "before").unwrap(), Some(kept));
    assert_eq!(store.refusals().revoked, 1);
    let metrics = fixture.call(Method::GET, "/metrics", None).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(text.contains("cosmic_entries_refused_total{reason=\"revoked\"} 1"), "{text}");
    assert!(text.contains("cosmic_entries_cut_off_total 0"), "{text}");

    // Unsealed on request: it ends the rights from now on and keeps no list.
    let other = cosmic_auth::AuthorKey::generate().public();
    let body = json!({"author": other, "sealed": false});
    let answer = fixture.call(Method::POST, &revocations, Some(body)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json()["sealed"], false);
    assert_eq!(answer.json()["kept"], 0);
    fixture.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_revocation_too_large_to_seal_is_refused_whole_and_may_be_made_unsealed() {
    let fixture = fixture().await;
    let space = fixture.create_space("restricted").await;
    let id: cosmic_auth::SpaceId = space.parse().unwrap();
    let user = cosmic_auth::AuthorKey::generate();
    let at = grant_write(&fixture, &space, &user, None).await + 1;
    // One entry more than a sealed revocation may keep.
    let entries: Vec<cosmic_store::Entry> = (0..=cosmic_auth::MAX_KEPT)
        .map(|n| {
            let hlc = cosmic_store::Hlc::new(at, 0);
            let value = cosmic_store::Value::Int(1);
            let field = format!("f{n}");
            cosmic_store::Entry::sign(&user, id, "notes", &field, value, hlc).unwrap()
        })
        .collect();
    let store = fixture.node.store();
    for result in store.insert_batch(entries).unwrap() {
        result.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let revocations = format!("/v1/spaces/{space}/revocations");
    let body = json!({"author": user.public()});
    let answer = fixture.call(Method::POST, &revocations, Some(body)).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.assert_client_error("a seal over the limit"), "too_many_kept");
    let message = answer.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("16385 entries, at most 16384 fit"), "{message}");
    assert_eq!(store.statements(&id).unwrap().len(), 2, "nothing stored");
    let body = json!({"author": user.public(), "sealed": false});
    let answer = fixture.call(Method::POST, &revocations, Some(body)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json()["sealed"], false);
    fixture.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_expired_grant_is_sealed_so_entries_dated_back_into_it_are_refused() {
    let fixture = fixture().await;
    let space = fixture.create_space("restricted").await;
    let id: cosmic_auth::SpaceId = space.parse().unwrap();
    let user = cosmic_auth::AuthorKey::generate();
    let expires = cosmic_auth::Timestamp::now().0 + 300;
    let granted_at = grant_write(&fixture, &space, &user, Some(expires)).await;
    let (answer, _) = post_signed(&fixture, &user, id, "inside", granted_at + 1).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
    // Nothing to seal before the expiry.
    let spaces = fixture.node.spaces();
    let seal = || spaces.seal_expired();
    assert_eq!(seal().await.unwrap(), 0);
    assert_eq!(spaces.next_expiry().await.unwrap(), Some(cosmic_auth::Timestamp(expires + 1)));
    // At the expiry the node's own task seals it (told of the grant when it was issued),
    // keeping the entry written inside the window.
    let store = fixture.node.store();
    let sealed = || {
        store.statements(&id).unwrap().iter().any(|signed| {
            matches!(signed.statement(), cosmic_auth::Statement::Revoke(revocation)
                if revocation.subject == user.public() && revocation.kept.is_some())
        })
    };
    let started = std::time::Instant::now();
    while !sealed() {
        assert!(started.elapsed() < Duration::from_secs(10), "the expiry was not sealed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cosmic_auth::Timestamp::now().0 > expires, "sealed before the expiry");
    assert_eq!(seal().await.unwrap(), 0, "sealed once only");
    assert_eq!(spaces.next_expiry().await.unwrap(), None);
    assert!(store.get_entry(&id, "notes", "inside").unwrap().is_some());
    // A new entry dated back into the window is refused, with the reason.
    let (answer, _) = post_signed(&fixture, &user, id, "dated-back", expires - 1).await;
    assert_eq!(
        answer.assert_client_error("an entry dated back into an expired grant"),
        "forbidden"
    );
    let message = answer.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("not kept by the sealed revocation"), "{message}");
    assert!(store.get_entry(&id, "notes", "dated-back").unwrap().is_none());
    fixture.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn grants_by_a_node_that_is_not_admin_are_forbidden_and_not_stored() {
    let fixture = fixture().await;
    // A restricted space this node holds the record of, but neither its key nor admin.
    let foreign = cosmic_auth::SpaceKey::generate();
    let store = fixture.node.store();
    let space = store.create_space(&foreign, cosmic_auth::SpaceMode::Restricted).unwrap().space;
    let other = cosmic_auth::AuthorKey::generate().public().to_string();
    let answer = fixture
        .call(
            Method::POST,
            &format!("/v1/spaces/{space}/grants"),
            Some(json!({"author": other, "rights": "write"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.assert_client_error("a grant by a non-admin"), "forbidden");
    assert!(store.statements(&space).unwrap().is_empty());
    // The store's own refusal of a powerless statement maps to the same answer.
    let author = &fixture.node.shared.authors.node;
    let powerless = author.grant(
        space,
        author.public(),
        cosmic_auth::Right::Admin,
        cosmic_auth::Timestamp::now(),
        None,
    );
    let refused = store.insert_statement(&powerless).unwrap_err();
    assert!(matches!(refused, cosmic_store::Error::UnauthorizedStatement { .. }), "{refused}");
    let api_error = super::error::ApiError::from(crate::error::Error::Store(refused));
    assert_eq!((api_error.status, api_error.code), (StatusCode::FORBIDDEN, "forbidden"));
    assert!(api_error.message.contains("may not issue"), "{}", api_error.message);
    assert!(store.statements(&space).unwrap().is_empty());
    fixture.node.shutdown().await.unwrap();
}

/// Reads SSE events from a body until `count` change events arrived, bounded in time.
async fn read_events(body: Body, count: usize) -> Vec<(u64, Value)> {
    let mut stream = body.into_data_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while events.len() < count {
            let chunk = stream.next().await.expect("stream open").expect("chunk");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let id = block.lines().find_map(|line| line.strip_prefix("id: "));
                let data = block.lines().find_map(|line| line.strip_prefix("data: "));
                if let (Some(id), Some(data)) = (id, data) {
                    events.push((id.parse().unwrap(), serde_json::from_str(data).unwrap()));
                }
            }
        }
    })
    .await
    .expect("events in time");
    events
}

#[tokio::test]
async fn event_stream_replays_follows_and_resumes_without_gap_or_duplicate() {
    let fixture = fixture().await;
    let space = fixture.create_space("open").await;
    let docs = format!("/v1/spaces/{space}/docs");
    fixture.call(Method::PUT, &format!("{docs}/a"), Some(json!({"n": 1}))).await;
    let request = fixture
        .request(Method::GET, &format!("/v1/spaces/{space}/events"))
        .body(Body::empty())
        .unwrap();
    let response = fixture.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/event-stream")
    );
    let writer = {
        let fixture_app = fixture.app.clone();
        let token = fixture.token.clone();
        let docs = docs.clone();
        tokio::spawn(async move {
            for n in 2..=3 {
                let request = Request::builder()
                    .method(Method::PUT)
                    .uri(format!("{docs}/b"))
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(json!({"n": n}).to_string()))
                    .unwrap();
                let response = fixture_app.clone().oneshot(request).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
            }
        })
    };
    let events = read_events(response.into_body(), 3).await;
    writer.await.unwrap();
    let identity = fixture.call(Method::GET, "/v1/identity", None).await.json();
    assert_eq!(events[0].1["doc"], "a");
    assert_eq!(events[0].1["field"], "n");
    assert_eq!(events[0].1["value"], 1);
    assert_eq!(events[0].1["author"], identity["author"]);
    assert_eq!(events[0].1["origin"], "local");
    assert_eq!(events[2].1["value"], 3);
    let ids: Vec<u64> = events.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    // Resume after the first event: a write made while disconnected arrives, nothing twice.
    fixture.call(Method::PUT, &format!("{docs}/c"), Some(json!({"n": 4}))).await;
    let request = fixture
        .request(Method::GET, &format!("/v1/spaces/{space}/events"))
        .header("Last-Event-ID", ids[0].to_string())
        .body(Body::empty())
        .unwrap();
    let response = fixture.app.clone().oneshot(request).await.unwrap();
    let resumed = read_events(response.into_body(), 2).await;
    // `b` was written twice: only its winning change is kept, then `c`.
    assert_eq!(resumed[0].1["doc"], "b");
    assert_eq!(resumed[0].1["value"], 3);
    assert_eq!(resumed[1].1["doc"], "c");
    assert!(resumed[0].0 > ids[0]);
    let request = fixture
        .request(Method::GET, &format!("/v1/spaces/{space}/events?since={}", resumed[0].0))
        .body(Body::empty())
        .unwrap();
    let response = fixture.app.clone().oneshot(request).await.unwrap();
    let since = read_events(response.into_body(), 1).await;
    assert_eq!(since[0].1["doc"], "c");
    fixture.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn status_openapi_and_metrics_answer() {
    let fixture = fixture().await;
    let health = fixture.send(Request::get("/v1/health").body(Body::empty()).unwrap()).await;
    assert_eq!(health.json()["status"], "ok");
    let status = fixture.call(Method::GET, "/v1/status", None).await.json();
    assert_eq!(status["peer_id"], fixture.node.peer_id().to_string());
    assert!(status["listen"][0].as_str().unwrap().starts_with("/ip4/127.0.0.1/tcp/"));
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["clock_correction_ms"], 0, "no peer has moved the clock");
    let openapi = fixture.call(Method::GET, "/v1/openapi.json", None).await.json();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    assert!(openapi["paths"]["/v1/spaces/{space}/docs/{key}"]["put"].is_object());
    let metrics = fixture.call(Method::GET, "/metrics", None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = String::from_utf8(metrics.body).unwrap();
    for name in [
        "cosmic_http_requests_total",
        "cosmic_http_request_duration_seconds_bucket",
        "cosmic_peers_connected",
        "cosmic_store_entries",
        "cosmic_sync_sessions_total",
        "cosmic_sync_bytes_total",
        "cosmic_gossip_messages_total",
        "cosmic_gossip_lost_total{reason=\"inbound_queue_full\"} 0",
        "cosmic_gossip_lost_total{reason=\"send_queue_full\"} 0",
        "cosmic_gossip_lost_total{reason=\"publish_failed\"} 0",
        "cosmic_gossip_lost_total{reason=\"sequence_gap\"} 0",
        "cosmic_gossip_loss_repairs_total 0",
        "cosmic_reads_refused_total 0",
        "cosmic_bindings_refused_total 0",
        "cosmic_gossip_entries_total",
        "cosmic_gossip_batches_published_total",
        "cosmic_net_requests_refused_busy_total 0",
        "cosmic_blob_bytes",
        "cosmic_clock_correction_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.contains(r#"route="/v1/status""#), "{text}");
    fixture.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn blobs_upload_stream_download_with_ranges_and_unpin() {
    let fixture = fixture().await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        data.chunks(10_000).map(|chunk| Ok(bytes::Bytes::copy_from_slice(chunk))).collect();
    let request = fixture
        .request(Method::POST, "/v1/blobs")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let added = fixture.send(request).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&added.body));
    let added = added.json();
    let cid = cosmic_blobs::Cid::of_bytes(&data).to_string();
    assert_eq!(added["cid"], cid.as_str());
    assert_eq!(added["size"], data.len());
    let whole = fixture.call(Method::GET, &format!("/v1/blobs/{cid}"), None).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert!(whole.body == data, "downloaded bytes differ");
    let request = fixture
        .request(Method::GET, &format!("/v1/blobs/{cid}"))
        .header(header::RANGE, "bytes=1000-1999")
        .body(Body::empty())
        .unwrap();
    let response = fixture.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes 1000-1999/300000");
    let part = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    assert_eq!(&part[..], &data[1000..2000]);
    let request = fixture
        .request(Method::GET, &format!("/v1/blobs/{cid}"))
        .header(header::RANGE, "bytes=400000-")
        .body(Body::empty())
        .unwrap();
    let response = fixture.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes */300000");
    let request =
        fixture.request(Method::HEAD, &format!("/v1/blobs/{cid}")).body(Body::empty()).unwrap();
    let response = fixture.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_LENGTH], "300000");
    let unpinned = fixture.call(Method::DELETE, &format!("/v1/blobs/{cid}"), None).await;
    assert_eq!(unpinned.json()["unpinned"], true);
    let metrics = fixture.call(Method::GET, "/metrics", None).await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(text.contains(r#"cosmic_blob_bytes_total{direction="in"} 300000"#), "{text}");
    fixture.node.shutdown().await.unwrap();
}

/// The status codes the OpenAPI document lists for one operation.
fn documented_statuses(document: &Value, path: &str, method: &Method) -> BTreeSet<u16> {
    let operation = &document["paths"][path][method.as_str().to_lowercase()];
    let responses = operation["responses"].as_object();
    let responses = responses.unwrap_or_else(|| panic!("{method} {path} is not documented"));
    responses.keys().map(|status| status.parse().unwrap()).collect()
}

/// Found by fuzzing from the document: the 401 of a missing token, the 413/415/422 of a
/// refused JSON body and the 400 of a malformed path parameter were answered but not
/// documented, so clients generated from the document could not expect them.
#[tokio::test]
async fn every_status_the_router_answers_is_in_the_document() {
    let fixture = fixture().await;
    let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let space = fixture.create_space("open").await;
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ALL_METHODS {
            if item.get(method.as_str().to_lowercase()).is_none() {
                continue;
            }
            let statuses = documented_statuses(&document, path, &method);
            let uri = sample_uri(path, &space);
            let mut answers = Vec::new();
            // No token.
            let request = Request::builder().method(method.clone()).uri(&uri);
            answers.push(("no token", fixture.send(request.body(Body::empty()).unwrap()).await));
            let takes_json = item[method.as_str().to_lowercase()]["requestBody"]["content"]
                .get("application/json")
                .is_some();
            if takes_json {
                let request = fixture.request(method.clone(), &uri).body(Body::from("{}"));
                answers.push(("no content type", fixture.send(request.unwrap()).await));
                answers.push(("not JSON", fixture.raw(method.clone(), &uri, "{").await));
                answers.push(("wrong shape", fixture.raw(method.clone(), &uri, "[1]").await));
                let big = format!("{{\"x\": \"{}\"}}", "a".repeat(100 * 1024));
                answers.push(("too large", fixture.raw(method.clone(), &uri, &big).await));
            }
            if path.contains('{') {
                let bad = path
                    .replace("{space}", "not-a-space")
                    .replace("{key}", "a//b")
                    .replace("{cid}", "not-a-cid");
                let answer = fixture.call(method.clone(), &bad, None).await;
                assert!(answer.status.is_client_error(), "{method} {bad}: {}", answer.status);
                answers.push(("malformed path", answer));
            }
            for (what, answer) in answers {
                assert!(
                    statuses.contains(&answer.status.as_u16()),
                    "{method} {path} ({what}) answered {} but documents only {statuses:?}",
                    answer.status
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "only {checked} answers checked");
    fixture.node.shutdown().await.unwrap();
}

/// Found by fuzzing: the document said `text/plain` while `/metrics` answers OpenMetrics.
#[tokio::test]
async fn metrics_content_type_is_the_documented_one() {
    let fixture = fixture().await;
    let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let content = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        .as_object()
        .unwrap()
        .clone();
    let answer = fixture.call(Method::GET, "/metrics", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    let media_type = answer.content_type.split(';').next().unwrap().trim();
    assert!(content.contains_key(media_type), "{media_type} not in {content:?}");
    fixture.node.shutdown().await.unwrap();
}

/// Found by fuzzing: `POST /v1/blobs` without a body stores the empty blob, so the
/// document must not call the body required.
#[tokio::test]
async fn an_empty_upload_is_the_documented_empty_blob() {
    let fixture = fixture().await;
    let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let body = &document["paths"]["/v1/blobs"]["post"]["requestBody"];
    assert_ne!(body["required"], json!(true), "{body}");
    let answer =
        fixture.send(fixture.request(Method::POST, "/v1/blobs").body(Body::empty()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.json()["size"], 0);
    fixture.node.shutdown().await.unwrap();
}

/// Found by fuzzing: `limit` and `depth` were documented as any integer while the router
/// refuses values outside 1..=1000 and 0..=16; the documented bounds are the enforced ones.
#[tokio::test]
async fn documented_query_bounds_are_the_enforced_ones() {
    let fixture = fixture().await;
    let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let space = fixture.create_space("open").await;
    let answer = fixture
        .call(Method::PUT, &format!("/v1/spaces/{space}/docs/a"), Some(json!({"x": 1})))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let bounds = |path: &str, name: &str| {
        let parameters = document["paths"][path]["get"]["parameters"].as_array().unwrap();
        let parameter = parameters.iter().find(|parameter| parameter["name"] == name).unwrap();
        let schema = &parameter["schema"];
        (schema["minimum"].as_u64().unwrap(), schema["maximum"].as_u64().unwrap())
    };
    for (path, name, uri) in [
        ("/v1/spaces/{space}/docs", "limit", format!("/v1/spaces/{space}/docs?limit=")),
        ("/v1/spaces/{space}/docs/{key}", "depth", format!("/v1/spaces/{space}/docs/a?depth=")),
    ] {
        let (min, max) = bounds(path, name);
        for value in [min, max] {
            let answer = fixture.call(Method::GET, &format!("{uri}{value}"), None).await;
            assert_eq!(answer.status, StatusCode::OK, "{name}={value}");
        }
        let mut outside = vec![max + 1];
        if min > 0 {
            outside.push(min - 1);
        }
        for value in outside {
            let answer = fixture.call(Method::GET, &format!("{uri}{value}"), None).await;
            assert_eq!(answer.assert_client_error(name), "invalid_query", "{name}={value}");
        }
    }
    fixture.node.shutdown().await.unwrap();
}

/// Found by fuzzing: 52 base32 characters are not always a space id, as the last one
/// carries a single bit; the document's pattern says so and the router agrees.
#[tokio::test]
async fn space_ids_end_in_a_or_q_as_documented() {
    let fixture = fixture().await;
    let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let parameters =
        document["paths"]["/v1/spaces/{space}/docs"]["get"]["parameters"].as_array().unwrap();
    let space_parameter = parameters.iter().find(|parameter| parameter["name"] == "space");
    assert_eq!(space_parameter.unwrap()["schema"]["pattern"], super::KEY_ID_PATTERN);
    for _ in 0..32 {
        let id = cosmic_auth::SpaceKey::generate().id().to_string();
        assert_eq!(id.len(), 52);
        assert!(id.ends_with('a') || id.ends_with('q'), "{id}");
    }
    let space = fixture.create_space("open").await;
    let mut other = space.clone();
    other.pop();
    other.push('b');
    let answer = fixture.call(Method::GET, &format!("/v1/spaces/{other}/docs"), None).await;
    assert_eq!(answer.assert_client_error("trailing bits"), "invalid_space");
    fixture.node.shutdown().await.unwrap();
}

/// Ids, document keys and CIDs carry custom formats (their pattern cannot say "an ed25519
/// point", "at most 512 bytes" or "a BLAKE3 multihash"), so a fuzzer can be given generators of valid ones; the textual
/// expiry is a standard `date-time`.
#[test]
fn hard_parameters_have_formats() {
    let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let path_format = |path: &str, method: &str, name: &str| {
        let parameters = document["paths"][path][method]["parameters"].as_array().unwrap();
        let parameter = parameters.iter().find(|parameter| parameter["name"] == name).unwrap();
        parameter["schema"]["format"].as_str().unwrap().to_owned()
    };
    assert_eq!(path_format("/v1/spaces/{space}/grants", "post", "space"), super::SPACE_ID_FORMAT);
    assert_eq!(path_format("/v1/spaces/{space}/docs/{key}", "put", "space"), "cosmic-space-id");
    assert_eq!(path_format("/v1/spaces/{space}/docs/{key}", "get", "key"), "cosmic-doc-key");
    assert_eq!(path_format("/v1/blobs/{cid}", "get", "cid"), "cosmic-cid");
    let schemas = &document["components"]["schemas"];
    let author = &schemas["GrantRequest"]["properties"]["author"];
    assert_eq!(author["format"], "cosmic-author-id");
    assert_eq!(author["pattern"], super::KEY_ID_PATTERN);
    let texts: Vec<&Value> = schemas["Expiry"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|variant| variant["type"] == "string")
        .collect();
    assert_eq!(texts.len(), 1);
    assert_eq!(texts[0]["format"], "date-time");
}

#[test]
fn rfc3339_times_parse_with_any_offset_and_before_1970() {
    use super::handlers::parse_rfc3339;
    for (text, millis) in [
        ("1970-01-01T00:00:00Z", 0),
        ("2100-01-01T00:00:00Z", 4_102_444_800_000),
        ("2027-01-01T01:00:00+01:00", 1_798_761_600_000),
        ("2026-12-31t23:30:00-00:30", 1_798_761_600_000),
        ("2026-12-31 19:00:00.5-05:00", 1_798_761_600_500),
        ("2027-01-01T00:00:00.123456789z", 1_798_761_600_123),
        ("1969-12-31T23:59:59.999Z", -1),
        ("2024-02-29T00:00:00Z", 1_709_164_800_000),
        // A leap second is the last instant of the second before it.
        ("1998-12-31T23:59:60Z", 915_148_799_999),
        ("0000-01-01T00:00:00Z", -62_167_219_200_000),
    ] {
        assert_eq!(parse_rfc3339(text), Ok(millis), "{text}");
    }
    for text in [
        "",
        "soon",
        "2027-01-01",
        "2027-01-01T00:00:00",
        "2027-13-01T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2027-01-01T24:00:00Z",
        "2027-01-01T00:00:00.Z",
        "2027-01-01T00:00:00+1:00",
        "2027-01-01T00:00:00+24:00",
        "2027-01-01T00:00:00+01:60",
        "+027-01-01T00:00:00Z",
        "2027-01-01T00:00:00+0100",
        "2027-01-01T00:00:00+01:00z",
    ] {
        assert!(parse_rfc3339(text).is_err(), "{text:?}");
    }
}

/// Found by fuzzing with valid inputs: an expiry with an offset other than `Z`, or before
/// 1970, is an RFC 3339 time as documented, and was refused; milliseconds beyond `int64`
/// were taken though the document bounds them.
#[tokio::test]
async fn grants_take_any_rfc3339_expiry() {
    let fixture = fixture().await;
    let space = fixture.create_space("open").await;
    let other = cosmic_auth::AuthorKey::generate().public().to_string();
    for (expires, millis) in
        [("2027-01-01T01:00:00+01:00", 1_798_761_600_000u64), ("1969-07-20T20:17:40Z", 0)]
    {
        let answer = fixture
            .call(
                Method::POST,
                &format!("/v1/spaces/{space}/grants"),
                Some(json!({"author": other, "rights": "read", "expires": expires})),
            )
            .await;
        let body = String::from_utf8_lossy(&answer.body).into_owned();
        assert_eq!(answer.status, StatusCode::CREATED, "{expires}: {body}");
        assert_eq!(answer.json()["expires"], millis, "{expires}");
    }
    // Found by fuzzing: milliseconds are documented as `int64`, and 2^63 was taken.
    let grant = |expires: u64| json!({"author": other, "rights": "read", "expires": expires});
    let uri = format!("/v1/spaces/{space}/grants");
    let largest = fixture.call(Method::POST, &uri, Some(grant(i64::MAX as u64))).await;
    assert_eq!(largest.status, StatusCode::CREATED);
    let beyond = fixture.call(Method::POST, &uri, Some(grant(1 << 63))).await;
    assert_eq!(beyond.assert_client_error("expires 2^63"), "invalid_expires");
    fixture.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn eventual_durability_from_the_config_keeps_writes_across_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.store.durability = cosmic_config::Durability::Eventual;
    config.store.cache_size = 1024 * 1024;
    let node = Node::start(config.clone()).await.unwrap();
    assert_eq!(node.shared.store.options().durability, cosmic_store::Durability::Eventual);
    assert_eq!(node.shared.store.options().cache_size, Some(1024 * 1024));
    let fixture = Fixture::around(node, dir);
    let space = fixture.create_space("open").await;
    let path = format!("/v1/spaces/{space}/docs/note");
    let put = fixture.call(Method::PUT, &path, Some(json!({"text": "kept"}))).await;
    assert!(put.status.is_success(), "{}", String::from_utf8_lossy(&put.body));
    let Fixture { node, app, _dir: dir, .. } = fixture;
    drop(app);
    node.shutdown().await.unwrap();

    let node = Node::start(config).await.unwrap();
    let doc = node.shared.store.get_doc(&space.parse().unwrap(), "note").unwrap();
    assert!(doc.is_some(), "the write was lost in a clean restart");
    node.shutdown().await.unwrap();
    drop(dir);
}

/// Found by fuzzing with a space that exists: an event stream's schema (before OpenAPI 3.2)
/// is that of each event, `{id, event, data}`, and described the `data` instead; and a
/// change's value was documented as an object while it is any JSON value.
#[test]
fn the_event_stream_is_documented_event_by_event() {
    let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let response = &document["paths"]["/v1/spaces/{space}/events"]["get"]["responses"]["200"];
    let schema = &response["content"]["text/event-stream"]["schema"];
    let name = schema["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
    let frame = &document["components"]["schemas"][name];
    let variants = frame["oneOf"].as_array().unwrap();
    let change =
        variants.iter().find(|variant| variant["properties"]["event"]["enum"][0] == "message");
    let data = &change.unwrap()["properties"]["data"];
    assert_eq!(data["contentMediaType"], "application/json");
    assert_eq!(data["contentSchema"]["$ref"], "#/components/schemas/ChangeEvent");
    let required = document["components"]["schemas"]["ChangeEvent"]["required"].as_array().unwrap();
    assert!(required.contains(&json!("seq")), "{required:?}");
    assert!(variants.iter().any(|variant| variant["properties"]["event"]["enum"][0] == "error"));
    // A field's value is any JSON, not only an object.
    let value = &document["components"]["schemas"]["ChangeEvent"]["properties"]["value"];
    assert!(value.get("type").is_none(), "{value}");
}

/// Found by fuzzing: an optional header was documented as nullable, and a client that
/// believed it sent the text `null`; a header is absent or has a value.
#[test]
fn optional_headers_are_not_nullable() {
    let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let mut headers = 0;
    for item in document["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            let Some(parameters) = operation["parameters"].as_array() else { continue };
            for parameter in parameters.iter().filter(|parameter| parameter["in"] == "header") {
                headers += 1;
                let kind = &parameter["schema"]["type"];
                assert!(kind.is_string(), "{}: {kind}", parameter["name"]);
                assert_eq!(parameter["required"], false, "{}", parameter["name"]);
            }
        }
    }
    assert_eq!(headers, 2);
}

#[tokio::test]
async fn an_author_over_its_quota_gets_a_clear_403_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.store.author_quota = 64 * 1024;
    let node = Node::start(config).await.unwrap();
    assert_eq!(node.shared.store.options().author_quota, 64 * 1024);
    let fixture = Fixture::around(node, dir);
    let space = fixture.create_space("open").await;
    let text = "x".repeat(8 * 1024);
    let mut written = 0;
    let refused = loop {
        let path = format!("/v1/spaces/{space}/docs/note{written}");
        let answer = fixture.call(Method::PUT, &path, Some(json!({ "text": text }))).await;
        if !answer.status.is_success() {
            break answer;
        }
        written += 1;
        assert!(written < 20, "the quota never bit");
    };
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.assert_client_error("over the quota"), "quota_exceeded");
    let message = refused.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("quota of 65536 bytes"), "{message}");
    // What was acknowledged is all there; what was refused is not.
    for index in 0..written {
        let path = format!("/v1/spaces/{space}/docs/note{index}");
        assert_eq!(fixture.call(Method::GET, &path, None).await.status, StatusCode::OK);
    }
    let path = format!("/v1/spaces/{space}/docs/note{written}");
    assert_eq!(fixture.call(Method::GET, &path, None).await.status, StatusCode::NOT_FOUND);
    // Deleting makes room again.
    let first = format!("/v1/spaces/{space}/docs/note0");
    assert!(fixture.call(Method::DELETE, &first, None).await.status.is_success());
    let again = fixture.call(Method::PUT, &path, Some(json!({ "text": text }))).await;
    assert!(again.status.is_success(), "{}", String::from_utf8_lossy(&again.body));
    fixture.node.shutdown().await.unwrap();
}
