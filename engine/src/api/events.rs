//! `/v1/events`: a tenant's events as Server-Sent Events ([`crate::events`]).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as Message, KeepAlive, Sse};
use futures_util::Stream;

use super::{ApiError, ApiState, Caller};
use crate::events::{Delivered, Delivery, Start, SubscribeError, Subscription};
use crate::node::Node;
use crate::wire::Notice;

/// The longest `Last-Event-ID` looked up; a longer one is no id of ours.
/// Default 64 bytes.
const MAX_ID: usize = 64;
/// How often an idle stream sends a comment, so that proxies keep it open
/// and a client that left is noticed. Default 15 s.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often an open stream checks its token again: a token revoked (or a
/// tenant's access withdrawn) ends its streams within this. Default 1 s
/// (a check is a lookup in the node's token cache).
const RECHECK: Duration = Duration::from_secs(1);

/// `GET /v1/events`: the caller's tenant's events from now on, or, with
/// `Last-Event-ID`, from after that event if this node still keeps it
/// (else the stream starts with a `reset` notice). Each message's `event`
/// is the event's type, its `data` the [`crate::wire::Event`]; a client
/// that falls behind gets a `lost` notice in place of what it missed. The
/// stream ends when its token is revoked or the node stops.
#[utoipa::path(get, path = "/events", operation_id = "streamEvents", tag = "events",
    params(("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received from \
        this node: the stream resumes after it.")),
    responses(
        (status = 200, description = "Server-Sent Events: each message's `data` is an `Event` (or a `Notice`, \
            for the `lost` and `reset` messages), its `event` the type, its `id` what resumes the stream.",
            content_type = "text/event-stream", body = crate::wire::EventData),
        (status = 429, description = "Too many streams of the tenant are open on this node.",
            body = crate::wire::ErrorBody),
    ))]
pub async fn stream(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Message, Infallible>>>, ApiError> {
    let tenant = caller.reader()?;
    // An id that cannot be ours (not text, too long) resumes nothing.
    let last = headers.get("last-event-id").map(|v| v.to_str().ok().filter(|id| id.len() <= MAX_ID).unwrap_or(""));
    let mut subscription = state.node.signals.events.subscribe(tenant, last).map_err(|e| match e {
        SubscribeError::TooMany => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", e.to_string()),
        SubscribeError::Stopping => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", e.to_string()),
    })?;
    let (first, reset) = match std::mem::replace(&mut subscription.start, Start::Now) {
        Start::Now => (VecDeque::new(), false),
        Start::Resumed(missed) => (missed, false),
        Start::Reset => (VecDeque::new(), true),
    };
    // The caller authenticated with this header; it is checked again while
    // the stream is open.
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let open =
        Open { reset, first, subscription, node: state.node.clone(), token, checked: tokio::time::Instant::now() };
    let stream = futures_util::stream::unfold(open, next);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// An open stream.
struct Open {
    /// A `reset` notice is due first.
    reset: bool,
    /// Events missed since the `Last-Event-ID`, due next.
    first: VecDeque<Delivered>,
    subscription: Subscription,
    node: Arc<Node>,
    token: String,
    checked: tokio::time::Instant,
}

/// The stream's next message; `None` ends it.
async fn next(mut open: Open) -> Option<(Result<Message, Infallible>, Open)> {
    if std::mem::take(&mut open.reset) {
        let text =
            "the last event id given is not kept by this node: events may have been missed; re-read what you show";
        return Some((Ok(notice("reset", text)), open));
    }
    if let Some(event) = open.first.pop_front() {
        return Some((Ok(message(&event)), open));
    }
    loop {
        let recheck = open.checked + RECHECK;
        tokio::select! {
            delivery = open.subscription.next() => {
                let message = match delivery? {
                    Delivery::Event(event) => message(&event),
                    Delivery::Lost => notice("lost", "this stream fell behind and events were dropped: re-read what you show"),
                };
                return Some((Ok(message), open));
            }
            _ = tokio::time::sleep_until(recheck) => {
                // Revoked (or unreadable: the store is down) ends it; the
                // client reconnects and is told why.
                match open.node.auth.authenticate(&open.token).await {
                    Ok(Some(_)) => open.checked = tokio::time::Instant::now(),
                    _ => return None,
                }
            }
        }
    }
}

fn message(event: &Delivered) -> Message {
    let data = serde_json::to_string(&event.event.event).expect("events serialize");
    Message::default().id(&event.id).event(event.event.event.kind.as_str()).data(data)
}

fn notice(kind: &str, message: &str) -> Message {
    let data = serde_json::to_string(&Notice { message: message.into() }).expect("notices serialize");
    Message::default().event(kind).data(data)
}
