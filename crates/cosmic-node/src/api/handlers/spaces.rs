//! Spaces: creating, listing, joining and leaving them, and granting and revoking rights.

use super::*;

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

pub(crate) fn parse_space(text: &str) -> ApiResult<SpaceId> {
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
    /// Seal the revocation (the default): it keeps the author's entries this node holds
    /// and refuses everything else the author dates before it. `false`: end the rights
    /// from now on only (entries dated back are still taken).
    #[serde(default = "sealed_by_default")]
    sealed: bool,
}

fn sealed_by_default() -> bool {
    true
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
    /// Whether it is sealed: entries dated before `issued_at` count only if kept.
    sealed: bool,
    /// How many entries a sealed revocation keeps (0 when unsealed).
    kept: usize,
}

/// Revokes an author's rights on a space, from now on. What the author wrote before and
/// this node holds stays valid; sealed (the default), entries the author dates before the
/// revocation are refused everywhere. Nodes that speak only for the author get nothing new
/// of a restricted space. 422 `too_many_kept` when a sealed revocation would keep more
/// entries than fit in one (16,384, fewer when the space's statements are large).
#[utoipa::path(post, path = "/v1/spaces/{space}/revocations", tag = "spaces",
    request_body = RevokeRequest,
    params(("space" = String, Path, description = "space id")),
    responses((status = 201, body = RevocationAnswer), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path(space): Path<String>,
    Json(request): Json<RevokeRequest>,
) -> ApiResult<(StatusCode, axum::Json<RevocationAnswer>)> {
    let space = parse_space(&space)?;
    let subject = parse_author(&request.author)?;
    let statement = state.spaces.revoke(space, subject, request.sealed).await?;
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
            sealed: revocation.kept.is_some(),
            kept: revocation.kept.as_ref().map_or(0, Vec::len),
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
