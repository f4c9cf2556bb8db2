//! The route handlers of the API, each annotated for the OpenAPI document.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi as _, ToSchema};

use cosmic_auth::{Right, SpaceId, SpaceMode, Timestamp};
use cosmic_net::{Multiaddr, PeerState};
use cosmic_store::{Change, Origin};

use super::error::{ApiError, ApiResult, ErrorBody, Json, Path, Query};
use super::{ApiDoc, AppState};
use crate::metrics::{
    ABUSE_KINDS, AbuseLabels, DirectionLabels, LossLabels, REFUSAL_REASONS, VerdictLabels,
};
use crate::node::{GetOptions, SpaceSummary, blocking};

/// Most document keys one list answer holds.
const MAX_LIST_LIMIT: usize = 1000;
/// Document keys a list answer holds when no `limit` is given.
const DEFAULT_LIST_LIMIT: usize = 100;
/// Deepest link resolution a `GET` may ask for.
const MAX_DEPTH: usize = 16;
/// How often an idle event stream sends a comment to keep proxies from closing it.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /v1/health`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok` when the node answers.
    status: &'static str,
}

/// Liveness: answers without a token.
#[utoipa::path(get, path = "/v1/health", tag = "node", security(()),
    responses((status = 200, body = Health)))]
pub(crate) async fn health() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// `GET /v1/status`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Status {
    /// The node's libp2p peer id.
    peer_id: String,
    /// The author id that signs the node's writes.
    author: String,
    /// The peer-to-peer listen addresses.
    listen: Vec<String>,
    /// The version of cosmic-node.
    version: &'static str,
    /// Seconds since the node started.
    uptime_seconds: u64,
    /// Milliseconds by which the node stamps and judges entries ahead of this machine's
    /// wall clock, because most of its peers report clocks that far ahead (0: it trusts
    /// its own clock).
    clock_correction_ms: u64,
    /// Peers with an open connection.
    peers: usize,
    /// Spaces the store holds.
    spaces: usize,
    /// Entries (fields) in the store.
    entries: u64,
    /// The last local change sequence number.
    last_seq: u64,
}

/// The node's identity, addresses, version, uptime and counts.
#[utoipa::path(get, path = "/v1/status", tag = "node",
    responses((status = 200, body = Status), (status = 401, body = ErrorBody)))]
pub(crate) async fn status(State(state): State<AppState>) -> ApiResult<axum::Json<Status>> {
    let shared = &state.shared;
    let listen = shared.net.listen_addrs().await.map_err(crate::Error::from)?;
    let stats = shared.net.stats().await.map_err(crate::Error::from)?;
    let store = shared.store.clone();
    let (spaces, entries) =
        blocking(move || Ok((store.list_spaces()?.len(), store.n_entries()?))).await?;
    Ok(axum::Json(Status {
        peer_id: shared.node_key.peer_id().to_string(),
        author: shared.authors.node.public().to_string(),
        listen: listen.iter().map(ToString::to_string).collect(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: shared.started_at.elapsed().as_secs(),
        clock_correction_ms: u64::try_from(shared.store.clock_correction().as_millis())
            .unwrap_or(u64::MAX),
        peers: stats.connected_peers,
        spaces,
        entries,
        last_seq: shared.store.last_seq(),
    }))
}

/// `GET /v1/identity`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Identity {
    /// The node author's id: what grants name to let this node write.
    author: String,
    /// The node's peer id.
    peer_id: String,
    /// The keystore identities unlocked for this run (`cosmic-node run --identity`), which
    /// a write may name as its signer with `?author=`.
    identities: Vec<UnlockedIdentity>,
}

/// One unlocked identity in `GET /v1/identity`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UnlockedIdentity {
    /// Its alias in the keystore.
    alias: String,
    /// Its author id.
    author: String,
}

/// The author id this node signs its writes with, and the identities it may sign as.
#[utoipa::path(get, path = "/v1/identity", tag = "node",
    responses((status = 200, body = Identity), (status = 401, body = ErrorBody)))]
pub(crate) async fn identity(State(state): State<AppState>) -> axum::Json<Identity> {
    let identities = &state.shared.authors.identities;
    axum::Json(Identity {
        author: state.shared.authors.node.public().to_string(),
        peer_id: state.shared.node_key.peer_id().to_string(),
        identities: identities
            .iter()
            .map(|identity| UnlockedIdentity {
                alias: identity.alias.clone(),
                author: identity.key.public().to_string(),
            })
            .collect(),
    })
}

