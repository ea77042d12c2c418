//! Driving the real router in-process (`oneshot`, no socket) over a real
//! node and store.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wasmjob::api::{ApiState, router};

pub const ADMIN: &str = "wj_admin_test-admin-secret";

/// A node serving tasks, its router, and tokens for two tenants.
pub struct Api {
    pub node: Arc<wasmjob::node::Node>,
    pub state: ApiState,
    router: axum::Router,
    /// The operations (method and path template) that answered a success.
    pub succeeded: Mutex<BTreeSet<(String, &'static str)>>,
    pub _stop: tokio::sync::watch::Sender<bool>,
    _dir: crate::support::Place,
}

/// An answer: status and body (JSON, or a JSON string for text).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl std::fmt::Display for Answer {
    /// `404 Not Found {"error": ...}`: what a failed assertion shows.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

impl Answer {
    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Api {
    /// A fresh node with `concurrency` workers, serving.
    pub async fn start(concurrency: usize) -> Self {
        Self::start_with(concurrency, |_| {}).await
    }

    /// A fresh node with `concurrency` workers and the config `adjust`
    /// makes, serving.
    pub async fn start_with(concurrency: usize, adjust: impl FnOnce(&mut wasmjob::node::NodeConfig)) -> Self {
        let dir = crate::support::place(crate::support::Backend::Sqlite).await;
        let mut config = crate::support::node_config(&dir);
        config.concurrency = concurrency;
        adjust(&mut config);
        let node = Arc::new(wasmjob::node::Node::open(config, false).await.unwrap());
        node.auth.ensure_admin(Some(ADMIN)).await.unwrap();
        let state = ApiState { node: node.clone() };
        let (stop, _) = crate::support::serve(&node);
        let router = router(state.clone());
        Self { node, state, router, succeeded: Mutex::default(), _stop: stop, _dir: dir }
    }

    /// Sends a request; `body` is JSON unless `raw` bytes are given. Every
    /// answer is checked against the OpenAPI document
    /// ([`crate::openapi_support::check`]).
    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        let bytes = body.map(|b| b.to_string().into_bytes());
        self.send_bytes(method, path, token, bytes, "application/json").await
    }

    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> Answer {
        let mut request = Request::builder().method(method.clone()).uri(path).header("content-type", content_type);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let answered = response.headers().get("content-type").and_then(|c| c.to_str().ok()).map(str::to_owned);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        crate::openapi_support::check(&method, path, status, answered.as_deref(), &body);
        if status.is_success()
            && let Some((template, _)) = crate::openapi_support::operation(&method, path)
        {
            self.succeeded.lock().unwrap().insert((method.to_string(), template));
        }
        Answer { status, body }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(token), Some(body)).await
    }

    /// Creates tenant `name` with quota overrides; returns a write and a read token.
    pub async fn tenant(&self, name: &str, quotas: Value) -> (String, String) {
        let created = self.post("/v1/tenants", ADMIN, json!({ "name": name, "quotas": quotas })).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let token = |scope: &'static str| async move {
            let answer = self.post(&format!("/v1/tenants/{name}/tokens"), ADMIN, json!({ "scope": scope })).await;
            assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
            answer.body["token"].as_str().unwrap().to_owned()
        };
        (token("write").await, token("read").await)
    }

    /// Opens `token`'s event stream (`GET /v1/events`), resuming after
    /// `last` if given.
    pub async fn events(&self, token: &str, last: Option<&str>) -> EventStream {
        let mut request = Request::builder().uri("/v1/events").header("authorization", format!("Bearer {token}"));
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        let response = self.router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let answered = response.headers().get("content-type").and_then(|c| c.to_str().ok()).unwrap_or_default();
        assert!(answered.starts_with("text/event-stream"), "the stream answered as `{answered}`");
        self.succeeded.lock().unwrap().insert(("GET".into(), "/v1/events"));
        EventStream { body: response.into_body().into_data_stream(), buffer: String::new() }
    }

    /// Uploads an example component as `token`'s tenant.
    pub async fn upload(&self, token: &str, path: &str) -> Answer {
        let bytes = std::fs::read(path).unwrap();
        self.send_bytes(Method::POST, "/v1/jobs?wait=300s", Some(token), Some(bytes), "application/wasm").await
    }

    /// Queues a task and returns its id.
    pub async fn queue(&self, token: &str, job: &str, args: Value) -> String {
        let answer = self.post("/v1/tasks", token, json!({ "job": job, "args": args })).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.body["id"].as_str().unwrap().to_owned()
    }

    /// Waits for a task to end.
    pub async fn wait(&self, token: &str, id: &str) -> Value {
        let answer = self.get(&format!("/v1/tasks/{id}/wait?timeout=60s"), token).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.body
    }
}

/// A message of an event stream: an event, or a notice (`lost`, `reset`).
#[derive(Debug, Clone)]
pub struct Message {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// An open event stream, read message by message.
pub struct EventStream {
    body: axum::body::BodyDataStream,
    buffer: String,
}

impl EventStream {
    /// The next message, or `None` if none comes within `within` (or the
    /// stream ended). Comments (keep-alives) are skipped.
    pub async fn next(&mut self, within: std::time::Duration) -> Option<Message> {
        use futures_util::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, Vec::new());
                for line in block.lines() {
                    match line.split_once(':') {
                        Some(("id", v)) => id = Some(v.trim_start().to_owned()),
                        Some(("event", v)) => event = Some(v.trim_start().to_owned()),
                        Some(("data", v)) => data.push(v.trim_start().to_owned()),
                        _ => {}
                    }
                }
                if let Some(event) = event {
                    let data = serde_json::from_str(&data.join("\n")).expect("an event's data is JSON");
                    return Some(Message { id, event, data });
                }
                continue;
            }
            let chunk = tokio::time::timeout(within, self.body.next()).await.ok()??.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Messages until one satisfies `until` (included), each within
    /// `within` of the previous; panics naming what came if none does.
    pub async fn until(&mut self, within: std::time::Duration, until: impl Fn(&Message) -> bool) -> Vec<Message> {
        let mut seen = Vec::new();
        loop {
            match self.next(within).await {
                Some(message) => {
                    let done = until(&message);
                    seen.push(message);
                    if done {
                        return seen;
                    }
                }
                None => panic!("the stream went quiet for {within:?} before the awaited message; it gave {seen:#?}"),
            }
        }
    }
}
