//! Documents: listing, reading, writing and deleting them.

use super::*;

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