/// One peer in `GET /v1/peers`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Peer {
    /// Its peer id.
    peer_id: String,
    /// `connected`, `reconnecting`, `disconnected` or `banned`.
    state: &'static str,
    /// Addresses known for it.
    addresses: Vec<String>,
    /// Open connections.
    connections: usize,
    /// Its agent version, from identify.
    agent_version: Option<String>,
    /// The last ping round trip in milliseconds.
    rtt_ms: Option<f64>,
    /// Gossip topics it follows.
    topics: Vec<String>,
}

/// Every peer the node knows.
#[utoipa::path(get, path = "/v1/peers", tag = "peers",
    responses((status = 200, body = [Peer]), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_peers(State(state): State<AppState>) -> ApiResult<axum::Json<Vec<Peer>>> {
    let peers = state.peers.list().await?;
    Ok(axum::Json(
        peers
            .into_iter()
            .map(|peer| Peer {
                peer_id: peer.peer_id.to_string(),
                state: match peer.state {
                    PeerState::Connected => "connected",
                    PeerState::Reconnecting { .. } => "reconnecting",
                    PeerState::Banned { .. } => "banned",
                    _ => "disconnected",
                },
                addresses: peer.addresses.iter().map(ToString::to_string).collect(),
                connections: peer.connections.len(),
                agent_version: peer.agent_version,
                rtt_ms: peer.rtt.map(|rtt| rtt.as_secs_f64() * 1000.0),
                topics: peer.topics,
            })
            .collect(),
    ))
}

/// `POST /v1/peers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DialRequest {
    /// The multiaddr to dial, e.g. `/ip4/127.0.0.1/tcp/4747/p2p/12D3KooW...`.
    addr: String,
}

/// The answer to a dial.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Dialed {
    /// The peer that answered.
    peer_id: String,
}

/// Dials a peer and waits for the connection.
#[utoipa::path(post, path = "/v1/peers", tag = "peers", request_body = DialRequest,
    responses((status = 200, body = Dialed), (status = 400, body = ErrorBody),
        (status = 422, description = "nobody answered at that address", body = ErrorBody)))]
pub(crate) async fn dial_peer(
    State(state): State<AppState>,
    Json(request): Json<DialRequest>,
) -> ApiResult<axum::Json<Dialed>> {
    let addr: Multiaddr = request.addr.trim().parse().map_err(|error| {
        ApiError::bad_request(
            "invalid_multiaddr",
            format!("invalid multiaddr {:?}: {error}", request.addr),
        )
    })?;
    let peer_id = state.peers.dial(addr).await?;
    Ok(axum::Json(Dialed { peer_id: peer_id.to_string() }))
}

/// The mode of a new space.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Any author may write.
    Open,
    /// Writers need a grant.
    Restricted,
}

/// `POST /v1/spaces`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSpace {
    /// `open` or `restricted`.
    mode: Mode,
}

/// A space.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Space {
    /// The space id (52 base32 characters).
    id: String,
    /// `open` or `restricted`; `null` for a joined space whose record has not arrived.
    mode: Option<&'static str>,
    /// Documents with a live field.
    docs: u64,
    /// Fields held, tombstones included.
    entries: u64,
    /// Whether the node replicates it.
    joined: bool,
    /// Whether this node created it (holds its key).
    owned: bool,
    /// The state hash: 64 hex digits of the order-free sum of the hashes of every entry
    /// held. Nodes holding the same entries of a space show the same state hash.
    state_hash: String,
}

impl From<SpaceSummary> for Space {
    fn from(summary: SpaceSummary) -> Self {
        Self {
            id: summary.id.to_string(),
            mode: summary.mode.map(mode_name),
            docs: summary.n_docs,
            entries: summary.n_entries,
            joined: summary.joined,
            owned: summary.owned,
            state_hash: summary.state.sum.iter().map(|byte| format!("{byte:02x}")).collect(),
        }
    }
}

fn mode_name(mode: SpaceMode) -> &'static str {
    match mode {
        SpaceMode::Restricted => "restricted",
        _ => "open",
    }
}

