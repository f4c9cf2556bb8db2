//! The HTTP API (axum): routes, bearer authentication, limits, metrics and the OpenAPI
//! document.
//!
//! Every route but `GET /v1/health` needs `Authorization: Bearer <token>`, the token of
//! the data dir's `api.token`, compared in constant time. JSON bodies are limited to
//! `api.max_request_size`; blob uploads stream and are limited by `blobs.max_blob_size`.
//! Every error, including the rejections of the extractors, unknown routes and wrong
//! methods, is `{"error": {"code", "message"}}`.

mod blobs;
mod entries;
pub(crate) mod error;
mod handlers;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq as _;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

pub(crate) use self::error::{ApiError, ErrorBody};
use crate::metrics::HttpLabels;
use crate::node::{Docs, Peers, Shared, Spaces};
use crate::supervisor::Supervisor;

/// What every handler gets.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) shared: Arc<Shared>,
    pub(crate) spaces: Spaces,
    pub(crate) docs: Docs,
    pub(crate) peers: Peers,
    token: Arc<str>,
    /// Cancelled when the node stops: ends the event streams.
    pub(crate) cancel: CancellationToken,
}

impl AppState {
    pub(crate) fn new(shared: Arc<Shared>, token: String, cancel: CancellationToken) -> Self {
        Self {
            spaces: Spaces { shared: shared.clone() },
            docs: Docs { shared: shared.clone() },
            peers: Peers { shared: shared.clone() },
            shared,
            token: token.into(),
            cancel,
        }
    }
}

/// The OpenAPI document, assembled from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "CosmicSyncCore node API",
        description = "Spaces, live documents, content-addressed blobs and peers of one \
                       cosmic-node. Every route but /v1/health needs `Authorization: Bearer \
                       <token>`; errors are `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        handlers::health,
        handlers::status,
        handlers::identity,
        handlers::list_peers,
        handlers::dial_peer,
        handlers::create_space,
        handlers::list_spaces,
        handlers::join_space,
        handlers::leave_space,
        handlers::grant,
        handlers::revoke,
        handlers::list_docs,
        handlers::get_doc,
        handlers::put_doc,
        handlers::delete_doc,
        entries::post_entries,
        handlers::events,
        blobs::add_blob,
        blobs::get_blob,
        blobs::head_blob,
        blobs::delete_blob,
        handlers::openapi,
        handlers::metrics,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth, &CommonAnswers),
    security(("bearer" = []))
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The text of a space or author id: 52 lowercase base32 characters of a 32-byte key, so
/// the last one carries a single bit (`a` or `q`).
pub(crate) const KEY_ID_PATTERN: &str = "^[a-z2-7]{51}[aq]$";
/// A document key: `/`-separated segments, none empty, no control characters.
const DOC_KEY_PATTERN: &str =
    "^[^/\\u0000-\\u001f\\u007f-\\u009f]+(/[^/\\u0000-\\u001f\\u007f-\\u009f]+)*$";
/// A CID as the node prints it: multibase base32 (`b`), lowercase.
const CID_PATTERN: &str = "^b[a-z2-7]+$";
/// The OpenAPI `format` of a space id: beyond [`KEY_ID_PATTERN`], the 32 bytes must be an
/// ed25519 point. A custom format, so that a test client can plug in a generator of valid
/// ids; an author id in a body has the same rules and the format `cosmic-author-id`.
pub(crate) const SPACE_ID_FORMAT: &str = "cosmic-space-id";
/// The OpenAPI `format` of a document key: beyond [`DOC_KEY_PATTERN`], at most 512 bytes
/// of UTF-8 (a schema's `maxLength` counts characters).
const DOC_KEY_FORMAT: &str = "cosmic-doc-key";
/// The OpenAPI `format` of a CID: beyond [`CID_PATTERN`], a CIDv1 raw with a BLAKE3
/// multihash (`bafkr4...`).
const CID_FORMAT: &str = "cosmic-cid";

/// Adds to the document what every operation shares but its annotation does not say:
/// the 401 of a missing token, the 400/413/415/422 of a JSON body the extractor refuses,
/// the 400 of malformed path and query parameters, and the patterns of path parameters.
struct CommonAnswers;

