//! `is-due`, asked of a periodic component, against a table of cases.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crate::support::{RUNTIME, load};

fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0).unwrap()
}

#[tokio::test]
async fn an_anchored_daily_job_is_due_at_its_anchor() {
    // nightly-report: every 24 h, anchored at 03:00 UTC.
    let job = load(wasmjob::examples::NIGHTLY_REPORT).await;
    let h = |n: u64| Duration::from_secs(n * 3600);
    let m = |n: u64| Duration::from_secs(n * 60);
    let cases = [
        // (last run, now, due, next run in)
        (at(1, 3, 0), at(1, 4, 0), false, h(23)),
        (at(1, 3, 0), at(2, 3, 0), true, h(24)),
        (at(1, 3, 0), at(2, 2, 59), false, m(1)),
        (at(1, 10, 0), at(2, 2, 0), false, h(1)),
        (at(1, 10, 0), at(2, 3, 30), true, h(23) + m(30)),
        (at(1, 3, 0), at(5, 12, 0), true, h(15)),
    ];
    for (last, now, due, next) in cases {
        let answer = RUNTIME.is_due(&job, last, now).await.unwrap();
        assert_eq!((answer.is_due, answer.next_run_in), (due, next), "last {last}, now {now}");
    }
}

#[tokio::test]
async fn a_regular_job_is_never_due() {
    let job = load(wasmjob::examples::ADDITION).await;
    let answer = RUNTIME.is_due(&job, at(1, 0, 0), at(9, 0, 0)).await.unwrap();
    assert!(!answer.is_due);
}