/// Creates a space; the node author gets `admin` on it.
#[utoipa::path(post, path = "/v1/spaces", tag = "spaces", request_body = CreateSpace,
    responses((status = 201, body = Space), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(crate) async fn create_space(
    State(state): State<AppState>,
    Json(request): Json<CreateSpace>,
) -> ApiResult<(StatusCode, axum::Json<Space>)> {
    let mode = match request.mode {
        Mode::Open => SpaceMode::Open,
        Mode::Restricted => SpaceMode::Restricted,
    };
    let summary = state.spaces.create(mode).await?;
    Ok((StatusCode::CREATED, axum::Json(summary.into())))
}

/// Every space the node holds or joined.
#[utoipa::path(get, path = "/v1/spaces", tag = "spaces",
    responses((status = 200, body = [Space]), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_spaces(
    State(state): State<AppState>,
) -> ApiResult<axum::Json<Vec<Space>>> {
    let spaces = state.spaces.list().await?;
    Ok(axum::Json(spaces.into_iter().map(Space::from).collect()))
}

/// The answer to a join or leave.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Membership {
    /// The space id.
    id: String,
    /// Whether the node now takes part in the space.
    joined: bool,
    /// Whether this call changed anything.
    changed: bool,
}

pub(super) fn parse_space(text: &str) -> ApiResult<SpaceId> {
    text.parse().map_err(|error| {
        ApiError::bad_request(
            "invalid_space",
            format!("invalid space id {text:?}: {error} (expected 52 base32 characters)"),
        )
    })
}

/// Takes part in a space (replicates it with the peers that hold it).
#[utoipa::path(post, path = "/v1/spaces/{space}/join", tag = "spaces",
    params(("space" = String, Path, description = "space id")),
    responses((status = 200, body = Membership), (status = 400, body = ErrorBody)))]
pub(crate) async fn join_space(
    State(state): State<AppState>,
    Path(space): Path<String>,
) -> ApiResult<axum::Json<Membership>> {
    let space = parse_space(&space)?;
    let changed = state.spaces.join(space).await?;
    Ok(axum::Json(Membership { id: space.to_string(), joined: true, changed }))
}

/// Stops taking part in a space; its data stays.
#[utoipa::path(post, path = "/v1/spaces/{space}/leave", tag = "spaces",
    params(("space" = String, Path, description = "space id")),
    responses((status = 200, body = Membership), (status = 400, body = ErrorBody)))]
pub(crate) async fn leave_space(
    State(state): State<AppState>,
    Path(space): Path<String>,
) -> ApiResult<axum::Json<Membership>> {
    let space = parse_space(&space)?;
    let changed = state.spaces.leave(space).await?;
    Ok(axum::Json(Membership { id: space.to_string(), joined: false, changed }))
}

/// A right on a space.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Rights {
    /// Read.
    Read,
    /// Read and write.
    Write,
    /// Read, write and grant.
    Admin,
}

/// When a grant ends: an RFC 3339 time or milliseconds since the Unix epoch.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Expiry {
    /// Milliseconds since the Unix epoch, at most 2^63 - 1.
    Millis(u64),
    /// An RFC 3339 time such as `2027-01-01T00:00:00Z` or `2027-01-01T01:00:00+01:00`.
    #[schema(format = DateTime)]
    Time(String),
}

/// `POST /v1/spaces/{space}/grants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantRequest {
    /// The author id receiving the right.
    #[schema(pattern = "^[a-z2-7]{51}[aq]$", format = "cosmic-author-id")]
    author: String,
    /// The right.
    rights: Rights,
    /// When the grant ends (none: never).
    expires: Option<Expiry>,
}

/// A grant, as stored in the space.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GrantAnswer {
    /// The space id.
    space: String,
    /// Who signed it: the space key or an admin author.
    issuer: String,
    /// Who received the right.
    author: String,
    /// The right.
    rights: Rights,
    /// Issued at, milliseconds since the Unix epoch.
    issued_at: u64,
    /// Last valid instant, milliseconds since the Unix epoch.
    expires: Option<u64>,
}

