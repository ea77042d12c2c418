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

    const S: i64 = 1000;
    const MIN: i64 = 60 * S;
    const H: i64 = 60 * MIN;

    struct Case {
        what: &'static str,
        every: i64,
        anchor: Option<Timestamp>,
        last: Timestamp,
        now: Timestamp,
        due: bool,
        next: i64,
    }

    #[test]
    fn is_due_follows_pulsar_semantics_for_a_table_of_cases() {
        let day = MILLIS_PER_DAY;
        let t0 = 20_000 * day; // some midnight, UTC
        let cases = [
            Case { what: "just ran", every: MIN, anchor: None, last: t0, now: t0, due: false, next: MIN },
            Case { what: "half way", every: MIN, anchor: None, last: t0, now: t0 + 30 * S, due: false, next: 30 * S },
            Case {
                what: "exactly one period",
                every: MIN,
                anchor: None,
                last: t0,
                now: t0 + MIN,
                due: true,
                next: MIN,
            },
            Case {
                what: "late by 10 s",
                every: MIN,
                anchor: None,
                last: t0,
                now: t0 + MIN + 10 * S,
                due: true,
                next: MIN,
            },
            Case {
                what: "many periods missed: one run",
                every: MIN,
                anchor: None,
                last: t0,
                now: t0 + 10 * H,
                due: true,
                next: MIN,
            },
            Case {
                what: "clock went back",
                every: MIN,
                anchor: None,
                last: t0,
                now: t0 - 5 * S,
                due: false,
                next: MIN + 5 * S,
            },
            Case {
                what: "anchored 03:00 daily, ran at 03:00, now 04:00",
                every: day,
                anchor: Some(anchor_date(3, 0, 0)),
                last: t0 + 3 * H,
                now: t0 + 4 * H,
                due: false,
                next: 23 * H,
            },
            Case {
                what: "anchored 03:00 daily, next day 03:00",
                every: day,
                anchor: Some(anchor_date(3, 0, 0)),
                last: t0 + 3 * H,
                now: t0 + day + 3 * H,
                due: true,
                next: day,
            },
            Case {
                what: "anchored 03:00 daily, registered at 10:00, now 02:59 next day",
                every: day,
                anchor: Some(anchor_date(3, 0, 0)),
                last: t0 + 10 * H,
                now: t0 + day + 3 * H - MIN,
                due: false,
                next: MIN,
            },
            Case {
                what: "anchored 03:00 daily, registered at 10:00, now 03:00 next day",
                every: day,
                anchor: Some(anchor_date(3, 0, 0)),
                last: t0 + 10 * H,
                now: t0 + day + 3 * H,
                due: true,
                next: day,
            },
            Case {
                what: "anchored, late run keeps alignment",
                every: H,
                anchor: Some(anchor_date(0, 15, 0)),
                last: t0 + 15 * MIN,
                now: t0 + H + 40 * MIN,
                due: true,
                next: 35 * MIN,
            },
            Case {
                what: "anchor in the future aligns too",
                every: H,
                anchor: Some(t0 + 100 * day + 15 * MIN),
                last: t0 + 15 * MIN,
                now: t0 + 50 * MIN,
                due: false,
                next: 25 * MIN,
            },
        ];
        for c in cases {
            let got = is_due(Duration::from_millis(c.every as u64), c.anchor, c.last, c.now);
            assert_eq!(got, Due { is_due: c.due, next_run_in: c.next as u64 }, "{}", c.what);
        }
    }

    #[test]
    fn anchor_datetime_counts_days_from_the_epoch() {
        assert_eq!(anchor_datetime(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(anchor_datetime(2000, 3, 1, 0, 0, 1), 951_868_801_000);
        assert_eq!(anchor_datetime(1969, 12, 31, 0, 0, 0), -MILLIS_PER_DAY);
    }

    #[test]
    fn zero_period_counts_as_one_millisecond() {
        assert!(!is_due(Duration::ZERO, Some(0), 5, 5).is_due);
        assert!(is_due(Duration::ZERO, Some(0), 5, 6).is_due);
    }
}
