//! When a periodic job is due: pulsar's `is_due(last_run_at)` with `run_every`
//! and an optional `anchor`, made deterministic by taking `now` as an input.
//!
//! Without an anchor, a run is due `run_every` after the previous run. With
//! one, runs are due at `anchor + k * run_every` (any whole `k`, so an anchor
//! in the past or future works alike); a run is due when such a time has
//! passed since the previous run. Missed runs are not caught up one by one:
//! one task is due, then the schedule moves on from `now` (as in pulsar).

use std::time::Duration;

use crate::metadata::millis;

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Timestamp = i64;

const MILLIS_PER_DAY: i64 = 86_400_000;

/// The answer of [`is_due`] (pulsar's `(is_due, seconds_to_next_run)`, in
/// milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Whether a task should be queued now.
    pub is_due: bool,
    /// Milliseconds from `now` to the next due run (after the one queued now,
    /// if `is_due`).
    pub next_run_in: u64,
}

impl Due {
    /// Never due (what a regular job answers).
    pub fn never() -> Self {
        Self { is_due: false, next_run_in: u64::MAX }
    }
}

/// An anchor at `hour:minute:second` UTC (pulsar's `anchorDate`). Pulsar used
/// today's date; since runs are due at `anchor + k * run_every`, any day gives
/// the same times for periods that divide a day, so this uses 1970-01-01 and
/// is deterministic. For weekly or longer periods use [`anchor_datetime`].
pub fn anchor_date(hour: u32, minute: u32, second: u32) -> Timestamp {
    (i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)) * 1000
}

/// An anchor at a full UTC date and time (proleptic Gregorian calendar).
pub fn anchor_datetime(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Timestamp {
    days_from_civil(year, month, day) * MILLIS_PER_DAY + anchor_date(hour, minute, second)
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Whether a run of a job scheduled every `run_every` (aligned to `anchor`)
/// is due at `now`, given the previous run at `last_run_at`.
pub fn is_due(run_every: Duration, anchor: Option<Timestamp>, last_run_at: Timestamp, now: Timestamp) -> Due {
    let every = i64::try_from(millis(run_every)).unwrap_or(i64::MAX).max(1);
    // The scheduled time of the previous run: pulsar's `scheduled_last_run_at`.
    let slot = |at: Timestamp| match anchor {
        None => at,
        Some(anchor) => anchor.saturating_add((at.saturating_sub(anchor)).div_euclid(every).saturating_mul(every)),
    };
    let next_due = slot(last_run_at).saturating_add(every);
    if now >= next_due {
        let next_after_this = slot(now).saturating_add(every);
        Due { is_due: true, next_run_in: distance(now, next_after_this) }
    } else {
        Due { is_due: false, next_run_in: distance(now, next_due) }
    }
}

fn distance(from: Timestamp, to: Timestamp) -> u64 {
    u64::try_from(to.saturating_sub(from)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One case of the table every SDK's helper is tested against.
    #[derive(serde::Deserialize)]
    struct Case {
        what: String,
        every: u64,
        anchor: Option<Timestamp>,
        last: Timestamp,
        now: Timestamp,
        due: bool,
        next: u64,
    }

    #[derive(serde::Deserialize)]
    struct Table {
        cases: Vec<Case>,
    }

    #[test]
    fn is_due_follows_pulsar_semantics_for_a_table_of_cases() {
        let table: Table = serde_json::from_str(include_str!("../is-due-cases.json")).unwrap();
        assert!(table.cases.len() >= 12);
        for c in table.cases {
            let got = is_due(Duration::from_millis(c.every), c.anchor, c.last, c.now);
            assert_eq!(got, Due { is_due: c.due, next_run_in: c.next }, "{}", c.what);
        }
    }

    #[test]
    fn the_table_anchors_at_03_00_as_anchor_date_does() {
        let table: Table = serde_json::from_str(include_str!("../is-due-cases.json")).unwrap();
        assert!(table.cases.iter().any(|c| c.anchor == Some(anchor_date(3, 0, 0))));
    }

    #[test]
    fn anchor_datetime_counts_days_from_the_epoch() {
        assert_eq!(anchor_datetime(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(anchor_datetime(2000, 3, 1, 0, 0, 1), 951_868_801_000);
        assert_eq!(anchor_datetime(1969, 12, 31, 0, 0, 0), -MILLIS_PER_DAY);
    }
}