/// Grants a right on a space to an author.
#[utoipa::path(post, path = "/v1/spaces/{space}/grants", tag = "spaces", request_body = GrantRequest,
    params(("space" = String, Path, description = "space id")),
    responses((status = 201, body = GrantAnswer), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn grant(
    State(state): State<AppState>,
    Path(space): Path<String>,
    Json(request): Json<GrantRequest>,
) -> ApiResult<(StatusCode, axum::Json<GrantAnswer>)> {
    let space = parse_space(&space)?;
    let subject = parse_author(&request.author)?;
    let right = match request.rights {
        Rights::Read => Right::Read,
        Rights::Write => Right::Write,
        Rights::Admin => Right::Admin,
    };
    let not_after = match &request.expires {
        None => None,
        // The document says `int64`, as a JSON client can hold: what lies beyond is refused.
        Some(Expiry::Millis(millis)) if i64::try_from(*millis).is_err() => {
            return Err(ApiError::bad_request(
                "invalid_expires",
                format!("expiry {millis} is out of range: expected at most {}", i64::MAX),
            ));
        }
        Some(Expiry::Millis(millis)) => Some(Timestamp(*millis)),
        Some(Expiry::Time(text)) => {
            let millis = parse_rfc3339(text.trim()).map_err(|reason| {
                ApiError::bad_request(
                    "invalid_expires",
                    format!(
                        "invalid expiry {text:?}: {reason} (expected an RFC 3339 time such as \
                         2027-01-01T00:00:00Z)"
                    ),
                )
            })?;
            // A time before 1970 has passed as surely as the epoch has: the grant has ended.
            Some(Timestamp(u64::try_from(millis).unwrap_or(0)))
        }
    };
    let statement = state.spaces.grant(space, subject, right, not_after).await?;
    let cosmic_auth::Statement::Grant(grant) = statement.statement() else {
        return Err(ApiError::internal("a grant produced another statement"));
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(GrantAnswer {
            space: grant.space.to_string(),
            issuer: grant.issuer.to_string(),
            author: grant.subject.to_string(),
            rights: request.rights,
            issued_at: grant.issued_at.0,
            expires: grant.not_after.map(|time| time.0),
        }),
    ))
}

/// `POST /v1/spaces/{space}/revocations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRequest {
    /// The author id whose rights end.
    #[schema(pattern = "^[a-z2-7]{51}[aq]$", format = "cosmic-author-id")]
    author: String,
}

/// A revocation, as stored in the space.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RevocationAnswer {
    /// The space id.
    space: String,
    /// Who signed it: the space key (every grant to the author ends) or an admin author
    /// (the grants it issued to the author end).
    issuer: String,
    /// Whose rights end.
    author: String,
    /// Grants issued at or before this time end from this time on; milliseconds since the
    /// Unix epoch.
    issued_at: u64,
}

/// Revokes an author's rights on a space, from now on. What the author wrote before stays
/// valid; nodes that speak only for the author get nothing new of a restricted space.
#[utoipa::path(post, path = "/v1/spaces/{space}/revocations", tag = "spaces",
    request_body = RevokeRequest,
    params(("space" = String, Path, description = "space id")),
    responses((status = 201, body = RevocationAnswer), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path(space): Path<String>,
    Json(request): Json<RevokeRequest>,
) -> ApiResult<(StatusCode, axum::Json<RevocationAnswer>)> {
    let space = parse_space(&space)?;
    let subject = parse_author(&request.author)?;
    let statement = state.spaces.revoke(space, subject).await?;
    let cosmic_auth::Statement::Revoke(revocation) = statement.statement() else {
        return Err(ApiError::internal("a revocation produced another statement"));
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(RevocationAnswer {
            space: revocation.space.to_string(),
            issuer: revocation.issuer.to_string(),
            author: revocation.subject.to_string(),
            issued_at: revocation.issued_at.0,
        }),
    ))
}

/// An author id from a request body.
fn parse_author(text: &str) -> ApiResult<cosmic_auth::AuthorId> {
    text.trim().parse().map_err(|error| {
        ApiError::bad_request("invalid_author", format!("invalid author id {text:?}: {error}"))
    })
}

/// Milliseconds since the Unix epoch (negative before 1970) of an RFC 3339 `date-time`:
/// `YYYY-MM-DDTHH:MM:SS`, an optional fraction (kept to the millisecond), then `Z` or a
/// `+HH:MM`/`-HH:MM` offset. `T` and `Z` may be lowercase and `T` another character such
/// as a space (RFC 3339 §5.6); a leap second (`:60`) is the last instant of the second
/// before it. Parsed by the `time` crate.
pub(crate) fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|error| error.to_string())?;
    // Years 0000 to 9999: far inside i64 milliseconds.
    Ok((time.unix_timestamp_nanos().div_euclid(1_000_000)) as i64)
}

