//! Jobs reach the network only where their tenant's egress policy allows,
//! and only within their limits; a hostile server or job gets a clear error
//! or outcome, and the engine keeps serving.
//!
//! The tests run the `fetch` example against servers on 127.0.0.1 that they
//! start, under a runtime whose operator allows loopback (as an operator
//! must, explicitly: a tenant cannot) and trusts the tests' own CA. They
//! run on several threads, as the engine does: a request's error then
//! races the guest's writes of its body, and the guest must still read the
//! request's own error code.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};
use tokio_rustls::rustls;
use wasmjob::egress::{AllowList, EgressConfig, Grant, HttpLimits};
use wasmjob::runtime::{JobComponent, Outcome, RecordingQueue, Runtime, RuntimeConfig, TaskInput, TaskReport};

use crate::support::{RUNTIME, assert_engine_still_works};

/// The tests' CA: a self-signed certificate for `localhost` and 127.0.0.1,
/// its PEM file (the operator's CA bundle) and its key.
struct TestCa {
    cert_pem: String,
    key_pem: String,
    bundle: tempfile::NamedTempFile,
}

static CA: LazyLock<TestCa> = LazyLock::new(|| {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.self_signed(&key).unwrap();
    let bundle = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bundle.path(), cert.pem()).unwrap();
    TestCa { cert_pem: cert.pem(), key_pem: key.serialize_pem(), bundle }
});

/// A runtime whose operator allows loopback and trusts [`CA`].
static EGRESS_RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    let egress = EgressConfig { allow_networks: vec!["127.0.0.0/8".into()], ca_bundle: Some(CA.bundle.path().into()) };
    Runtime::new(RuntimeConfig { max_instances: 50, egress, ..RuntimeConfig::default() }).unwrap()
});

/// What the test server saw.
#[derive(Default)]
pub(crate) struct Seen {
    /// The `Host` headers of every request.
    hosts: Mutex<Vec<String>>,
    /// Connections of `/hang` whose client went away.
    hung_up: AtomicU64,
    /// Calls of `/hook`, and the idempotency keys they carried.
    hooks: Mutex<Vec<String>>,
    /// The `Authorization` headers of the calls of `/hook`.
    authorizations: Mutex<Vec<String>>,
}

/// Starts the test server on 127.0.0.1; returns its address.
pub(crate) async fn server() -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        // A webhook receiver that fails twice, then takes the delivery.
        .route(
            "/hook",
            axum::routing::post(|State(seen): State<Arc<Seen>>, headers: HeaderMap| async move {
                let header = |name: &str| headers.get(name).and_then(|k| k.to_str().ok()).unwrap_or("").to_owned();
                let key = header("idempotency-key");
                seen.authorizations.lock().unwrap().push(header("authorization"));
                let mut hooks = seen.hooks.lock().unwrap();
                hooks.push(key);
                if hooks.len() <= 2 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }
            }),
        )
        .route("/refuse", axum::routing::post(|| async { StatusCode::NOT_FOUND }))
        // A small site: a links to b and c, b to c and a, c nowhere.
        .route(
            "/site/{page}",
            get(|axum::extract::Path(page): axum::extract::Path<String>| async move {
                let links: &[&str] = match page.as_str() {
                    "a" => &["/site/b", "/site/c"],
                    "b" => &["/site/c", "/site/a"],
                    _ => &[],
                };
                let body: String = links.iter().map(|l| format!("<a href=\"{l}\">{l}</a>\n")).collect();
                axum::response::Html(body)
            }),
        )
        .route(
            "/redirect",
            get(|Query(q): Query<Value>| async move {
                (StatusCode::FOUND, [(header::LOCATION, q["to"].as_str().unwrap_or("/").to_owned())], "")
            }),
        )
        .route("/echo", any(|body: axum::body::Bytes| async move { format!("{}", body.len()) }))
        .route(
            "/sleep",
            get(|Query(q): Query<Value>| async move {
                let ms = q["ms"].as_str().and_then(|m| m.parse().ok()).unwrap_or(100);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "slept"
            }),
        )
        // A gigabyte, streamed.
        .route(
            "/huge",
            get(|| async {
                let chunk = axum::body::Bytes::from(vec![b'x'; 64 << 10]);
                let chunks = futures_stream(16_384, chunk, Duration::ZERO);
                Response::builder().header(header::CONTENT_LENGTH, (1u64 << 30).to_string()).body(chunks).unwrap()
            }),
        )
        // One byte a second, for ever (slowloris).
        .route(
            "/drip",
            get(|| async {
                futures_stream(u64::MAX, axum::body::Bytes::from_static(b"x"), Duration::from_secs(1)).into_response()
            }),
        )
        // Answers never; notes when the client hangs up.
        .route(
            "/hang",
            get(|State(seen): State<Arc<Seen>>| async move {
                struct Noted(Arc<Seen>);
                impl Drop for Noted {
                    fn drop(&mut self) {
                        self.0.hung_up.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let _noted = Noted(seen);
                std::future::pending::<()>().await;
                "never"
            }),
        )
        .layer(axum::middleware::from_fn_with_state(seen.clone(), note_host))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

async fn note_host(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_owned();
    seen.hosts.lock().unwrap().push(host);
    next.run(request).await
}

/// `n` copies of `chunk`, `every` apart.
fn futures_stream(n: u64, chunk: axum::body::Bytes, every: Duration) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        for _ in 0..n {
            if !every.is_zero() {
                tokio::time::sleep(every).await;
            }
            if tx.send(Ok(chunk.clone())).await.is_err() {
                return;
            }
        }
    });
    let mut rx = rx;
    Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

