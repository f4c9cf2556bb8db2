//! The change stream of a space, as Server-Sent Events.

use super::*;

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
            // Sequence numbers are documented (and served) as signed 64-bit integers.
            let id = text.parse::<u64>().ok().filter(|id| i64::try_from(*id).is_ok());
            Some(id.ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_last_event_id",
                    format!("Last-Event-ID {text:?} is not a sequence number"),
                )
            })?)
        }
    };
    if let Some(since) = query.since.filter(|since| i64::try_from(*since).is_err()) {
        return Err(ApiError::bad_request(
            "invalid_since",
            format!("since {since} is beyond the largest sequence number, {}", i64::MAX),
        ));
    }
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
                    Event::default().event("error").data(super::super::error::chain(&error))
                }
            };
            Ok::<_, Infallible>(event)
        })
        .take_until(state.cancel.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}