/// `GET /v1/spaces/{space}/docs` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only keys starting with this.
    prefix: Option<String>,
    /// At most this many keys, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Only keys after this one (the `next` of the previous page).
    after: Option<String>,
}

/// A page of document keys.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyPage {
    /// The keys, in order.
    keys: Vec<String>,
    /// The cursor for the next page (`after`), when the page is full.
    next: Option<String>,
}

/// Lists the keys of the live documents of a space.
#[utoipa::path(get, path = "/v1/spaces/{space}/docs", tag = "docs",
    params(("space" = String, Path, description = "space id"), ListQuery),
    responses((status = 200, body = KeyPage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn list_docs(
    State(state): State<AppState>,
    Path(space): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<KeyPage>> {
    let space = parse_space(&space)?;
    let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit {limit} is out of range: expected 1 to {MAX_LIST_LIMIT}"),
        ));
    }
    let prefix = query.prefix.unwrap_or_default();
    let keys = state.docs.list(space, &prefix, query.after.as_deref(), limit).await?;
    let next = (keys.len() == limit).then(|| keys.last().cloned()).flatten();
    Ok(axum::Json(KeyPage { keys, next }))
}

/// `GET /v1/spaces/{space}/docs/{key}` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetQuery {
    /// Give each field as `{"value", "hlc", "author"}`.
    meta: Option<bool>,
    /// Resolve doc links this many levels deep, 0 to 16 (default 0).
    #[param(minimum = 0, maximum = 16)]
    depth: Option<usize>,
}

/// Any JSON object: a document's fields.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(value_type = Object)]
pub(crate) struct Fields(serde_json::Map<String, serde_json::Value>);

/// A document's live fields as JSON.
#[utoipa::path(get, path = "/v1/spaces/{space}/docs/{key}", tag = "docs",
    params(("space" = String, Path, description = "space id"),
        ("key" = String, Path, description = "document key; may contain `/`"), GetQuery),
    responses((status = 200, body = Fields), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn get_doc(
    State(state): State<AppState>,
    Path((space, key)): Path<(String, String)>,
    Query(query): Query<GetQuery>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let space = parse_space(&space)?;
    let depth = query.depth.unwrap_or(0);
    if depth > MAX_DEPTH {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("depth {depth} is out of range: expected 0 to {MAX_DEPTH}"),
        ));
    }
    let options = GetOptions { depth, meta: query.meta.unwrap_or(false) };
    Ok(axum::Json(state.docs.get(space, &key, options).await?))
}

/// The answer to a put.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Written {
    /// The space id.
    space: String,
    /// The document key.
    key: String,
    /// Fields that changed (child documents included).
    changed: usize,
}

/// `PUT` and `DELETE /v1/spaces/{space}/docs/{key}` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct WriteQuery {
    /// Who signs the write: the alias or author id of an identity the node was started
    /// with (`--identity`), or the node author's id. Default: the node author.
    author: Option<String>,
}

/// Merges a JSON object into a document.
///
/// Nested objects become linked child documents, `{"#": key}` is a doc link,
/// `{"/": cid}` a blob link and `null` deletes a field.
#[utoipa::path(put, path = "/v1/spaces/{space}/docs/{key}", tag = "docs", request_body = Fields,
    params(("space" = String, Path, description = "space id"),
        ("key" = String, Path, description = "document key; may contain `/`"), WriteQuery),
    responses((status = 200, body = Written), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody)))]
pub(crate) async fn put_doc(
    State(state): State<AppState>,
    Path((space, key)): Path<(String, String)>,
    Query(query): Query<WriteQuery>,
    Json(fields): Json<serde_json::Value>,
) -> ApiResult<axum::Json<Written>> {
    let space = parse_space(&space)?;
    if !fields.is_object() {
        return Err(ApiError::bad_request(
            "invalid_document",
            "a document is a JSON object of fields, like {\"name\": \"alice\"}",
        ));
    }
    let changed = state.docs.put_as(query.author.as_deref(), space, &key, fields).await?;
    Ok(axum::Json(Written { space: space.to_string(), key, changed }))
}

/// The answer to a delete.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Deleted {
    /// The space id.
    space: String,
    /// The document key.
    key: String,
    /// Fields deleted.
    deleted: usize,
}