static FETCH: tokio::sync::OnceCell<JobComponent> = tokio::sync::OnceCell::const_new();

async fn fetch_job(runtime: &Runtime) -> JobComponent {
    let bytes = std::fs::read(wasmjob::examples::FETCH).unwrap();
    runtime.load(&bytes).await.unwrap()
}

/// A node with `concurrency` workers whose operator allows loopback,
/// serving `tenant`, which may reach `host` and has `job` uploaded; the
/// tenant's write token.
pub(crate) async fn serving(
    concurrency: usize,
    tenant: &str,
    host: &str,
    job: &str,
) -> (crate::api_support::Api, String) {
    use crate::api_support::{ADMIN, Api};
    let api =
        Api::start_with(concurrency, |config| config.runtime.egress.allow_networks = vec!["127.0.0.0/8".into()]).await;
    let (write, _) = api.tenant(tenant, json!({})).await;
    let allowed = json!({ "quotas": { "allowed_hosts": [host] } });
    let path = format!("/v1/tenants/{tenant}");
    let changed = api.send(axum::http::Method::PATCH, &path, Some(ADMIN), Some(allowed)).await;
    assert_eq!(changed.status, StatusCode::OK, "{changed}");
    let uploaded = api.upload(&write, job).await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{uploaded}");
    (api, write)
}

/// Runs `fetch` with `args` under the egress runtime, allowed `hosts`.
async fn fetch(args: Value, hosts: &[&str], limits: HttpLimits) -> TaskReport {
    let job = FETCH.get_or_init(|| fetch_job(&EGRESS_RUNTIME)).await;
    fetch_on(&EGRESS_RUNTIME, job, args, hosts, limits, Duration::from_secs(20)).await
}

async fn fetch_on(
    runtime: &Runtime,
    job: &JobComponent,
    args: Value,
    hosts: &[&str],
    limits: HttpLimits,
    timeout: Duration,
) -> TaskReport {
    let mut task_limits = runtime.task_limits(job);
    task_limits.timeout = timeout;
    let input = TaskInput {
        task_id: "t1".into(),
        attempt: 1,
        args: args.to_string(),
        limits: task_limits,
        children: Arc::new(RecordingQueue::default()),
        progress: Arc::new(wasmjob::runtime::NoProgress),
        egress: Grant { allow: AllowList::parse(hosts).unwrap(), narrow: None, limits },
        secrets: Default::default(),
    };
    runtime.run(job, input).await
}

