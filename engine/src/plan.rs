//! Schedules made as data: a tenant names a job, its args, and when to
//! queue it (a cron expression in an IANA time zone, or an interval),
//! through the API or the CLI, without uploading a component.
//!
//! The scheduler keeps these beside periodic jobs' own schedules, in the
//! same store rows, claims and ticks ([`crate::scheduler`]): a periodic
//! job's schedule asks the job's `is-due`; a schedule with a [`Plan`]
//! computes its next time here, on the host. A tick queues one task, then
//! the schedule is due at the next time strictly after the tick: ticks
//! missed while every node was down run once when one is back, not once
//! per missed time (as a periodic job's).
//!
//! Cron expressions are parsed by `croner`: five fields (minute to day of
//! week) or six (seconds first), with `L`, `W`, `#` and names. Time zones
//! are those of `chrono-tz` (the IANA database). Across daylight-saving
//! changes, expressions are read on the local wall clock (croner's rules):
//! a time of day that a spring-forward skips runs at the first time after
//! the gap when the expression names that time (`30 2 * * *`), and is
//! skipped when it is one of many (`0 * * * *`); a local time that a
//! fall-back repeats runs once, at its first occurrence, so an hourly
//! expression runs once per local hour, not twice in the repeated one.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};

use crate::contract::Due;
use crate::job::CronSchedule;
use crate::store::{Millis, to_millis};

/// The shortest interval, and the most often a cron expression may fire
/// (its finest field is seconds). Default 1 s, the scheduler's
/// [`crate::scheduler::MIN_PERIOD`].
pub const MIN_EVERY: Duration = crate::scheduler::MIN_PERIOD;
/// The longest interval. Default 366 days.
pub const MAX_EVERY: Duration = Duration::from_secs(366 * 24 * 3600);
/// The longest cron expression and time zone name. Default 256 bytes.
pub const MAX_EXPRESSION_BYTES: usize = 256;
/// Most schedules a tenant may hold. Default 1,000.
pub const MAX_SCHEDULES: usize = 1000;
/// The time zone of a cron expression that names none.
pub const DEFAULT_ZONE: &str = "UTC";
/// `next_due_at` of a paused schedule: never due.
pub const PAUSED: Millis = Millis::MAX;

/// What a schedule made as data queues, and when. Stored as JSON in its
/// schedule's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The args of every task it queues: a JSON object, as text.
    pub args: String,
    pub when: When,
    /// The named queue its tasks go to (none: `default`; plans written
    /// before queues had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// When a plan queues a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// At the times a cron expression matches, read in a time zone.
    Cron { expression: String, zone: String },
    /// Every `every_ms`, at `since + k * every_ms` (from the schedule's
    /// creation, or its last replacement).
    Every { every_ms: u64 },
}

/// Why a schedule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("give either a cron expression or an interval, not both")]
    Both,
    #[error("give a cron expression or an interval")]
    Neither,
    #[error("invalid cron expression `{expression}`: {reason}")]
    Cron { expression: String, reason: String },
    #[error("unknown time zone `{0}` (an IANA name such as `Europe/Paris` or `UTC`)")]
    Zone(String),
    #[error("a time zone needs a cron expression; an interval is counted in UTC")]
    ZoneWithoutCron,
    #[error("a cron expression or time zone is at most {MAX_EXPRESSION_BYTES} bytes")]
    TooLong,
    #[error("the cron expression `{0}` never matches a time from now on")]
    Never(String),
    #[error("an interval of {every_ms} ms is outside {} ms to {} ms", to_millis(MIN_EVERY), to_millis(MAX_EVERY))]
    Every { every_ms: u64 },
}

