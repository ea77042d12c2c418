//! Bad input is refused at the door with an error that names it, and
//! nothing is queued or created behind it.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use wasmjob::task::{MAX_DELAY, MAX_EXPIRY, MAX_RETRIES};

use crate::api_support::{ADMIN, Answer, Api};

/// A node with tenant `acme`, which has the addition job; its write and
/// read tokens.
async fn acme() -> (Api, String, String) {
    let api = Api::start(2).await;
    let (write, read) = api.tenant("acme", json!({})).await;
    let up = api.upload(&write, wasmjob::examples::ADDITION).await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.body);
    (api, write, read)
}

/// Queues an addition with `options`.
async fn queue_with(api: &Api, token: &str, options: Value) -> Answer {
    api.post("/v1/tasks", token, json!({ "job": "addition", "options": options })).await
}

fn message(answer: &Answer) -> &str {
    answer.body["error"]["message"].as_str().unwrap_or("")
}

/// Asserts a 422 `invalid_option` that names `field` in its message and
/// as its `field`.
fn assert_invalid_option(answer: &Answer, field: &str) {
    assert_eq!((answer.status, answer.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_option"), "{}", answer.body);
    assert_eq!(answer.body["error"]["field"], field, "{}", answer.body);
    assert!(message(answer).contains(&format!("`{field}`")), "{}", answer.body);
}

/// Asserts a 400 `bad_request` whose message contains `what`.
fn assert_bad_request(answer: &Answer, what: &str) {
    assert_eq!((answer.status, answer.code()), (StatusCode::BAD_REQUEST, "bad_request"), "{}", answer.body);
    assert!(message(answer).contains(what), "{}", answer.body);
}

async fn assert_nothing_queued(api: &Api, token: &str) {
    let list = api.get("/v1/tasks", token).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(list.body["tasks"], json!([]), "{}", list.body);
}

fn millis(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

#[tokio::test]
async fn a_delay_past_the_bound_is_refused_naming_the_field() {
    let (api, write, read) = acme().await;
    for delay in [i64::MAX as u64, u64::MAX, millis(MAX_DELAY) + 1] {
        let answer = queue_with(&api, &write, json!({ "delay": delay })).await;
        assert_invalid_option(&answer, "delay");
    }
    assert_nothing_queued(&api, &read).await;
}

#[tokio::test]
async fn an_expiry_past_the_bound_is_refused_naming_the_field() {
    let (api, write, read) = acme().await;
    for expiry in [i64::MAX as u64, u64::MAX, millis(MAX_EXPIRY) + 1] {
        let answer = queue_with(&api, &write, json!({ "expiry": expiry })).await;
        assert_invalid_option(&answer, "expiry");
    }
    assert_nothing_queued(&api, &read).await;
}

#[tokio::test]
async fn a_negative_or_fractional_duration_is_refused_naming_the_field() {
    let (api, write, read) = acme().await;
    for field in ["delay", "expiry"] {
        for value in [json!(-1), json!(i64::MIN), json!(1.5), json!(1e30), json!("10s")] {
            let answer = queue_with(&api, &write, json!({ field: value })).await;
            assert_bad_request(&answer, &format!("options.{field}"));
            assert!(message(&answer).contains("whole number of milliseconds"), "{}", answer.body);
        }
    }
    assert_nothing_queued(&api, &read).await;
}

#[tokio::test]
async fn a_delay_and_expiry_at_their_bounds_are_accepted_and_counted_exactly() {
    let (api, write, read) = acme().await;
    let (delay, expiry) = (millis(MAX_DELAY), millis(MAX_EXPIRY));
    let answer = queue_with(&api, &write, json!({ "delay": delay, "expiry": expiry })).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let id = answer.body["id"].as_str().unwrap();
    let task = api.get(&format!("/v1/tasks/{id}"), &read).await.body;
    let (queued_at, run_at) = (task["queued_at"].as_i64().unwrap(), task["run_at"].as_i64().unwrap());
    assert_eq!(run_at, queued_at + delay as i64, "{task}");
    assert_eq!(task["expires_at"].as_i64(), Some(run_at + expiry as i64), "{task}");
}

#[tokio::test]
async fn max_retries_past_the_bound_is_refused_naming_the_field() {
    let (api, write, read) = acme().await;
    for max_retries in [MAX_RETRIES + 1, i32::MAX as u32 + 1, u32::MAX] {
        let answer = queue_with(&api, &write, json!({ "max_retries": max_retries })).await;
        assert_invalid_option(&answer, "max_retries");
    }
    for max_retries in [json!(-1), json!(u64::from(u32::MAX) + 1), json!(2.5)] {
        let answer = queue_with(&api, &write, json!({ "max_retries": max_retries })).await;
        assert_bad_request(&answer, "options.max_retries");
    }
    assert_nothing_queued(&api, &read).await;

    let answer = queue_with(&api, &write, json!({ "max_retries": MAX_RETRIES, "delay": 3_600_000 })).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let task = api.get(&format!("/v1/tasks/{}", answer.body["id"].as_str().unwrap()), &read).await;
    assert_eq!(task.body["max_retries"], MAX_RETRIES, "{}", task.body);
}

#[tokio::test]
async fn an_unknown_option_is_refused_naming_it() {
    let (api, write, read) = acme().await;
    for field in ["eta", "routing_key", "countdown"] {
        let answer = queue_with(&api, &write, json!({ field: 5 })).await;
        assert_bad_request(&answer, &format!("unknown field `{field}`"));
    }
    // A queue (a known option) of the wrong type, or not a queue's name.
    assert_bad_request(&queue_with(&api, &write, json!({ "queue": 5 })).await, "options.queue");
    for name in ["", "a/b", &"q".repeat(100_000)] {
        assert_invalid_option(&queue_with(&api, &write, json!({ "queue": name })).await, "queue");
    }
    assert_nothing_queued(&api, &read).await;
}

#[tokio::test]
async fn a_non_canonical_task_id_names_no_task() {
    let (api, write, read) = acme().await;
    let answer = queue_with(&api, &write, json!({ "delay": 3_600_000 })).await;
    let id = answer.body["id"].as_str().unwrap().to_owned();
    let n: i64 = id.parse().unwrap();
    let aliases = [
        format!("+{id}"),
        format!("0{id}"),
        format!("00{id}"),
        format!("%20{id}"),
        format!("{id}%20"),
        format!("{id}.0"),
        format!("-{id}"),
        format!("{}", i128::from(n) + (1i128 << 64)),
        "99999999999999999999999".to_owned(),
    ];
    for alias in &aliases {
        for (method, path) in [
            (Method::GET, format!("/v1/tasks/{alias}")),
            (Method::GET, format!("/v1/tasks/{alias}/wait?timeout=1ms")),
            (Method::GET, format!("/v1/tasks/{alias}/logs")),
            (Method::POST, format!("/v1/tasks/{alias}/revoke")),
        ] {
            let answer = api.send(method, &path, Some(&write), None).await;
            assert_eq!((answer.status, answer.code()), (StatusCode::NOT_FOUND, "not_found"), "{path}: {}", answer.body);
        }
    }
    // The task itself is still there, untouched.
    let task = api.get(&format!("/v1/tasks/{id}"), &read).await;
    assert_eq!((task.status, task.body["state"].as_str()), (StatusCode::OK, Some("queued")), "{}", task.body);
}

#[tokio::test]
async fn a_malformed_cursor_is_refused_naming_before() {
    let (api, write, read) = acme().await;
    for _ in 0..3 {
        assert_eq!(queue_with(&api, &write, json!({ "delay": 3_600_000 })).await.status, StatusCode::CREATED);
    }
    for cursor in ["abc", "+5", "%2B5", "05", "-1", "1.0", "", "99999999999999999999"] {
        let answer = api.get(&format!("/v1/tasks?before={cursor}"), &read).await;
        assert_bad_request(&answer, "`before`");
    }
    // A real cursor still pages.
    let first = api.get("/v1/tasks?limit=2", &read).await;
    let next = first.body["next"].as_str().unwrap();
    let second = api.get(&format!("/v1/tasks?limit=2&before={next}"), &read).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.body["tasks"].as_array().unwrap().len(), 1, "{}", second.body);
}

#[tokio::test]
async fn a_tenant_that_may_run_no_task_is_refused() {
    let api = Api::start(1).await;
    let answer = api.post("/v1/tenants", ADMIN, json!({ "name": "idle", "quotas": { "max_running": 0 } })).await;
    assert_eq!((answer.status, answer.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_tenant"), "{}", answer.body);
    assert!(message(&answer).contains("`max_running`"), "{}", answer.body);
    let tenants = api.get("/v1/tenants", ADMIN).await;
    assert!(!tenants.body.to_string().contains("idle"), "{}", tenants.body);
}

#[tokio::test]
async fn nonsense_quotas_are_refused_naming_the_quota() {
    let api = Api::start(1).await;
    let nonsense = [
        ("max_fuel", json!(0)),
        ("max_timeout_ms", json!(0)),
        ("max_memory_bytes", json!(1)),
        ("max_queued", json!(0)),
        ("max_component_bytes", json!(0)),
        ("max_components", json!(0)),
        ("queue_rate", json!(0)),
        ("queue_rate", json!(-5.0)),
        ("queue_burst", json!(0.5)),
        ("queue_burst", json!(-1)),
        ("max_running", json!(-1)),
        ("max_fuel", json!("lots")),
    ];
    for (quota, value) in nonsense {
        let answer = api.post("/v1/tenants", ADMIN, json!({ "name": "odd", "quotas": { quota: value } })).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_tenant"),
            "{quota}: {}",
            answer.body
        );
        assert!(message(&answer).contains(&format!("`{quota}`")), "{quota}: {}", answer.body);
    }
    let tenants = api.get("/v1/tenants", ADMIN).await;
    assert!(!tenants.body.to_string().contains("odd"), "{}", tenants.body);
}

#[tokio::test]
async fn an_oversized_json_body_is_refused_as_too_large() {
    let (api, write, read) = acme().await;
    let padding = "x".repeat(3 << 20);
    let answer = api.post("/v1/tasks", &write, json!({ "job": "addition", "args": { "pad": padding } })).await;
    assert_eq!((answer.status, answer.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"), "{}", answer.body);
    assert_nothing_queued(&api, &read).await;
    let answer = api.post("/v1/tenants", ADMIN, json!({ "name": "big", "quotas": { "pad": padding } })).await;
    assert_eq!((answer.status, answer.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"), "{}", answer.body);
}

#[tokio::test]
async fn a_quota_change_with_a_bad_egress_rule_or_for_no_tenant_is_refused_and_changes_nothing() {
    let (api, write, _) = acme().await;
    let path = "/v1/tenants/acme";
    let patch = |body: Value| api.send(Method::PATCH, path, Some(ADMIN), Some(body));
    let long_host = format!("{}.example.com", "a".repeat(300));
    let many: Vec<String> = (0..1000).map(|i| format!("h{i}.example.com")).collect();
    for hosts in [
        json!(["ftp://example.com"]),
        json!(["example.com/path"]),
        json!(["a.*.example.com"]),
        json!(["example.com:99999"]),
        json!([long_host]),
        json!(many),
        json!("example.com"),
        json!([1]),
    ] {
        let answer = patch(json!({ "quotas": { "allowed_hosts": hosts } })).await;
        assert_eq!((answer.status, answer.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_tenant"), "{answer}");
        assert!(message(&answer).contains("`allowed_hosts`"), "{answer}");
    }
    let answer = patch(json!({ "quotas": { "max_http_in_flight": 0 } })).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let answer = api.send(Method::PATCH, "/v1/tenants/nobody", Some(ADMIN), Some(json!({ "quotas": {} }))).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{answer}");
    let answer =
        api.send(Method::PATCH, path, Some(&write), Some(json!({ "quotas": { "allowed_hosts": ["*"] } }))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "a tenant cannot widen its own egress: {answer}");
    let tenants = api.get("/v1/tenants", ADMIN).await;
    let acme = tenants.body["tenants"].as_array().unwrap().iter().find(|t| t["name"] == "acme").unwrap().clone();
    assert_eq!(acme["quotas"]["allowed_hosts"], json!([]), "{acme}");
    // A good change lands, and `null` puts a quota back to its default.
    let answer =
        patch(json!({ "quotas": { "allowed_hosts": ["API.example.com.", "https://*.example.org:8443"] } })).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer}");
    assert_eq!(answer.body["quotas"]["allowed_hosts"], json!(["api.example.com", "https://*.example.org:8443"]));
    let answer = patch(json!({ "quotas": { "allowed_hosts": null, "max_http_requests": 5 } })).await;
    assert_eq!(answer.body["quotas"]["allowed_hosts"], json!([]), "{answer}");
    assert_eq!(answer.body["quotas"]["max_http_requests"], 5, "{answer}");
}

#[tokio::test]
async fn a_run_at_centuries_ahead_malformed_or_beside_a_delay_is_refused() {
    let (api, write, read) = acme().await;
    for options in [
        json!({ "run_at": "2999-01-01T00:00:00Z" }),
        json!({ "run_at": "+262142-12-31T23:59:59Z" }),
        json!({ "run_at": "2020-01-01T00:00:00Z", "delay": 1000 }),
    ] {
        assert_invalid_option(&queue_with(&api, &write, options).await, "run_at");
    }
    for malformed in [json!("tomorrow"), json!(1_700_000_000_000u64), json!("2026-13-01T00:00:00Z")] {
        let answer = queue_with(&api, &write, json!({ "run_at": malformed })).await;
        assert_eq!((answer.status, answer.code()), (StatusCode::BAD_REQUEST, "bad_request"), "{answer}");
    }
    assert_nothing_queued(&api, &read).await;
}

#[tokio::test]
async fn a_task_runs_at_its_run_at_and_one_in_the_past_runs_now() {
    let (api, write, read) = acme().await;
    let past = api
        .post(
            "/v1/tasks",
            &write,
            json!({ "job": "addition", "args": { "a": 1, "b": 2 },
        "options": { "run_at": "1970-01-01T00:00:00Z" } }),
        )
        .await;
    assert_eq!(past.status, StatusCode::CREATED, "{past}");
    assert_eq!(api.wait(&read, past.body["id"].as_str().unwrap()).await["result"], 3);
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let later = later - chrono::Duration::nanoseconds(i64::from(later.timestamp_subsec_nanos()));
    let queued = api
        .post(
            "/v1/tasks",
            &write,
            json!({ "job": "addition",
        "options": { "run_at": later.to_rfc3339() } }),
        )
        .await;
    assert_eq!(queued.status, StatusCode::CREATED, "{queued}");
    let task = api.get(&format!("/v1/tasks/{}", queued.body["id"].as_str().unwrap()), &read).await;
    assert_eq!(
        (task.body["state"].as_str(), task.body["run_at"].as_i64()),
        (Some("queued"), Some(later.timestamp_millis()))
    );
}

#[tokio::test]
async fn a_unique_period_past_the_bound_is_refused_naming_the_field() {
    let (api, write, read) = acme().await;
    for period in [i64::MAX as u64, u64::MAX, millis(MAX_DELAY) + 1] {
        assert_invalid_option(&queue_with(&api, &write, json!({ "unique_for": period })).await, "unique_for");
    }
    assert_nothing_queued(&api, &read).await;
    // Within it: the second request answers the first task.
    let first = queue_with(&api, &write, json!({ "unique_for": 60_000 })).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first}");
    let second = queue_with(&api, &write, json!({ "unique_for": 60_000 })).await;
    assert_eq!((second.status, second.code()), (StatusCode::CONFLICT, "duplicate"), "{second}");
    assert_eq!(second.body["error"]["existing_task"], first.body["id"], "{second}");
}