/// The answers of a successful `fetch`.
fn answers(report: &TaskReport) -> Vec<Value> {
    match &report.outcome {
        Outcome::Success { result } => serde_json::from_str::<Vec<Value>>(result).unwrap(),
        other => panic!("the task did not succeed: {other:?}; log: {}", report.log),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_reaches_an_allowed_host_and_its_usage_is_reported() {
    let (addr, _) = server().await;
    let url = format!("http://127.0.0.1:{}/echo", addr.port());
    let report =
        fetch(json!({"url": url, "method": "POST", "body": "0123456789"}), &["127.0.0.1"], HttpLimits::default()).await;
    let answer = &answers(&report)[0];
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["head"], "10");
    assert_eq!(report.http.requests, 1);
    assert_eq!(report.http.bytes_sent, 10);
    assert_eq!(report.http.bytes_received, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_not_on_the_allow_list_is_denied_and_the_log_names_it() {
    let (addr, seen) = server().await;
    for hosts in [&[][..], &["localhost"], &["127.0.0.1:1"], &["https://127.0.0.1"]] {
        let url = format!("http://127.0.0.1:{}/hello", addr.port());
        let report = fetch(json!({ "url": url }), hosts, HttpLimits::default()).await;
        let answer = &answers(&report)[0];
        assert_eq!(answer["error"], "HttpRequestDenied", "allowed {hosts:?}: {answer}");
        assert!(report.log.contains(&format!("egress denied: http://127.0.0.1:{}", addr.port())), "{}", report.log);
        assert_eq!(report.http.requests, 0);
    }
    assert!(seen.hosts.lock().unwrap().is_empty(), "a denied request reached the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_address_is_refused_unless_the_operator_allows_it() {
    let (addr, seen) = server().await;
    // The shared runtime's operator allows no reserved range: a tenant that
    // allows every host still cannot reach loopback, by name or address.
    let job = fetch_job(&RUNTIME).await;
    for url in [
        format!("http://localhost:{}/hello", addr.port()),
        format!("http://127.0.0.1:{}/hello", addr.port()),
        format!("http://[::ffff:127.0.0.1]:{}/hello", addr.port()),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ] {
        let report =
            fetch_on(&RUNTIME, &job, json!({ "url": url }), &["*"], HttpLimits::default(), Duration::from_secs(20))
                .await;
        let answer = &answers(&report)[0];
        assert_eq!(answer["error"], "DestinationIpProhibited", "{url}: {answer}");
        assert!(report.log.contains("private or reserved address"), "{}", report.log);
        assert_eq!(report.http.requests, 0, "a refused request is not one made");
    }
    assert!(seen.hosts.lock().unwrap().is_empty(), "a refused request reached the server");
    // The operator's own allowance makes the same name reachable.
    let url = format!("http://localhost:{}/hello", addr.port());
    let report = fetch(json!({ "url": url }), &["localhost"], HttpLimits::default()).await;
    assert_eq!(answers(&report)[0]["head"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_host_header_cannot_widen_access() {
    let (addr, seen) = server().await;
    let url = format!("http://127.0.0.1:{}/hello", addr.port());
    let args = json!({ "url": url, "headers": {"Host": "allowed.example"} });
    let report = fetch(args, &["127.0.0.1", "allowed.example"], HttpLimits::default()).await;
    let answer = &answers(&report)[0];
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("orbidden")), "{answer}");
    assert!(!seen.hosts.lock().unwrap().iter().any(|h| h.contains("allowed.example")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_denied_host_is_checked_again() {
    let (addr, seen) = server().await;
    let port = addr.port();
    let url = format!("http://127.0.0.1:{port}/redirect?to=http://localhost:{port}/hello");
    let report = fetch(json!({ "url": url, "follow": 3 }), &["127.0.0.1"], HttpLimits::default()).await;
    let answer = &answers(&report)[0];
    assert_eq!(answer["error"], "HttpRequestDenied", "{answer}");
    assert_eq!(seen.hosts.lock().unwrap().len(), 1, "only the first hop reached the server");
    // Allowed, the same redirect is followed.
    let report = fetch(json!({ "url": url, "follow": 3 }), &["127.0.0.1", "localhost"], HttpLimits::default()).await;
    assert_eq!(answers(&report)[0]["head"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_response_is_cut_at_the_tasks_byte_limit() {
    let (addr, _) = server().await;
    let url = format!("http://127.0.0.1:{}/huge", addr.port());
    let limits = HttpLimits { max_received_bytes: 1 << 20, ..HttpLimits::default() };
    let started = Instant::now();
    let report = fetch(json!({ "url": url }), &["127.0.0.1"], limits).await;
    let answer = &answers(&report)[0];
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("body size exceeds limit: 1048576")), "{answer}");
    // Counted as received from the network: the limit plus the last read.
    assert!(report.http.bytes_received < 4 << 20, "{:?}", report.http);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_engine_still_works().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_over_the_limit_is_refused() {
    let (addr, _) = server().await;
    let url = format!("http://127.0.0.1:{}/echo", addr.port());
    let limits = HttpLimits { max_sent_bytes: 1000, ..HttpLimits::default() };
    let report = fetch(json!({ "url": url, "method": "POST", "body": "y".repeat(5000) }), &["127.0.0.1"], limits).await;
    let answer = &answers(&report)[0];
    assert!(answer["error"].is_string(), "{answer}");
    assert!(report.http.bytes_sent <= 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sending_a_byte_a_second_is_stopped_by_the_tasks_deadline() {
    let (addr, _) = server().await;
    let job = FETCH.get_or_init(|| fetch_job(&EGRESS_RUNTIME)).await;
    let url = format!("http://127.0.0.1:{}/drip", addr.port());
    let started = Instant::now();
    let report = fetch_on(
        &EGRESS_RUNTIME,
        job,
        json!({ "url": url }),
        &["127.0.0.1"],
        HttpLimits::default(),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(report.outcome, Outcome::DeadlineExceeded { timeout_ms: 2000 }, "{}", report.log);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_stopped_at_its_deadline_has_its_requests_cancelled() {
    let (addr, seen) = server().await;
    let job = FETCH.get_or_init(|| fetch_job(&EGRESS_RUNTIME)).await;
    let url = format!("http://127.0.0.1:{}/hang", addr.port());
    let args = json!({ "urls": [url.clone(), url] });
    let report =
        fetch_on(&EGRESS_RUNTIME, job, args, &["127.0.0.1"], HttpLimits::default(), Duration::from_millis(500)).await;
    assert_eq!(report.outcome, Outcome::DeadlineExceeded { timeout_ms: 500 });
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.hung_up.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the server still holds the task's requests");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_tasks_quota_are_denied() {
    let (addr, seen) = server().await;
    let url = format!("http://127.0.0.1:{}/hello", addr.port());
    let limits = HttpLimits { max_requests: 3, ..HttpLimits::default() };
    let report = fetch(json!({ "url": url, "repeat": 5 }), &["127.0.0.1"], limits).await;
    let errors: Vec<Value> = answers(&report).iter().map(|a| a["error"].clone()).collect();
    assert_eq!(errors, [Value::Null, Value::Null, Value::Null, json!("HttpRequestDenied"), json!("HttpRequestDenied")]);
    assert_eq!(report.http.requests, 3);
    assert_eq!(seen.hosts.lock().unwrap().len(), 3);
    assert!(report.log.contains("made its 3 requests"), "{}", report.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_in_flight_limit_are_refused_and_the_rest_run_concurrently() {
    let (addr, _) = server().await;
    let url = format!("http://127.0.0.1:{}/sleep?ms=300", addr.port());
    let limits = HttpLimits { max_in_flight: 2, ..HttpLimits::default() };
    let started = Instant::now();
    let report = fetch(json!({ "urls": [url, url, url, url] }), &["127.0.0.1"], limits).await;
    let answers = answers(&report);
    let slept = answers.iter().filter(|a| a["head"] == "slept").count();
    let refused = answers.iter().filter(|a| a["error"] == "ConnectionLimitReached").count();
    assert_eq!((slept, refused), (2, 2), "{answers:?}");
    assert!(started.elapsed() < Duration::from_millis(3000), "two 300 ms requests ran one after the other?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_reaches_a_server_the_operators_ca_bundle_trusts() {
    let port = tls_server().await;
    let url = format!("https://localhost:{port}/");
    let report = fetch(json!({ "url": url }), &["https://localhost"], HttpLimits::default()).await;
    let answer = &answers(&report)[0];
    assert_eq!(answer["head"], "tls hello", "{answer}");
    // Over plain HTTP to a TLS port, or without the bundle, it fails cleanly.
    let plain = Runtime::new(RuntimeConfig {
        max_instances: 10,
        egress: EgressConfig { allow_networks: vec!["127.0.0.0/8".into()], ca_bundle: None },
        ..RuntimeConfig::default()
    })
    .unwrap();
    let job = fetch_job(&plain).await;
    let report =
        fetch_on(&plain, &job, json!({ "url": url }), &["localhost"], HttpLimits::default(), Duration::from_secs(20))
            .await;
    assert_eq!(answers(&report)[0]["error"], "TlsCertificateError");
}

/// A TLS server on 127.0.0.1 with [`CA`]'s certificate that answers every
/// request with `tls hello`; returns its port.
async fn tls_server() -> u16 {
    use rustls::pki_types::pem::PemObject;
    let certs = vec![rustls::pki_types::CertificateDer::from_pem_slice(CA.cert_pem.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(CA.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ =
                    tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntls hello").await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_task_reaches_what_its_tenants_admin_allowed_and_its_usage_is_stored() {
    use crate::api_support::{ADMIN, Api};
    use axum::http::Method;
    let (addr, _) = server().await;
    let api = Api::start_with(2, |config| {
        config.runtime.egress.allow_networks = vec!["127.0.0.0/8".into()];
    })
    .await;
    let (write, _) = api.tenant("crawl", json!({})).await;
    let uploaded = api.upload(&write, wasmjob::examples::FETCH).await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    let url = format!("http://127.0.0.1:{}/echo", addr.port());
    let args = json!({ "url": url, "method": "POST", "body": "abc" });
    let run = |args: Value| {
        let (api, write) = (&api, &write);
        async move {
            let id = api.queue(write, "fetch", args).await;
            let task = api.wait(write, &id).await;
            let result: Value = task["result"].clone();
            (task, result[0].clone())
        }
    };
    let (task, answer) = run(args.clone()).await;
    assert_eq!(answer["error"], "HttpRequestDenied", "denied by default: {task}");
    assert_eq!(task["http"], json!({ "requests": 0, "bytes_sent": 0, "bytes_received": 0 }));
    let allowed = json!({ "quotas": { "allowed_hosts": ["http://127.0.0.1"] } });
    let answer = api.send(Method::PATCH, "/v1/tenants/crawl", Some(ADMIN), Some(allowed)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer}");
    let job = api.get("/v1/jobs/fetch", &write).await;
    assert_eq!(job.body["allowed_hosts"], json!(["http://127.0.0.1"]), "the job's view shows where it may go: {job}");
    let (task, answer) = run(args).await;
    assert_eq!(answer["head"], "3", "{task}");
    assert_eq!(task["http"], json!({ "requests": 1, "bytes_sent": 3, "bytes_received": 1 }));
    // And /metrics adds it up per tenant and job, for billing.
    let metrics = api.get("/metrics", ADMIN).await.body;
    let metrics = metrics.as_str().unwrap();
    for line in [
        r#"wasmjob_http_requests_total{tenant="crawl",job="fetch",state="success"} 1"#,
        r#"wasmjob_http_sent_bytes_total{tenant="crawl",job="fetch",state="success"} 3"#,
        r#"wasmjob_http_received_bytes_total{tenant="crawl",job="fetch",state="success"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "no `{line}` in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crawler_queues_a_child_per_new_link_down_to_its_depth() {
    let (addr, _) = server().await;
    let (api, write) = serving(4, "crawl", "http://127.0.0.1", wasmjob::examples::CRAWLER).await;
    let page = |p: &str| format!("http://127.0.0.1:{}/site/{p}", addr.port());
    let root = api.queue(&write, "crawler", json!({ "urls": [page("a")], "depth": 2 })).await;
    // a queues b and c; b queues c and a (depth 0: they queue nothing); c has no links.
    let mut ended = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ended.len() < 5 {
        assert!(Instant::now() < deadline, "the crawl did not end: {ended:?}");
        let tasks = api.get("/v1/tasks?job=crawler&limit=100", &write).await.body["tasks"].clone();
        ended = tasks.as_array().unwrap().iter().filter(|t| t["state"] == "success").cloned().collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let result = |t: &Value| t["result"].clone();
    let by_url = |url: String, parent: &str| {
        ended.iter().filter(move |t| result(t)["pages"][0]["url"] == url.as_str() && t["from_task"] == parent).count()
    };
    let root_task = ended.iter().find(|t| t["id"] == root.as_str()).expect("the root ended");
    assert_eq!(result(root_task)["queued"], 2, "{root_task}");
    assert_eq!(result(root_task)["pages"][0]["links"], json!([page("b"), page("c")]));
    let b = ended.iter().find(|t| t["from_task"] == root.as_str() && result(t)["pages"][0]["url"] == page("b"));
    let b = b.expect("b was crawled as a's child");
    assert_eq!(result(b)["queued"], 2, "{b}");
    let b_id = b["id"].as_str().unwrap();
    assert_eq!((by_url(page("c"), b_id), by_url(page("a"), b_id)), (1, 1), "{ended:?}");
    assert_eq!(ended.len(), 5, "{ended:?}");
    assert!(ended.iter().all(|t| t["http"]["requests"] == 1), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_revoked_mid_request_has_its_request_cancelled() {
    let (addr, seen) = server().await;
    let (api, write) = serving(2, "hung", "127.0.0.1", wasmjob::examples::FETCH).await;
    let id = api.queue(&write, "fetch", json!({ "url": format!("http://127.0.0.1:{}/hang", addr.port()) })).await;
    // Revoked once the server holds its request.
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.hosts.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the request never reached the server");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let revoked = api.post(&format!("/v1/tasks/{id}/revoke"), &write, json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked}");
    let task = api.wait(&write, &id).await;
    assert_eq!(task["state"], "revoked", "{task}");
    while seen.hung_up.load(Ordering::SeqCst) < 1 {
        assert!(Instant::now() < deadline, "the server still holds the revoked task's request");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The engine goes on serving the tenant.
    let id = api.queue(&write, "fetch", json!({ "url": format!("http://127.0.0.1:{}/hello", addr.port()) })).await;
    let task = api.wait(&write, &id).await;
    assert_eq!(task["state"], "success", "{task}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_retried_on_5xx_and_not_on_4xx_or_a_denied_host() {
    let (addr, seen) = server().await;
    let (api, write) = serving(2, "hooks", "127.0.0.1", wasmjob::examples::WEBHOOK).await;
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", addr.port());
    // Without its secret, the webhook fails for good, saying which.
    let id = api.queue(&write, "webhook", json!({ "url": url("/hook") })).await;
    let task = api.wait(&write, &id).await;
    assert_eq!((task["state"].as_str(), task["attempt"].as_u64()), (Some("failure"), Some(1)), "{task}");
    assert!(task["error"].as_str().unwrap().contains("no secret `webhook-token`"), "{task}");
    let set = json!({ "value": "hook-secret" });
    let answer = api.send(axum::http::Method::PUT, "/v1/secrets/webhook-token", Some(&write), Some(set)).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{answer}");
    let id = api.queue(&write, "webhook", json!({ "url": url("/hook"), "payload": { "event": "paid" } })).await;
    let task = api.wait(&write, &id).await;
    assert_eq!((task["state"].as_str(), task["attempt"].as_u64()), (Some("success"), Some(3)), "{task}");
    assert_eq!(*seen.hooks.lock().unwrap(), vec![id.clone(); 3], "every attempt carries the task's id as its key");
    assert_eq!(*seen.authorizations.lock().unwrap(), vec!["Bearer hook-secret"; 3], "the secret is the bearer token");
    assert!(!task.to_string().contains("hook-secret"), "the task's record holds no secret: {task}");
    let id = api.queue(&write, "webhook", json!({ "url": url("/refuse") })).await;
    let task = api.wait(&write, &id).await;
    assert_eq!((task["state"].as_str(), task["attempt"].as_u64()), (Some("failure"), Some(1)), "{task}");
    assert_eq!(task["reason"], "fatal-error", "{task}");
    let id = api.queue(&write, "webhook", json!({ "url": "https://example.com/hook" })).await;
    let task = api.wait(&write, &id).await;
    assert_eq!((task["state"].as_str(), task["attempt"].as_u64()), (Some("failure"), Some(1)), "{task}");
    assert!(task["log"].as_str().unwrap().contains("egress denied: https://example.com:443"), "{task}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_or_headers_far_past_any_bound_get_an_error_and_the_engine_keeps_serving() {
    let (addr, seen) = server().await;
    let base = format!("http://127.0.0.1:{}", addr.port());
    let long_path = format!("{base}/{}", "p".repeat(512 << 10));
    let long_host = format!("http://{}.example.com/", "h".repeat(100_000));
    let headers: serde_json::Map<String, Value> =
        (0..5_000).map(|i| (format!("x-h{i}"), json!("v".repeat(100)))).collect();
    for args in [
        json!({ "url": long_path }),
        json!({ "url": long_host }),
        json!({ "url": format!("{base}/hello"), "headers": headers }),
        json!({ "url": format!("{base}/hello"), "headers": { "x-big": "v".repeat(512 << 10) } }),
    ] {
        let report = fetch(args, &["127.0.0.1", "*.example.com"], HttpLimits::default()).await;
        match &report.outcome {
            // Headers past wasi:http's 128 KiB bound trap the guest, naming it.
            Outcome::Trap { message } => assert!(message.contains("exceeds limit"), "{message}"),
            _ => assert!(answers(&report)[0]["error"].is_string(), "{:?}", report.outcome),
        }
    }
    assert!(seen.hosts.lock().unwrap().is_empty(), "an oversized request reached the server");
    let report = fetch(json!({ "url": format!("{base}/hello") }), &["127.0.0.1"], HttpLimits::default()).await;
    assert_eq!(answers(&report)[0]["head"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_using_raw_wasi_http_bindings_oddly_gets_answers_and_the_engine_keeps_serving() {
    let (addr, _) = server().await;
    let raw = EGRESS_RUNTIME.load(&std::fs::read(wasmjob::examples::RAW_HTTP).unwrap()).await.unwrap();
    let run = |mode: &str| {
        let args = json!({ "mode": mode, "authority": format!("127.0.0.1:{}", addr.port()) });
        fetch_on(&EGRESS_RUNTIME, &raw, args, &["127.0.0.1"], HttpLimits::default(), Duration::from_secs(20))
    };
    let answers = |report: &TaskReport| -> Vec<String> {
        match &report.outcome {
            Outcome::Success { result } => serde_json::from_str::<Value>(result).unwrap()["answers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect(),
            other => panic!("{other:?}; log: {}", report.log),
        }
    };
    assert_eq!(answers(&run("no-body").await), ["200"]);
    // A body dropped unfinished: the request ends one way or the other, at once.
    let abandoned = answers(&run("abandoned-body").await);
    assert_eq!(abandoned.len(), 1, "{abandoned:?}");
    // 100 requests started before any is awaited: 32 in flight, the rest refused.
    let flood = answers(&run("flood").await);
    let ok = flood.iter().filter(|a| *a == "200").count();
    let refused = flood.iter().filter(|a| *a == "ConnectionLimitReached").count();
    assert_eq!((ok, refused), (32, 68), "{flood:?}");
    assert_engine_still_works().await;
}