impl When {
    /// Checks and builds what a request gave: a cron expression (with a
    /// zone, [`DEFAULT_ZONE`] if none) or an interval.
    pub fn new(cron: Option<&str>, zone: Option<&str>, every_ms: Option<u64>, now: Millis) -> Result<Self, PlanError> {
        let when = match (cron, every_ms) {
            (Some(_), Some(_)) => return Err(PlanError::Both),
            (None, None) => return Err(PlanError::Neither),
            (None, Some(_)) if zone.is_some() => return Err(PlanError::ZoneWithoutCron),
            (None, Some(every_ms)) => {
                let every = Duration::from_millis(every_ms);
                if !(MIN_EVERY..=MAX_EVERY).contains(&every) {
                    return Err(PlanError::Every { every_ms });
                }
                When::Every { every_ms }
            }
            (Some(expression), None) => {
                let zone = zone.unwrap_or(DEFAULT_ZONE);
                if expression.len() > MAX_EXPRESSION_BYTES || zone.len() > MAX_EXPRESSION_BYTES {
                    return Err(PlanError::TooLong);
                }
                parse_cron(expression)?;
                parse_zone(zone)?;
                When::Cron { expression: expression.trim().to_owned(), zone: zone.to_owned() }
            }
        };
        if when.next_after(now, now).is_none() {
            let expression = match &when {
                When::Cron { expression, .. } => expression.clone(),
                When::Every { every_ms } => every_ms.to_string(),
            };
            return Err(PlanError::Never(expression));
        }
        Ok(when)
    }

    /// The first time strictly after `after` that this plan queues a task
    /// (`since` anchors an interval); `None` if there is none (a cron
    /// expression that no longer matches, or past the representable times).
    pub fn next_after(&self, after: Millis, since: Millis) -> Option<Millis> {
        match self {
            When::Every { every_ms } => {
                let every = i128::from(*every_ms);
                if every == 0 {
                    return None;
                }
                // The first `since + k * every` after `after`, k >= 1.
                let (after, since) = (i128::from(after), i128::from(since));
                let k = if after < since { 1 } else { (after - since) / every + 1 };
                Millis::try_from(since + k * every).ok()
            }
            When::Cron { expression, zone } => {
                let cron = parse_cron(expression).ok()?;
                let zone = parse_zone(zone).ok()?;
                // Cron counts whole seconds: the next match after the
                // second `after` falls in is after `after` too.
                let start = DateTime::<Utc>::from_timestamp_millis(after.div_euclid(1000) * 1000)?;
                let start = zone.from_utc_datetime(&start.naive_utc());
                let next = cron.find_next_occurrence(&start, false).ok()?;
                if next.timestamp_millis() > after {
                    return Some(next.timestamp_millis());
                }
                // croner searches the wall clock and answers a repeated
                // local time's first occurrence, which is in the past when
                // `after` falls in the repeated hour's second pass: a time
                // of many (`*/10 * * * *`) runs at its second occurrence; a
                // named time (`30 2 * * *`) ran at its first and runs next
                // on its next day. Never a time at or before `after`.
                let second = zone.from_local_datetime(&next.naive_local()).latest()?;
                if cron.determine_job_type() != croner::JobType::FixedTime && second.timestamp_millis() > after {
                    return Some(second.timestamp_millis());
                }
                let next = cron.find_next_occurrence(&second, false).ok()?;
                Some(next.timestamp_millis()).filter(|at| *at > after)
            }
        }
    }
}

/// `is-due` of a cron-periodic job, answered from its expression: due if
/// a time of it fell after `last_run_at` and by `now`; then (or else) the
/// wait from `now` to its next time ([`crate::scheduler::MAX_NEXT`] if it
/// has none).
pub fn cron_due(cron: &CronSchedule, last_run_at: Millis, now: Millis) -> Due {
    let when = When::Cron { expression: cron.expression.clone(), zone: cron.zone.clone() };
    let wait = |at: Option<Millis>| {
        at.map_or(crate::scheduler::MAX_NEXT, |at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)))
    };
    let missed = when.next_after(last_run_at, last_run_at).is_some_and(|at| at <= now);
    if missed {
        Due { is_due: true, next_run_in: wait(when.next_after(now, now)) }
    } else {
        Due { is_due: false, next_run_in: wait(when.next_after(last_run_at, last_run_at)) }
    }
}