/// Deletes a document (all its fields).
#[utoipa::path(delete, path = "/v1/spaces/{space}/docs/{key}", tag = "docs",
    params(("space" = String, Path, description = "space id"),
        ("key" = String, Path, description = "document key; may contain `/`"), WriteQuery),
    responses((status = 200, body = Deleted), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_doc(
    State(state): State<AppState>,
    Path((space, key)): Path<(String, String)>,
    Query(query): Query<WriteQuery>,
) -> ApiResult<axum::Json<Deleted>> {
    let space = parse_space(&space)?;
    let deleted = state.docs.delete_as(query.author.as_deref(), space, &key).await?;
    Ok(axum::Json(Deleted { space: space.to_string(), key, deleted }))
}

/// `GET /v1/spaces/{space}/events` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// Start after this sequence number (the `Last-Event-ID` header wins).
    since: Option<u64>,
}

/// The `data` of one change event.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChangeEvent {
    /// The local sequence number (also the event's `id`).
    seq: u64,
    /// The document key.
    doc: String,
    /// The field name.
    field: String,
    /// The new value, any JSON (`null`: deleted; a link is `{"#": key}` or `{"/": cid}`).
    #[schema(value_type = Value)]
    value: serde_json::Value,
    /// The author id.
    author: String,
    /// The hybrid logical clock stamp, `millis.counter`.
    hlc: String,
    /// `local` (written on this node) or the peer id of the peer it arrived from.
    origin: String,
}

/// One Server-Sent Event of a change stream, as the document describes it: before
/// OpenAPI 3.2 the schema of an event stream is that of each event (`id`, `event`, `data`).
/// A change's `data` is a JSON [`ChangeEvent`]; an `error` event's is the reason, as text.
pub(crate) struct ChangeFrame;

impl utoipa::PartialSchema for ChangeFrame {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::extensions::Extensions;
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};

        let text = |description: &str| {
            ObjectBuilder::new().schema_type(Type::String).description(Some(description))
        };
        let event = |name: &str| {
            ObjectBuilder::new().schema_type(Type::String).enum_values(Some([name.to_owned()]))
        };
        // `contentSchema` (JSON Schema 2020-12) has no builder method; extensions are
        // written as they are named.
        let mut content = Extensions::default();
        content.insert(
            "contentSchema".to_owned(),
            serde_json::json!({"$ref": "#/components/schemas/ChangeEvent"}),
        );
        let change = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("a change: `data` is a ChangeEvent as JSON"))
            .property("id", text("the change's local sequence number"))
            .property("event", event("message"))
            .property(
                "data",
                text("the ChangeEvent")
                    .content_media_type("application/json")
                    .extensions(Some(content)),
            )
            .required("id")
            .required("data");
        let error = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("the stream ends on a store error: `data` is the reason"))
            .property("event", event("error"))
            .property("data", text("the reason"))
            .required("event")
            .required("data");
        OneOfBuilder::new().item(change).item(error).into()
    }
}

impl ToSchema for ChangeFrame {
    fn schemas(
        schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>,
    ) {
        schemas.push((
            ChangeEvent::name().into_owned(),
            <ChangeEvent as utoipa::PartialSchema>::schema(),
        ));
    }
}

fn change_event(change: &Change) -> ChangeEvent {
    let entry = &change.entry;
    ChangeEvent {
        seq: change.seq,
        doc: entry.doc.clone(),
        field: entry.field.clone(),
        value: entry.value.to_json(),
        author: entry.author.to_string(),
        hlc: entry.hlc.to_string(),
        origin: match &change.origin {
            Origin::Peer(peer_id) => peer_id.clone(),
            _ => "local".to_owned(),
        },
    }
}

