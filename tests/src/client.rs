//! A client of one node's HTTP API for tests, scenarios and benchmarks: JSON calls,
//! Server-Sent Events, and the crypto-provider detail reqwest needs.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::TestNode;

/// How long one HTTP call may take (a blob fetch between nodes included).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a scenario waits for something to happen on another node.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one node's API.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// A JSON answer.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body as JSON (`null` when it is not JSON).
    pub body: Value,
    /// The body as text.
    pub text: String,
}

impl Answer {
    /// Asserts a 4xx JSON error and returns its code.
    pub fn client_error(&self, what: &str) -> String {
        assert!(
            self.status.is_client_error(),
            "{what}: expected a 4xx, got {} {}",
            self.status,
            self.text
        );
        let code = self.body["error"]["code"].as_str();
        let message = self.body["error"]["message"].as_str();
        assert!(message.is_some_and(|m| !m.is_empty()), "{what}: no message in {}", self.text);
        code.unwrap_or_else(|| panic!("{what}: no error code in {}", self.text)).to_owned()
    }
}

/// An HTTP client for the tests. In a whole-workspace build iroh turns on reqwest's
/// rustls without a crypto provider, so one is installed first (plain HTTP never uses it,
/// but reqwest refuses to build a client without one).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(CALL_TIMEOUT).build().expect("client")
}

impl Api {
    /// A client of `node` with its own token.
    pub fn new(node: &TestNode) -> Self {
        Self::with_token(node, &node.token())
    }

    /// A client of `node` with the given token.
    pub fn with_token(node: &TestNode, token: &str) -> Self {
        Self::from_url(node.api_url(), token)
    }

    /// A client of the node whose API is at `base` (e.g. `http://127.0.0.1:7878`).
    pub fn from_url(base: &str, token: &str) -> Self {
        Self { base: base.to_owned(), token: token.to_owned(), http: http_client() }
    }

    /// The full URL of an API path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the bearer token set.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(&self.token)
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the node answers");
        let status = response.status();
        let text = response.text().await.expect("read the body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, body, text }
    }

    /// A JSON call; `body` is sent as JSON when given.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    /// A JSON call that must succeed; returns the JSON body.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let answer = self.call(method.clone(), path, body).await;
        assert!(answer.status.is_success(), "{method} {path}: {} {}", answer.status, answer.text);
        answer.body
    }

    /// Creates a space (`open` or `restricted`) and returns its id.
    pub async fn create_space(&self, mode: &str) -> String {
        let created = self.call(Method::POST, "/v1/spaces", Some(json!({ "mode": mode }))).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        created.body["id"].as_str().expect("an id").to_owned()
    }

    /// Opens a space's event stream, resuming after `last_event_id` if given.
    pub async fn events(&self, space: &str, last_event_id: Option<u64>) -> EventStream {
        let mut request = self
            .http
            .get(self.url(&format!("/v1/spaces/{space}/events")))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(300));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("the node answers");
        assert_eq!(response.status(), StatusCode::OK);
        EventStream { stream: Box::pin(response.bytes_stream()), buffer: String::new() }
    }
}

/// Server-Sent Events read from a response.
pub struct EventStream {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").field("buffered", &self.buffer.len()).finish_non_exhaustive()
    }
}

impl EventStream {
    /// The next change event, `(id, data)`, within `deadline`; `None` if none came.
    pub async fn next(&mut self, deadline: Duration) -> Option<(u64, Value)> {
        let started = Instant::now();
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let id = block.lines().find_map(|line| line.strip_prefix("id:"));
                let data = block.lines().find_map(|line| line.strip_prefix("data:"));
                if let (Some(id), Some(data)) = (id, data) {
                    let id = id.trim().parse().expect("a numeric event id");
                    return Some((id, serde_json::from_str(data.trim()).expect("JSON data")));
                }
                continue;
            }
            let left = deadline.checked_sub(started.elapsed())?;
            match tokio::time::timeout(left, self.stream.next()).await {
                Ok(Some(Ok(chunk))) => {
                    self.buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8"))
                }
                Ok(Some(Err(error))) => panic!("event stream failed: {error}"),
                Ok(None) => panic!("event stream ended"),
                Err(_) => return None,
            }
        }
    }
}
