//! Secrets are per tenant and write-only; a job reads only those it
//! declares, and reaches only the hosts both it and its tenant allow.
//! `nosy` declares the secret `mine` and the host `localhost`, and reaches
//! for whatever its args name.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api_support::{ADMIN, Api};
use crate::egress::{server, serving};

async fn put(api: &Api, token: &str, name: &str, value: Value) -> crate::api_support::Answer {
    api.send(Method::PUT, &format!("/v1/secrets/{name}"), Some(token), Some(json!({ "value": value }))).await
}

/// Runs `nosy` as `token`'s tenant with `args`; returns what it got.
async fn nosy(api: &Api, token: &str, args: Value) -> Value {
    let id = api.queue(token, "nosy", args).await;
    let task = api.wait(token, &id).await;
    assert_eq!(task["state"], "success", "{task}");
    task["result"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_reads_the_secrets_it_declares_of_its_own_tenant_and_no_other() {
    let (api, mine) = serving(2, "mine", "localhost", wasmjob::examples::NOSY).await;
    let (theirs, _) = api.tenant("theirs", json!({})).await;
    assert_eq!(put(&api, &theirs, "mine", json!("their-secret")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(put(&api, &theirs, "other", json!("their-other")).await.status, StatusCode::NO_CONTENT);

    // Another tenant's secret of the declared name is not this tenant's.
    let got = nosy(&api, &mine, json!({ "secrets": ["mine", "other"] })).await;
    assert_eq!(
        got["secrets"]["mine"]["Err"].as_str().unwrap(),
        "the tenant has no secret `mine`: set it with `wasmjob secret set mine`"
    );
    assert!(got["secrets"]["other"]["Err"].as_str().unwrap().contains("without declaring it"), "{got}");
    let view = api.get("/v1/jobs/nosy", &mine).await;
    assert_eq!(view.body["missing_secrets"], json!(["mine"]), "{view}");

    // Set, it is read by the next task; an undeclared one never is.
    assert_eq!(put(&api, &mine, "mine", json!("my-secret")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(put(&api, &mine, "other", json!("my-other")).await.status, StatusCode::NO_CONTENT);
    let got = nosy(&api, &mine, json!({ "secrets": ["mine", "other", "MINE"] })).await;
    assert_eq!(got["secrets"]["mine"]["Ok"], "my-secret", "{got}");
    assert!(got["secrets"]["other"]["Err"].as_str().unwrap().contains("without declaring it"), "{got}");
    assert!(got["secrets"]["MINE"]["Err"].as_str().unwrap().contains("without declaring it"), "names keep their case");
    let view = api.get("/v1/jobs/nosy", &mine).await;
    assert_eq!(view.body["missing_secrets"], json!([]), "{view}");

    // Changed, the next task reads the new value.
    assert_eq!(put(&api, &mine, "mine", json!("my-new-secret")).await.status, StatusCode::NO_CONTENT);
    let got = nosy(&api, &mine, json!({ "secrets": ["mine"] })).await;
    assert_eq!(got["secrets"]["mine"]["Ok"], "my-new-secret", "{got}");

    // No endpoint serves a value.
    for (path, token) in [("/v1/secrets", &mine), ("/v1/secrets", &theirs), ("/v1/jobs/nosy", &mine)] {
        let answer = api.get(path, token).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer}");
        assert!(!answer.body.to_string().contains("secret\""), "{path} shows a value: {answer}");
        assert!(!answer.body.to_string().contains("their-"), "{path} shows a value: {answer}");
    }
    let names = api.get("/v1/secrets", &mine).await.body;
    let names: Vec<&str> = names["secrets"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mine", "other"]);
    let metrics = api.get("/metrics", ADMIN).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(!metrics.body.to_string().contains("my-new-secret"), "{metrics}");
}

#[tokio::test]
async fn secrets_are_write_only_bounded_and_kept_to_their_tenant() {
    let api = Api::start(1).await;
    let (write, read) = api.tenant("keeper", json!({})).await;
    let (other, _) = api.tenant("other", json!({})).await;

    let long = "n".repeat(129);
    for (name, value, status) in [
        ("a%20b", json!("v"), StatusCode::BAD_REQUEST),
        (long.as_str(), json!("v"), StatusCode::BAD_REQUEST),
        ("%E2%84%AA", json!("v"), StatusCode::BAD_REQUEST),
        ("big", json!("v".repeat((64 << 10) + 1)), StatusCode::PAYLOAD_TOO_LARGE),
        ("number", json!(123_456_789), StatusCode::BAD_REQUEST),
        ("nul", json!("a\u{0}b"), StatusCode::BAD_REQUEST),
    ] {
        let answer = put(&api, &write, name, value).await;
        assert_eq!(answer.status, status, "{name}: {answer}");
        assert!(!answer.code().is_empty(), "{answer}");
        assert!(!answer.body.to_string().contains("123456789"), "an error quotes the value: {answer}");
    }
    // A body that is not `{"value": ...}` is refused without quoting it.
    let odd = api.send(Method::PUT, "/v1/secrets/odd", Some(&write), Some(json!("bare-secret-string"))).await;
    assert_eq!(odd.status, StatusCode::BAD_REQUEST, "{odd}");
    assert!(!odd.body.to_string().contains("bare-secret"), "{odd}");
    let bad = api.send(Method::DELETE, "/v1/secrets/a%20b", Some(&write), None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad}");
    let big = put(&api, &write, "largest", json!("v".repeat(64 << 10))).await;
    assert_eq!(big.status, StatusCode::NO_CONTENT, "the largest value fits: {big}");
    // A read-only token and the admin cannot set one.
    assert_eq!(put(&api, &read, "x", json!("v")).await.status, StatusCode::FORBIDDEN);
    assert_eq!(put(&api, ADMIN, "x", json!("v")).await.status, StatusCode::FORBIDDEN);

    // At most 100 per tenant; replacing one is not one more.
    for i in 1..100 {
        assert_eq!(put(&api, &write, &format!("s{i}"), json!("v")).await.status, StatusCode::NO_CONTENT);
    }
    let over = put(&api, &write, "s100", json!("v")).await;
    assert_eq!((over.status, over.code()), (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"), "{over}");
    assert_eq!(over.body["error"]["quota"], "secrets", "{over}");
    assert_eq!(put(&api, &write, "s1", json!("again")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(put(&api, &other, "s100", json!("v")).await.status, StatusCode::NO_CONTENT, "the bound is per tenant");

    // Deleting: one's own only.
    let path = "/v1/secrets/s1";
    assert_eq!(api.send(Method::DELETE, path, Some(&other), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.send(Method::DELETE, path, Some(&write), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.send(Method::DELETE, path, Some(&write), None).await.status, StatusCode::NOT_FOUND);
    let listed = api.get("/v1/secrets", &read).await;
    assert_eq!(listed.status, StatusCode::OK, "a reader lists names");
    assert_eq!(listed.body["secrets"].as_array().unwrap().len(), 99, "{listed}");
    assert!(!listed.body.to_string().contains("\"v\""), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_reaches_only_hosts_both_it_and_its_tenant_allow() {
    let (addr, _) = server().await;
    let (api, write) = serving(2, "narrow", "127.0.0.1", wasmjob::examples::NOSY).await;
    let url = |host: &str| format!("http://{host}:{}/hello", addr.port());
    // The tenant allows 127.0.0.1 only: the job's `localhost` is not enough.
    for host in ["127.0.0.1", "localhost"] {
        let got = nosy(&api, &write, json!({ "url": url(host) })).await;
        assert_eq!(got["fetched"]["Err"], "Some(ErrorCode::HttpRequestDenied)", "{host}: {got}");
    }
    let view = api.get("/v1/jobs/nosy", &write).await;
    assert_eq!((&view.body["allowed_hosts"], &view.body["contract"]), (&json!([]), &json!("0.3.0")), "{view}");

    let both = json!({ "quotas": { "allowed_hosts": ["127.0.0.1", "localhost"] } });
    assert_eq!(api.send(Method::PATCH, "/v1/tenants/narrow", Some(ADMIN), Some(both)).await.status, StatusCode::OK);
    let got = nosy(&api, &write, json!({ "url": url("127.0.0.1") })).await;
    assert_eq!(got["fetched"]["Err"], "Some(ErrorCode::HttpRequestDenied)", "the job did not declare 127.0.0.1: {got}");
    let got = nosy(&api, &write, json!({ "url": url("localhost") })).await;
    assert_eq!(got["fetched"]["Ok"], 200, "{got}");
    let view = api.get("/v1/jobs/nosy", &write).await;
    assert_eq!(view.body["allowed_hosts"], json!(["localhost"]), "{view}");
}

#[test]
fn wasmjob_run_gives_a_job_the_secrets_named_on_the_command_line_or_in_the_environment() {
    let run = |secrets: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wasmjob-under-test"));
        command.args(["run", wasmjob::examples::NOSY, "--json", "--args", r#"{"secrets": ["mine", "other"]}"#]);
        for secret in secrets {
            command.args(["--secret", secret]);
        }
        command.env("mine", "from-the-environment").output().unwrap()
    };
    let got = |output: std::process::Output| -> Value {
        let report: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
        serde_json::from_str(report["result"].as_str().unwrap()).unwrap()
    };
    let on_the_line = got(run(&["mine=on-the-line", "other=x"]));
    assert_eq!(on_the_line["secrets"]["mine"]["Ok"], "on-the-line", "{on_the_line}");
    let other = on_the_line["secrets"]["other"]["Err"].as_str().unwrap();
    assert!(other.contains("without declaring it"), "given but not declared: {on_the_line}");
    // `--secret NAME` reads the environment variable of that name.
    let from_env = got(run(&["mine"]));
    assert_eq!(from_env["secrets"]["mine"]["Ok"], "from-the-environment", "{from_env}");
    // A bad name is refused before anything runs.
    let refused = run(&["not a name=x"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid secret name"), "{refused:?}");
}
