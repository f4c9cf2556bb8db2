//! The node's own routes: health, status, identity, peers, the OpenAPI document and the
//! metrics.

use super::*;

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
        refusals.revoked,
        refusals.malformed,
        refusals.quota,
    ];
    for (reason, count) in REFUSAL_REASONS.into_iter().zip(refused) {
        metrics.store_refusals.entries.get_or_create(&LossLabels { reason }).set(count);
    }
    metrics.store_refusals.entries_cut_off.set(refusals.cut_off);
    metrics.store_refusals.statements.set(refusals.statements_refused);
    metrics.store_refusals.statements_cut_off.set(refusals.statements_cut_off);
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
