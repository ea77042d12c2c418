//! A job written without the SDK or an HTTP library: the contract through
//! raw wit-bindgen, `wasi:http` through its plain bindings, used in ways a
//! library would not. `args.mode`:
//! - `no-body`: a GET whose body is never asked for;
//! - `abandoned-body`: a POST whose body is written to, then dropped
//!   unfinished;
//! - `flood`: 100 requests started before any is awaited.
//!
//! Answers `{"answers": [...]}`: per request its status or its error code.
//!
//! It is built against the contract's first version, `wasmjob:job@0.1.0`
//! (`wit/v0.1.0/`), which the engine still runs: the tests that run it are
//! the proof.

mod bindings {
    wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "wasmjob:job/job" });
}

use bindings::wasmjob::job::types::{DocSyntax, Due, JobError, JobKind, Limits, Metadata, Overlap, RetryPolicy};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, FutureIncomingResponse, Method, OutgoingRequest, Scheme};

struct Raw;

impl bindings::Guest for Raw {
    fn metadata() -> Metadata {
        Metadata {
            name: "raw-http".into(),
            doc: String::new(),
            doc_syntax: DocSyntax::Plain,
            kind: JobKind::Regular,
            overlap: Overlap::Allow,
            expiry: None,
            limits: Limits { fuel: None, timeout: None, memory_bytes: None },
            retry: RetryPolicy {
                max_retries: 0,
                initial_backoff: 1000,
                max_backoff: 1000,
                retry_on_trap: false,
                retry_on_timeout: false,
            },
        }
    }

    fn call(args: String) -> Result<String, JobError> {
        // `{"mode": "...", "authority": "127.0.0.1:port"}`, parsed by hand.
        let field = |name: &str| -> String {
            let key = format!("\"{name}\":");
            let start = args.find(&key).map(|i| i + key.len()).unwrap_or(args.len());
            args[start..].trim_start().trim_start_matches('"').split('"').next().unwrap_or("").to_owned()
        };
        let (mode, authority) = (field("mode"), field("authority"));
        let request = |method: Method| {
            let request = OutgoingRequest::new(Fields::new());
            request.set_method(&method).unwrap();
            request.set_scheme(Some(&Scheme::Http)).unwrap();
            request.set_authority(Some(&authority)).unwrap();
            request.set_path_with_query(Some("/hello")).unwrap();
            request
        };
        let futures: Vec<FutureIncomingResponse> = match mode.as_str() {
            "no-body" => vec![handle(request(Method::Get))],
            "abandoned-body" => {
                let post = request(Method::Post);
                let body = post.body().unwrap();
                let future = handle(post);
                let stream = body.write().unwrap();
                let _ = stream.blocking_write_and_flush(b"half a body");
                drop(stream);
                drop(body); // never finished
                vec![future]
            }
            "flood" => (0..100).map(|_| handle(request(Method::Get))).collect(),
            other => return Err(JobError::Fatal(format!("unknown mode {other:?}"))),
        };
        let answers: Vec<String> = futures.iter().map(answer).collect();
        Ok(format!("{{\"answers\": [{}]}}", answers.join(", ")))
    }

    fn overlap_key(_args: String) -> Option<String> {
        None
    }

    fn is_due(_last_run_at: i64, _now: i64) -> Due {
        Due { is_due: false, next_run_in: 0 }
    }
}

/// Sends `request`; an immediate refusal becomes a future that holds it.
fn handle(request: OutgoingRequest) -> FutureIncomingResponse {
    match outgoing_handler::handle(request, None) {
        Ok(future) => future,
        Err(code) => panic!("handle refused at once: {code:?}"),
    }
}

/// `"200"` or the error code's name, as a JSON string.
fn answer(future: &FutureIncomingResponse) -> String {
    future.subscribe().block();
    let text = match future.get() {
        Some(Ok(Ok(response))) => response.status().to_string(),
        Some(Ok(Err(code))) => {
            format!("{code:?}").trim_start_matches("ErrorCode::").split('(').next().unwrap_or("").to_owned()
        }
        Some(Err(())) => "taken twice".into(),
        None => "not ready".into(),
    };
    format!("\"{text}\"")
}

bindings::export!(Raw with_types_in bindings);
