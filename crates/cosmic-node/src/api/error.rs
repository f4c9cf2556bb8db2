//! The API's error shape, `{"error": {"code": "...", "message": "..."}}`, and the
//! extractors whose rejections take that shape too.
//!
//! Every bad input is a 4xx with a stable `code`; a 5xx means a fault of the node itself
//! (a failing disk, a stopped task), never something the client sent.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// The code and message of an error answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// A stable, machine-readable code such as `invalid_key` or `unknown_space`.
    code: String,
    /// What went wrong, for people.
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token: send `Authorization: Bearer <token from api.token>`",
        )
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    fn internal_code(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "API request failed");
        }
        let body =
            ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The message of an error with its causes, `a: b: c`.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let message = chain(&error);
        match &error {
            Error::UnknownSpace { .. } => Self::not_found("unknown_space", message),
            Error::DocNotFound { .. } => Self::not_found("doc_not_found", message),
            Error::NotAdmin { .. } => Self::new(StatusCode::FORBIDDEN, "forbidden", message),
            Error::TooManyKept { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "too_many_kept", message)
            }
            Error::UnknownAuthor { .. } => Self::bad_request("unknown_author", message),
            Error::Store(store) => from_store(store, message),
            Error::Net(net) => from_net(net, message),
            Error::Blobs(blobs) => super::blobs::blob_error_ref(blobs, message),
            Error::Sync(cosmic_sync::Error::Store(store)) => from_store(store, message),
            Error::Sync(cosmic_sync::Error::Net(net)) => from_net(net, message),
            Error::Sync(cosmic_sync::Error::NotJoined { .. }) => {
                Self::not_found("not_joined", message)
            }
            _ => Self::internal(message),
        }
    }
}

fn from_store(error: &cosmic_store::Error, message: String) -> ApiError {
    use cosmic_store::Error as E;
    match error {
        E::InvalidKey { .. } => ApiError::bad_request("invalid_key", message),
        E::InvalidValue { .. } => ApiError::bad_request("invalid_value", message),
        E::ValueTooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "value_too_large", message)
        }
        // A write or a statement (a grant) its author or issuer holds no right to make.
        E::AccessDenied { .. } | E::UnauthorizedStatement { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
        }
        E::QuotaExceeded { .. } => ApiError::new(StatusCode::FORBIDDEN, "quota_exceeded", message),
        E::UnknownSpace { .. } => ApiError::not_found("unknown_space", message),
        E::BadSignature { .. } | E::BadStatement { .. } | E::Decode { .. } => {
            ApiError::bad_request("invalid_input", message)
        }
        E::ClockDrift { .. } => ApiError::bad_request("clock_drift", message),
        // The node's own disk, not the client's input: retry once space is freed (the store
        // reopens its file by itself); reads keep working meanwhile.
        E::Io { .. } if error.is_disk_full() => {
            ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", message)
        }
        E::Io { .. } => ApiError::internal_code("storage_failed", message),
        E::Corrupted { .. } => ApiError::internal_code("database_corrupted", message),
        _ => ApiError::internal(message),
    }
}

fn from_net(error: &cosmic_net::Error, message: String) -> ApiError {
    use cosmic_net::Error as E;
    match error {
        // The address was well formed but nobody useful answered there: the client's
        // input, not a fault of this node.
        E::Dial { .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "dial_failed", message),
        E::Shutdown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message),
        _ => ApiError::internal(message),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "invalid_json",
        };
        // A 5xx from the body reader would be the client hanging up; report it as input.
        let status = if status.is_client_error() { status } else { StatusCode::BAD_REQUEST };
        Self::new(status, code, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request("invalid_path", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request("invalid_query", rejection.body_text())
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub(crate) struct Json<T>(pub(crate) T);

/// `axum::extract::Path` whose rejections are [`ApiError`]s.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct Path<T>(pub(crate) T);

/// `axum::extract::Query` whose rejections are [`ApiError`]s.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct Query<T>(pub(crate) T);

/// The answer type of handlers.
pub(crate) type ApiResult<T> = Result<T, ApiError>;
