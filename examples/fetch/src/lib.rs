//! Fetches URLs over `wasi:http` (with the SDK's `http` client), as a crawler's
//! fetch step would: one URL, following redirects itself (each hop is a new
//! request, checked again by the engine's egress policy), or several at once.
//! A network error is part of the answer (`"error"`): the job decides what
//! it means, and the tests read the error code the engine gave.

use std::collections::BTreeMap;

use futures_concurrency::future::Join;
use wasmjob_sdk::http::{self, Body, Client, HttpError, Request};
use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {
    /// Fetch this URL...
    #[serde(default)]
    url: Option<String>,
    /// ...or all of these at once.
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default = "get")]
    method: String,
    /// A request body.
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Redirects to follow. Default 0.
    #[serde(default)]
    follow: u32,
    /// Send the same request this many times, one after another. Default 1.
    #[serde(default = "one")]
    repeat: u32,
}

fn get() -> String {
    "GET".into()
}

fn one() -> u32 {
    1
}

#[derive(Serialize, Default)]
struct Fetched {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    /// Body bytes read.
    bytes: usize,
    /// The body's first 200 bytes, as text.
    head: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

struct Fetch;

impl Job for Fetch {
    type Args = Args;
    type Output = Vec<Fetched>;

    fn metadata() -> Metadata {
        Metadata::regular().doc("Fetch URLs over wasi:http")
    }

    fn call(_ctx: &Context, args: Args) -> Result<Vec<Fetched>, Error> {
        http::block_on(async move {
            let mut answers = Vec::new();
            if let Some(url) = &args.url {
                for _ in 0..args.repeat {
                    answers.push(fetch(&args, url.clone()).await);
                }
            }
            let all = args.urls.iter().map(|url| fetch(&args, url.clone()));
            answers.extend(all.collect::<Vec<_>>().join().await);
            Ok(answers)
        })
    }
}

/// Fetches `url`, following up to `args.follow` redirects.
async fn fetch(args: &Args, mut url: String) -> Fetched {
    let client = Client::new();
    let mut hops = 0;
    loop {
        let mut request = Request::builder().method(args.method.as_str()).uri(&url);
        for (name, value) in &args.headers {
            request = request.header(name, value);
        }
        let body = args.body.clone().map(Body::from).unwrap_or_else(Body::empty);
        let answer = match request.body(body) {
            Ok(request) => client.send(request).await,
            Err(e) => Err(e.into()),
        };
        let mut response = match answer {
            Ok(response) => response,
            Err(e) => return Fetched { url, error: Some(describe(&e)), ..Fetched::default() },
        };
        let status = response.status().as_u16();
        let location = response.headers().get("location").and_then(|l| l.to_str().ok()).map(String::from);
        if (300..400).contains(&status) && hops < args.follow {
            if let Some(next) = location {
                hops += 1;
                url = next;
                continue;
            }
        }
        return match response.body_mut().contents().await {
            Ok(bytes) => Fetched {
                url,
                status: Some(status),
                bytes: bytes.len(),
                head: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
                error: None,
            },
            Err(e) => Fetched { url, status: Some(status), error: Some(describe(&e)), ..Fetched::default() },
        };
    }
}

/// The `wasi:http` error code if there is one, else the error's text.
fn describe(e: &HttpError) -> String {
    match http::error_code(e) {
        Some(code) => format!("{code:?}").trim_start_matches("ErrorCode::").to_owned(),
        None => format!("{e:#}"),
    }
}

export_job!(Fetch);
