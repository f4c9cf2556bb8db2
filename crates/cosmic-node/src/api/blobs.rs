//! The blob routes: upload (streamed), download (streamed, fetched from peers when
//! missing, with `Range`), `HEAD` and unpin.
//!
//! Blobs added through the API are pinned public: any peer that knows the CID may fetch
//! them, as with IPFS. Blobs fetched from peers are pinned private.

use std::io;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::ToSchema;

use cosmic_blobs::{BlobState, Cid, FetchOptions, Visibility};

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody, Path, chain};
use crate::blob_peers::NetLookup;
use crate::metrics::DirectionLabels;

/// Body chunks buffered between the HTTP connection and the blob store.
const UPLOAD_QUEUE: usize = 8;

/// The answer to an upload.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AddedBlob {
    /// The blob's CID (CIDv1, raw, BLAKE3; `bafkr4...`).
    cid: String,
    /// Its size in bytes.
    size: u64,
}

pub(crate) fn blob_error(error: cosmic_blobs::Error) -> ApiError {
    let message = chain(&error);
    blob_error_ref(&error, message)
}

pub(crate) fn blob_error_ref(error: &cosmic_blobs::Error, message: String) -> ApiError {
    use cosmic_blobs::Error as E;
    match error {
        E::Cid(_) => ApiError::bad_request("invalid_cid", message),
        E::NotFound { .. } | E::Incomplete { .. } | E::NoProviders { .. } | E::Timeout { .. } => {
            ApiError::not_found("blob_not_found", message)
        }
        E::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "blob_too_large", message)
        }
        E::InvalidRange { .. } => {
            ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "invalid_range", message)
        }
        E::Cancelled { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
        }
        _ => ApiError::internal(message),
    }
}

fn parse_cid(text: &str) -> ApiResult<Cid> {
    text.trim().parse::<Cid>().map_err(|error| {
        ApiError::bad_request("invalid_cid", format!("invalid CID {text:?}: {}", chain(&error)))
    })
}

/// Adds a blob from the request body, streamed (never held in memory whole).
#[utoipa::path(post, path = "/v1/blobs", tag = "blobs",
    request_body(content = Option<Vec<u8>>, content_type = "application/octet-stream",
        description = "the blob's bytes; none is the empty blob"),
    responses((status = 201, body = AddedBlob), (status = 413, body = ErrorBody)))]
pub(crate) async fn add_blob(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<AddedBlob>)> {
    let max = state.shared.config.blobs.max_blob_size;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if let Some(length) = declared.filter(|length| *length > max) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "blob_too_large",
            format!("blob of {length} bytes is larger than `blobs.max_blob_size` = {max}"),
        ));
    }
    // The blob store wants a `Sync` stream; the body is not, so a pump, run beside the
    // add in this same task, moves its chunks through a bounded channel (the upload goes
    // at the speed the store takes it).
    let (sender, receiver) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(UPLOAD_QUEUE);
    let counter =
        state.shared.metrics.blob_bytes.get_or_create(&DirectionLabels { direction: "in" }).clone();
    let pump = async move {
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(io::Error::other);
            if let Ok(bytes) = &chunk {
                counter.inc_by(bytes.len() as u64);
            }
            let failed = chunk.is_err();
            if sender.send(chunk).await.is_err() || failed {
                break;
            }
        }
        // Dropping the sender here ends the add's stream.
    };
    let add = state.shared.blobs.add_stream(ReceiverStream::new(receiver), Visibility::Public);
    tokio::pin!(add);
    // The add may end first (a store error): the rest of the body is then not read.
    let added = tokio::select! {
        added = &mut add => added,
        () = pump => add.await,
    };
    let added = added.map_err(|error| match error {
        // A body that broke off midway is the client's doing.
        cosmic_blobs::Error::Store { .. } => ApiError::bad_request(
            "upload_failed",
            format!("the upload did not complete: {}", chain(&error)),
        ),
        error => blob_error(error),
    })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(AddedBlob { cid: added.cid.to_string(), size: added.size }),
    ))
}

/// A byte range asked for with `Range: bytes=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeRequest {
    /// `bytes=start-` or `bytes=start-end` (inclusive end).
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last n bytes.
    Suffix { len: u64 },
}

/// Parses a single-range `Range` header; `None` for a header to ignore (another unit, or
/// several ranges, which are answered with the whole blob as RFC 9110 allows).
fn parse_range(value: &str) -> Result<Option<RangeRequest>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.trim().split_once('-').ok_or(())?;
    let number = |text: &str| text.trim().parse::<u64>().map_err(|_| ());
    match (start.trim().is_empty(), end.trim().is_empty()) {
        (true, false) => Ok(Some(RangeRequest::Suffix { len: number(end)? })),
        (false, true) => Ok(Some(RangeRequest::From { start: number(start)?, end: None })),
        (false, false) => {
            let (start, end) = (number(start)?, number(end)?);
            if end < start {
                return Err(());
            }
            Ok(Some(RangeRequest::From { start, end: Some(end) }))
        }
        (true, true) => Err(()),
    }
}

/// The `[start, end)` a range request selects in a blob of `size` bytes, if satisfiable.
fn resolve_range(range: RangeRequest, size: u64) -> Option<(u64, u64)> {
    match range {
        RangeRequest::From { start, end } => {
            if start >= size {
                return None;
            }
            let end = end.map_or(size, |end| end.saturating_add(1).min(size));
            Some((start, end))
        }
        RangeRequest::Suffix { len } => {
            if len == 0 || size == 0 {
                return None;
            }
            Some((size.saturating_sub(len), size))
        }
    }
}