impl utoipa::Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in &mut openapi.paths.paths {
            let operations = [
                item.get.as_mut(),
                item.put.as_mut(),
                item.post.as_mut(),
                item.delete.as_mut(),
                item.head.as_mut(),
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses.entry(status.to_owned()).or_insert_with(|| error(description));
                };
                if path != "/v1/health" {
                    add("401", "missing or wrong bearer token");
                }
                let json_body = operation
                    .request_body
                    .as_ref()
                    .is_some_and(|body| body.content.contains_key("application/json"));
                if json_body {
                    add("400", "the body is not well-formed JSON");
                    add("413", "the body is larger than `api.max_request_size`");
                    add("415", "the body is not `Content-Type: application/json`");
                    add("422", "the JSON does not have the documented shape");
                }
                let Some(parameters) = operation.parameters.as_mut() else { continue };
                if !parameters.is_empty() {
                    add("400", "a malformed path or query parameter");
                }
                for parameter in parameters.iter_mut() {
                    if parameter.parameter_in != ParameterIn::Path {
                        continue;
                    }
                    let (pattern, format) = match parameter.name.as_str() {
                        "space" => (KEY_ID_PATTERN, Some(SPACE_ID_FORMAT)),
                        "key" => (DOC_KEY_PATTERN, Some(DOC_KEY_FORMAT)),
                        "cid" => (CID_PATTERN, Some(CID_FORMAT)),
                        _ => continue,
                    };
                    let format = format.map(|name| SchemaFormat::Custom(name.to_owned()));
                    parameter.schema = Some(RefOr::T(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(pattern))
                            .format(format)
                            .into(),
                    ));
                }
            }
        }
    }
}

/// Logs a warning when the API listens beyond loopback: the bearer token then travels
/// in clear text over the network and anyone who can reach the port may try it.
pub(crate) fn warn_if_exposed(addr: std::net::SocketAddr) {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "the HTTP API listens beyond loopback: anyone who can reach {addr} may try the \
             bearer token, and it travels unencrypted; keep `api.addr` on 127.0.0.1 unless \
             a TLS proxy or a firewall guards it"
        );
    }
}

/// The router with every route, its auth, limits, metrics and fallbacks.
pub(crate) fn router(state: AppState) -> Router {
    let max_request_size =
        usize::try_from(state.shared.config.api.max_request_size).unwrap_or(usize::MAX);
    let protected = Router::new()
        .route("/v1/status", get(handlers::status))
        .route("/v1/identity", get(handlers::identity))
        .route("/v1/peers", get(handlers::list_peers).post(handlers::dial_peer))
        .route("/v1/spaces", get(handlers::list_spaces).post(handlers::create_space))
        .route("/v1/spaces/{space}/join", post(handlers::join_space))
        .route("/v1/spaces/{space}/leave", post(handlers::leave_space))
        .route("/v1/spaces/{space}/grants", post(handlers::grant))
        .route("/v1/spaces/{space}/revocations", post(handlers::revoke))
        .route("/v1/spaces/{space}/docs", get(handlers::list_docs))
        .route(
            "/v1/spaces/{space}/docs/{*key}",
            get(handlers::get_doc).put(handlers::put_doc).delete(handlers::delete_doc),
        )
        .route("/v1/spaces/{space}/entries", post(entries::post_entries))
        .route("/v1/spaces/{space}/events", get(handlers::events))
        .route("/v1/blobs", post(blobs::add_blob))
        .route(
            "/v1/blobs/{cid}",
            get(blobs::get_blob).head(blobs::head_blob).delete(blobs::delete_blob),
        )
        .route("/v1/openapi.json", get(handlers::openapi))
        .route("/metrics", get(handlers::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/v1/health", get(handlers::health))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_request_size))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(middleware::from_fn_with_state(state.clone(), record_metrics))
        .with_state(state)
}

/// Starts the API under the supervisor, serving on `listener` until the node stops.
pub(crate) fn spawn(
    supervisor: &mut Supervisor,
    shared: Arc<Shared>,
    token: String,
    listener: std::net::TcpListener,
) {
    let state = AppState::new(shared, token, supervisor.cancel_token().clone());
    supervisor.spawn("http-api", move |cancel| {
        let listener = listener.try_clone();
        let app = router(state.clone());
        async move {
            let listener = tokio::net::TcpListener::from_std(listener?)?;
            axum::serve(listener, app).with_graceful_shutdown(cancel.cancelled_owned()).await?;
            Ok(())
        }
    });
}

/// Lets a request through only with the right bearer token.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        // In time that depends on the lengths only.
        Some(token) if bool::from(token.as_bytes().ct_eq(state.token.as_bytes())) => {
            next.run(request).await
        }
        _ => ApiError::unauthorized().into_response(),
    }
}

/// Counts each request and its latency by route template, method and status.
async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let labels = HttpLabels { method, route, status: response.status().as_u16() };
    let metrics = &state.shared.metrics;
    metrics.http_requests.get_or_create(&labels).inc();
    metrics.http_latency.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    response
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found("not_found", format!("no route for {}", request.uri().path()))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", request.method(), request.uri().path()),
    )
}

#[cfg(test)]
mod tests;
