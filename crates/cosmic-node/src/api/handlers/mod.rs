//! The route handlers of the API, each annotated for the OpenAPI document, one module per
//! group of routes; what they share (imports, limits) is here.

mod docs;
mod events;
mod node;
mod spaces;

pub(crate) use docs::*;
pub(crate) use events::*;
pub(crate) use node::*;
pub(crate) use spaces::*;

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