fn not_satisfiable(size: u64) -> Response {
    let mut response = ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "invalid_range",
        format!("the range is outside the blob of {size} bytes"),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, value);
    }
    response
}

/// Streams a blob, fetching it from peers first when this node does not hold it.
///
/// Supports a single `Range: bytes=...` (answered with 206 and `Content-Range`).
#[utoipa::path(get, path = "/v1/blobs/{cid}", tag = "blobs",
    params(("cid" = String, Path, description = "the blob's CID"),
        ("Range" = Option<String>, Header, nullable = false,
            description = "one byte range, e.g. bytes=0-99")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 416, body = ErrorBody)))]
pub(crate) async fn get_blob(
    State(state): State<AppState>,
    Path(cid): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let cid = parse_cid(&cid)?;
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(value) => parse_range(value.to_str().unwrap_or_default()).map_err(|()| {
            ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalid_range",
                "malformed Range header",
            )
        })?,
    };
    let blobs = &state.shared.blobs;
    let size = match blobs.stat(&cid).await.map_err(blob_error)? {
        BlobState::Complete { size } => size,
        _ => {
            // Ask the connected peers first, so that a blob nobody has is a quick 404
            // rather than a wait for the fetch deadline.
            let lookup = NetLookup::new(state.shared.net.clone());
            let providers = cosmic_blobs::AddressLookup::providers(&lookup, &cid).await;
            if providers.is_empty() {
                return Err(ApiError::not_found(
                    "blob_not_found",
                    format!("blob {cid} is neither here nor held by a connected peer"),
                ));
            }
            let mut options = FetchOptions::new().cancel(state.cancel.child_token());
            for provider in providers {
                options = options.provider(provider);
            }
            blobs.fetch(&cid, options).await.map_err(blob_error)?.size
        }
    };
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, size),
        Some(range) => match resolve_range(range, size) {
            Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end),
            None => return Ok(not_satisfiable(size)),
        },
    };
    let stream = blobs.read(&cid, start..end).await.map_err(blob_error)?;
    let counter = state
        .shared
        .metrics
        .blob_bytes
        .get_or_create(&DirectionLabels { direction: "out" })
        .clone();
    let stream = stream
        .inspect_ok(move |bytes| {
            counter.inc_by(bytes.len() as u64);
        })
        .map_err(io::Error::other);
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{cid}\"")) {
        headers.insert(header::ETAG, etag);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{size}", end.saturating_sub(1));
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}

/// Whether this node holds the whole blob, and its size (no fetch from peers).
#[utoipa::path(head, path = "/v1/blobs/{cid}", tag = "blobs",
    params(("cid" = String, Path, description = "the blob's CID")),
    responses((status = 200, description = "held here; Content-Length is its size"),
        (status = 400, description = "not a CID"), (status = 404, description = "not held here")))]
pub(crate) async fn head_blob(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> ApiResult<Response> {
    let cid = parse_cid(&cid)?;
    match state.shared.blobs.stat(&cid).await.map_err(blob_error)? {
        BlobState::Complete { size } => Ok((
            [
                (header::CONTENT_LENGTH, HeaderValue::from(size)),
                (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
                (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
            ],
            Body::empty(),
        )
            .into_response()),
        _ => Err(ApiError::not_found("blob_not_found", format!("blob {cid} is not held here"))),
    }
}

/// The answer to an unpin.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Unpinned {
    /// The blob's CID.
    cid: String,
    /// Whether a pin was removed (the blob goes at the next garbage collection).
    unpinned: bool,
}

/// Unpins a blob so that garbage collection may remove it.
#[utoipa::path(delete, path = "/v1/blobs/{cid}", tag = "blobs",
    params(("cid" = String, Path, description = "the blob's CID")),
    responses((status = 200, body = Unpinned), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_blob(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> ApiResult<axum::Json<Unpinned>> {
    let cid = parse_cid(&cid)?;
    let unpinned = state.shared.blobs.unpin(&cid).await.map_err(blob_error)?;
    if !unpinned
        && matches!(state.shared.blobs.stat(&cid).await.map_err(blob_error)?, BlobState::Missing)
    {
        return Err(ApiError::not_found("blob_not_found", format!("blob {cid} is not held here")));
    }
    Ok(axum::Json(Unpinned { cid: cid.to_string(), unpinned }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_resolve_like_rfc_9110() {
        let parse = |text| parse_range(text).expect("well formed").expect("a range");
        assert_eq!(resolve_range(parse("bytes=0-99"), 1000), Some((0, 100)));
        assert_eq!(resolve_range(parse("bytes=990-2000"), 1000), Some((990, 1000)));
        assert_eq!(resolve_range(parse("bytes=10-"), 1000), Some((10, 1000)));
        assert_eq!(resolve_range(parse("bytes=-10"), 1000), Some((990, 1000)));
        assert_eq!(resolve_range(parse("bytes=-5000"), 1000), Some((0, 1000)));
        assert_eq!(resolve_range(parse("bytes=1000-"), 1000), None);
        assert_eq!(resolve_range(parse("bytes=-0"), 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6"), Ok(None));
        assert_eq!(parse_range("lines=1-2"), Ok(None));
        for bad in ["bytes=", "bytes=-", "bytes=a-b", "bytes=5-1", "bytes=1"] {
            assert_eq!(parse_range(bad), Err(()), "{bad}");
        }
    }
}
