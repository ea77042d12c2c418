//! `/v1/events`: a tenant's events as Server-Sent Events ([`crate::events`]).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as Message, KeepAlive, Sse};
use futures_util::Stream;

use super::{ApiError, ApiState, Caller};
use crate::events::{Delivery, Stamped, Start, Subscription};
use crate::wire::Notice;

/// The longest `Last-Event-ID` looked up; a longer one is no id of ours.
/// Default 64 bytes.
const MAX_ID: usize = 64;
/// How often an idle stream sends a comment, so that proxies keep it open
/// and a client that left is noticed. Default 15 s.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /v1/events`: the caller's tenant's events from now on, or, with
/// `Last-Event-ID`, from after that event if it is still kept (else the
/// stream starts with a `reset` notice). Each message's `event` is the
/// event's type, its `data` the [`crate::wire::Event`]; a client that falls
/// behind gets a `lost` notice in place of what it missed.
#[utoipa::path(get, path = "/events", operation_id = "streamEvents", tag = "events",
    params(("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received: the \
        stream resumes after it.")),
    responses((status = 200, description = "Server-Sent Events: each message's `data` is an `Event` (or a \
        `Notice`, for the `lost` and `reset` messages), its `event` the type, its `id` what resumes the stream.",
        content_type = "text/event-stream", body = crate::wire::Event)))]
pub async fn stream(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Message, Infallible>>>, ApiError> {
    let tenant = caller.reader()?;
    // An id that cannot be ours (not text, too long) resumes nothing.
    let last = headers.get("last-event-id").map(|v| v.to_str().ok().filter(|id| id.len() <= MAX_ID).unwrap_or(""));
    let mut subscription = state.node.signals.events.subscribe(tenant, last);
    let first: VecDeque<Message> = match std::mem::replace(&mut subscription.start, Start::Now) {
        Start::Now => VecDeque::new(),
        Start::Resumed(missed) => missed.iter().map(|e| message(e)).collect(),
        Start::Reset => VecDeque::from([notice(
            "reset",
            "the last event id given is no longer kept: events may have been missed; re-read what you show",
        )]),
    };
    let stream = futures_util::stream::unfold((first, subscription), next);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The stream's next message.
async fn next(
    (mut first, mut subscription): (VecDeque<Message>, Subscription),
) -> Option<(Result<Message, Infallible>, (VecDeque<Message>, Subscription))> {
    let message = match first.pop_front() {
        Some(message) => message,
        None => match subscription.next().await? {
            Delivery::Event(event) => message(&event),
            Delivery::Lost => notice("lost", "this stream fell behind and events were dropped: re-read what you show"),
        },
    };
    Some((Ok(message), (first, subscription)))
}

fn message(event: &Stamped) -> Message {
    let data = serde_json::to_string(&event.event).expect("events serialize");
    Message::default().id(&event.id).event(event.event.kind.as_str()).data(data)
}

fn notice(kind: &str, message: &str) -> Message {
    let data = serde_json::to_string(&Notice { message: message.into() }).expect("notices serialize");
    Message::default().event(kind).data(data)
}
