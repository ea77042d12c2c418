//! What jobs declare, with defaults and lower-casing.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use wasmjob::job::{DocSyntax, JobKind, Overlap, RequestedLimits, Schedule};

use crate::support::load;

#[tokio::test]
async fn a_plain_job_gets_the_defaults() {
    let job = load(wasmjob::examples::ADDITION).await;
    let m = job.metadata();
    assert_eq!(m.name, "addition");
    assert_eq!(m.doc, "Add two numbers");
    assert_eq!(m.doc_syntax, DocSyntax::Markdown);
    assert_eq!(m.kind, JobKind::Regular);
    assert_eq!(m.overlap, Overlap::Allow);
    assert_eq!(m.expiry, None);
    assert_eq!(m.limits, RequestedLimits::default());
    assert_eq!(m.retry.max_retries, 3);
    assert_eq!(m.retry.initial_backoff, Duration::from_secs(1));
    assert!(m.retry.retry_on_trap && m.retry.retry_on_timeout);
}

#[tokio::test]
async fn the_default_name_is_the_lower_cased_type_name() {
    // `struct NightlyReport` with no name given.
    let job = load(wasmjob::examples::NIGHTLY_REPORT).await;
    assert_eq!(job.metadata().name, "nightlyreport");
}

#[tokio::test]
async fn a_declared_name_overrides_the_type_name() {
    let job = load(wasmjob::examples::FAN_OUT).await;
    assert_eq!(job.metadata().name, "fan-out");
}

#[tokio::test]
async fn a_periodic_job_declares_its_schedule_and_overlap() {
    let job = load(wasmjob::examples::NIGHTLY_REPORT).await;
    let m = job.metadata();
    let anchor = Utc.with_ymd_and_hms(1970, 1, 1, 3, 0, 0).unwrap();
    assert_eq!(m.kind, JobKind::Periodic(Schedule { run_every: Duration::from_secs(86_400), anchor: Some(anchor) }));
    assert_eq!(m.overlap, Overlap::Forbid);
    assert!(m.is_periodic());
}

#[tokio::test]
async fn overlap_by_args_asks_the_job_for_the_key() {
    let job = load(wasmjob::examples::EXCLUSIVE).await;
    assert_eq!(job.metadata().overlap, Overlap::ByArgs);
    let runtime = &crate::support::RUNTIME;
    assert_eq!(runtime.overlap_key(&job, r#"{"account": "acme"}"#).await.unwrap(), Some("acme".into()));
    assert_eq!(runtime.overlap_key(&job, "{}").await.unwrap(), None);
}

#[tokio::test]
async fn the_version_is_the_content_hash() {
    let bytes = std::fs::read(wasmjob::examples::ADDITION).unwrap();
    let job = load(wasmjob::examples::ADDITION).await;
    assert_eq!(job.hash().len(), 64);
    let again = crate::support::RUNTIME.load(&bytes).await.unwrap();
    assert_eq!(job.hash(), again.hash());
}

#[tokio::test]
async fn a_component_built_against_contract_0_1_0_still_loads_and_runs() {
    // `raw-http` is raw wit-bindgen over `wit/v0.1.0`; the SDK builds 0.3.0.
    let old = load(wasmjob::examples::RAW_HTTP).await;
    assert_eq!((old.contract(), old.metadata().name.as_str()), ("0.1.0", "raw-http"));
    assert_eq!((&old.metadata().allowed_hosts, &old.metadata().secrets), (&None, &vec![]), "it declares nothing");
    // With no egress granted, its request is denied and it says so.
    let (report, _) = crate::support::run(&old, r#"{"mode": "no-body", "authority": "127.0.0.1:9"}"#).await;
    assert_eq!(
        report.outcome,
        wasmjob::runtime::Outcome::Success { result: r#"{"answers": ["HttpRequestDenied"]}"#.into() },
        "{}",
        report.log
    );
    let new = load(wasmjob::examples::ADDITION).await;
    assert_eq!(new.contract(), "0.3.0");
    crate::support::assert_engine_still_works().await;
}
