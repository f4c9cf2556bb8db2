//! `POST /v1/spaces/{space}/entries`: entries signed by the client itself, so that a web
//! app's user can keep their key in the browser and the node never holds it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use cosmic_store::{Entry, Inserted};

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody, Json, Path};
use super::handlers::parse_space;
use axum::extract::State;

/// Most entries one request may carry.
pub(crate) const MAX_ENTRIES: usize = 1024;

/// The body of `POST /v1/spaces/{space}/entries`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignedEntries {
    /// Each entry in its canonical binary encoding (docs/API.md, "Entries signed by the
    /// client"), signature included, as standard padded base64; at most 1,024.
    #[schema(max_items = 1024)]
    entries: Vec<String>,
}

/// What became of each entry, in the order given.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EntryResults {
    /// `applied` (now the field's value), `duplicate` (held already) or `superseded` (the
    /// field holds a later value, so the entry changes nothing and is not kept).
    results: Vec<&'static str>,
    /// How many were applied.
    applied: usize,
}

/// Stores entries signed by their authors (all or nothing).
///
/// Every entry must belong to `{space}`, decode, carry a valid signature of its author,
/// fit `store.max_value_size`, be no further ahead than `sync.max_clock_drift`, and be
/// allowed by the space's capabilities; the first that is not fails the whole request,
/// and nothing is stored. Accepted entries replicate like the node's own writes.
#[utoipa::path(post, path = "/v1/spaces/{space}/entries", tag = "docs",
    request_body = SignedEntries,
    params(("space" = String, Path, description = "space id")),
    responses((status = 200, body = EntryResults), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody)))]
pub(crate) async fn post_entries(
    State(state): State<AppState>,
    Path(space): Path<String>,
    Json(body): Json<SignedEntries>,
) -> ApiResult<axum::Json<EntryResults>> {
    let space = parse_space(&space)?;
    if body.entries.is_empty() || body.entries.len() > MAX_ENTRIES {
        return Err(ApiError::bad_request(
            "invalid_entries",
            format!("expected 1 to {MAX_ENTRIES} entries, got {}", body.entries.len()),
        ));
    }
    let entries = body
        .entries
        .iter()
        .enumerate()
        .map(|(index, text)| decode(index, text, &space))
        .collect::<ApiResult<Vec<Entry>>>()?;
    let inserted = state.docs.insert_signed(space, entries).await?;
    let results: Vec<&'static str> = inserted
        .iter()
        .map(|inserted| match inserted {
            Inserted::Applied { .. } => "applied",
            Inserted::Duplicate => "duplicate",
            Inserted::Superseded => "superseded",
        })
        .collect();
    let applied = results.iter().filter(|result| **result == "applied").count();
    Ok(axum::Json(EntryResults { results, applied }))
}

/// Entry `index` of a request for `space`, decoded (its signature is checked later).
fn decode(index: usize, text: &str, space: &cosmic_auth::SpaceId) -> ApiResult<Entry> {
    let invalid = |reason: String| {
        ApiError::bad_request("invalid_entries", format!("entry {index}: {reason}"))
    };
    let bytes = data_encoding::BASE64
        .decode(text.as_bytes())
        .map_err(|error| invalid(format!("not standard padded base64: {error}")))?;
    let entry = Entry::decode(&bytes).map_err(|error| invalid(error.to_string()))?;
    if entry.space != *space {
        return Err(invalid(format!("belongs to space {}, not {space}", entry.space)));
    }
    Ok(entry)
}