/// A live stream of the changes of a space as Server-Sent Events.
///
/// Each event's `id` is its local sequence number and its `data` a [`ChangeEvent`] (the
/// document describes each event as a [`ChangeFrame`]). A
/// reconnect with `Last-Event-ID` (or `?since=`) resumes with no gap and no duplicate;
/// with neither, the stream starts with every current field, then follows live changes.
#[utoipa::path(get, path = "/v1/spaces/{space}/events", tag = "docs",
    params(("space" = String, Path, description = "space id"), EventsQuery,
        ("Last-Event-ID" = Option<u64>, Header, nullable = false,
            description = "resume after this event id")),
    responses((status = 200, content_type = "text/event-stream", body = ChangeFrame),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    Path(space): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let space = parse_space(&space)?;
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => {
            let text = value.to_str().unwrap_or_default().trim();
            Some(text.parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    "invalid_last_event_id",
                    format!("Last-Event-ID {text:?} is not a sequence number"),
                )
            })?)
        }
    };
    let after = last_event_id.or(query.since).unwrap_or(0);
    let subscription = state.docs.subscribe(space, after).await?;
    let stream = subscription
        .map(move |item| {
            let event = match item {
                Ok(change) => {
                    let data = change_event(&change);
                    Event::default()
                        .id(change.seq.to_string())
                        .json_data(&data)
                        .unwrap_or_else(|_| Event::default().event("error").data("encoding"))
                }
                Err(error) => {
                    tracing::warn!(%error, "event stream ended by a store error");
                    Event::default().event("error").data(super::error::chain(&error))
                }
            };
            Ok::<_, Infallible>(event)
        })
        .take_until(state.cancel.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// This API's OpenAPI 3 document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "node",
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
pub(crate) async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "node",
    responses((status = 200, description = "Prometheus metrics in the OpenMetrics text format",
        content_type = "application/openmetrics-text", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let shared = state.shared.clone();
    let metrics = &shared.metrics;
    if let Ok(stats) = shared.net.stats().await {
        metrics.peers_connected.set(i64::try_from(stats.connected_peers).unwrap_or(i64::MAX));
        metrics.connections.set(i64::try_from(stats.connections).unwrap_or(i64::MAX));
        metrics.requests_refused_busy.set(stats.requests_dropped);
        let abuse =
            [stats.bans, stats.requests_rate_limited, stats.connections_denied, stats.bad_frames];
        for (kind, count) in ABUSE_KINDS.into_iter().zip(abuse) {
            metrics.net_abuse.get_or_create(&AbuseLabels { kind }).set(count);
        }
    }
    let refusals = shared.store.refusals();
    let refused = [
        refusals.clock_drift,
        refusals.bad_signature,
        refusals.no_right,
        refusals.malformed,
        refusals.quota,
    ];
    for (reason, count) in REFUSAL_REASONS.into_iter().zip(refused) {
        metrics.entries_refused.get_or_create(&LossLabels { reason }).set(count);
    }
    let sync = shared.replicator.metrics();
    for (verdict, count) in [
        ("accept", sync.gossip_accepted),
        ("reject", sync.gossip_rejected),
        ("ignore", sync.gossip_ignored),
    ] {
        metrics.gossip_verdicts.get_or_create(&VerdictLabels { verdict }).set(count);
    }
    metrics.sync_sessions.set(sync.sessions);
    for kind in cosmic_sync::LossKind::ALL {
        let labels = LossLabels { reason: kind.as_str() };
        metrics.gossip_lost.get_or_create(&labels).set(sync.gossip_lost.get(kind));
    }
    metrics.gossip_loss_repairs.set(sync.loss_repairs);
    metrics.reads_refused.set(sync.reads_refused);
    metrics.bindings_refused.set(sync.bindings_refused);
    for (direction, count) in [
        ("published", sync.gossip_entries_published),
        ("received", sync.gossip_entries_received),
        ("accepted", sync.gossip_entries_accepted),
    ] {
        metrics.gossip_entries.get_or_create(&DirectionLabels { direction }).set(count);
    }
    metrics.gossip_batches_published.set(sync.gossip_published);
    metrics.sync_bytes.set(
        sync.recon.bytes_sent
            + sync.recon.bytes_received
            + sync.served_bytes_sent
            + sync.served_bytes_received,
    );
    let store = shared.store.clone();
    if let Ok((spaces, entries)) =
        blocking(move || Ok((store.list_spaces()?.len(), store.n_entries()?))).await
    {
        metrics.spaces.set(i64::try_from(spaces).unwrap_or(i64::MAX));
        metrics.entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
    }
    metrics.last_seq.set(shared.store.last_seq());
    metrics.uptime_seconds.set(shared.started_at.elapsed().as_secs());
    metrics.clock_correction.set(shared.store.clock_correction().as_secs_f64());
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        metrics.encode(),
    )
        .into_response()
}