fn parse_cron(expression: &str) -> Result<Cron, PlanError> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expression.trim())
        .map_err(|e| PlanError::Cron { expression: expression.to_owned(), reason: e.to_string() })
}

fn parse_zone(zone: &str) -> Result<chrono_tz::Tz, PlanError> {
    chrono_tz::Tz::from_str(zone).map_err(|_| PlanError::Zone(zone.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ms(zone: chrono_tz::Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Millis {
        zone.with_ymd_and_hms(y, mo, d, h, mi, s).earliest().unwrap().timestamp_millis()
    }

    fn utc(at: Millis) -> String {
        DateTime::<Utc>::from_timestamp_millis(at).unwrap().to_rfc3339()
    }

    fn cron(expression: &str, zone: &str) -> When {
        When::new(Some(expression), Some(zone), None, 0).unwrap()
    }

    /// The next `n` times after `from`.
    fn times(when: &When, from: Millis, n: usize) -> Vec<String> {
        let mut at = from;
        (0..n)
            .map(|_| {
                at = when.next_after(at, 0).unwrap();
                utc(at)
            })
            .collect()
    }

    #[test]
    fn a_daily_time_skipped_by_spring_forward_runs_right_after_the_gap_in_two_zones() {
        use chrono_tz::{America::New_York, Europe::Berlin};
        // Berlin, 2026-03-29: 02:00 CET -> 03:00 CEST, so 02:30 does not exist.
        let daily = cron("30 2 * * *", "Europe/Berlin");
        let from = ms(Berlin, 2026, 3, 28, 12, 0, 0);
        let expected = ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00", "2026-03-31T00:30:00+00:00"];
        assert_eq!(times(&daily, from, 3), expected);
        // New York, 2026-03-08: 02:00 EST -> 03:00 EDT.
        let daily = cron("30 2 * * *", "America/New_York");
        let from = ms(New_York, 2026, 3, 7, 12, 0, 0);
        assert_eq!(times(&daily, from, 2), ["2026-03-08T07:00:00+00:00", "2026-03-09T06:30:00+00:00"]);
    }

    #[test]
    fn a_daily_time_repeated_by_fall_back_runs_once_in_two_zones() {
        use chrono_tz::{America::New_York, Europe::Berlin};
        // Berlin, 2026-10-25: 03:00 CEST -> 02:00 CET, so 02:30 comes twice.
        let daily = cron("30 2 * * *", "Europe/Berlin");
        let from = ms(Berlin, 2026, 10, 24, 12, 0, 0);
        let expected = ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"];
        assert_eq!(times(&daily, from, 2), expected);
        // New York, 2026-11-01: 02:00 EDT -> 01:00 EST, so 01:30 comes twice.
        let daily = cron("30 1 * * *", "America/New_York");
        let from = ms(New_York, 2026, 10, 31, 12, 0, 0);
        assert_eq!(times(&daily, from, 2), ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]);
    }

    #[test]
    fn an_hourly_expression_runs_once_per_local_hour_through_both_changes() {
        use chrono_tz::Europe::Berlin;
        let hourly = cron("0 * * * *", "Europe/Berlin");
        // Spring: 01:00 CET, then 03:00 CEST (02:00 does not exist): an hour apart.
        let from = ms(Berlin, 2026, 3, 29, 0, 30, 0);
        let expected = ["2026-03-29T00:00:00+00:00", "2026-03-29T01:00:00+00:00", "2026-03-29T02:00:00+00:00"];
        assert_eq!(times(&hourly, from, 3), expected);
        // Autumn: 02:00 CEST, then 03:00 CET: the repeated 02:00 (CET) runs not.
        let from = DateTime::parse_from_rfc3339("2026-10-24T23:30:00Z").unwrap().timestamp_millis();
        let expected = ["2026-10-25T00:00:00+00:00", "2026-10-25T02:00:00+00:00", "2026-10-25T03:00:00+00:00"];
        assert_eq!(times(&hourly, from, 3), expected);
    }

    #[test]
    fn from_inside_a_repeated_hour_the_next_time_is_never_in_the_past() {
        // Berlin, 2026-10-25 01:10Z is 02:10 CET, the second pass of 02:xx.
        let inside = DateTime::parse_from_rfc3339("2026-10-25T01:10:00Z").unwrap().timestamp_millis();
        // A named time ran at its first occurrence (00:30Z): next on its next day.
        let daily = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(times(&daily, inside, 1), ["2026-10-26T01:30:00+00:00"]);
        // A time of many runs at its second occurrence, then on by the clock.
        let often = cron("*/10 * * * *", "Europe/Berlin");
        let expected = ["2026-10-25T01:20:00+00:00", "2026-10-25T01:30:00+00:00", "2026-10-25T01:40:00+00:00"];
        assert_eq!(times(&often, inside, 3), expected);
        let every_second = cron("* * * * * *", "Europe/Berlin");
        assert_eq!(every_second.next_after(inside, 0), Some(inside + 1000));
        // Every second through the whole repeated hour: always ahead.
        let mut at = DateTime::parse_from_rfc3339("2026-10-24T23:59:00Z").unwrap().timestamp_millis();
        for _ in 0..(2 * 3600 / 7) {
            let next = often.next_after(at, 0).unwrap();
            assert!(next > at, "{} then {}", utc(at), utc(next));
            at += 7_000;
        }
        // And a cron job's `is-due` after a run at the first 02:30.
        let job = CronSchedule { expression: "30 2 * * *".into(), zone: "Europe/Berlin".into() };
        let first = DateTime::parse_from_rfc3339("2026-10-25T00:30:00Z").unwrap().timestamp_millis();
        let due = cron_due(&job, first, inside);
        assert!(!due.is_due, "the repeated 02:30 ran twice");
    }

    #[test]
    fn six_fields_count_seconds() {
        let every_second = cron("* * * * * *", "UTC");
        assert_eq!(every_second.next_after(1_000, 0), Some(2_000));
        assert_eq!(every_second.next_after(1_500, 0), Some(2_000));
        let five = cron("*/5 * * * *", "UTC");
        assert_eq!(five.next_after(0, 0), Some(300_000));
    }

    #[test]
    fn an_interval_counts_from_its_anchor() {
        let every = When::new(None, None, Some(10_000), 0).unwrap();
        assert_eq!(every.next_after(5_000, 3_000), Some(13_000));
        assert_eq!(every.next_after(13_000, 3_000), Some(23_000));
        assert_eq!(every.next_after(1_000, 3_000), Some(13_000));
        // Far past any representable time: none, no overflow.
        assert_eq!(every.next_after(Millis::MAX - 1, 0), None);
        let longest = When::new(None, None, Some(to_millis(MAX_EVERY) as u64), 0).unwrap();
        assert_eq!(longest.next_after(Millis::MAX - 1, Millis::MIN), None);
    }

    #[test]
    fn bad_schedules_are_refused_naming_the_problem() {
        let refused = |cron: Option<&str>, zone: Option<&str>, every: Option<u64>| {
            When::new(cron, zone, every, 0).unwrap_err().to_string()
        };
        assert!(refused(Some("61 * * * *"), None, None).contains("invalid cron expression `61 * * * *`"));
        assert!(refused(Some("* * *"), None, None).contains("invalid cron expression"));
        assert!(refused(Some("0 3 * * *"), Some("Mars/Olympus"), None).contains("unknown time zone `Mars/Olympus`"));
        assert!(refused(None, None, Some(1)).contains("outside 1000 ms"));
        assert!(refused(None, None, Some(u64::MAX)).contains("outside"));
        assert!(refused(Some("* * * * *"), None, Some(1000)).contains("not both"));
        assert!(refused(None, None, None).contains("give a cron"));
        assert!(refused(None, Some("UTC"), Some(1000)).contains("needs a cron"));
        assert!(refused(Some(&"1,".repeat(10_000)), None, None).contains("at most 256 bytes"));
        assert!(refused(Some("0 0 30 2 *"), None, None).contains("never matches"), "February 30th");
    }
}
