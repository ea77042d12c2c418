//! Tasks as the rest of the engine sees them: ids, and what a request to queue
//! one may ask for or be told.
//!
//! Everything here is checked at the door: [`parse_id`] decides which strings
//! name a task, and [`QueueOptions::times`] bounds what a request may ask for
//! ([`MAX_DELAY`], [`MAX_EXPIRY`], [`MAX_RETRIES`]) before anything is queued.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::Millis;

/// The id of a task: opaque to jobs and clients.
pub type TaskId = String;

/// The longest a task may be delayed: 366 days, so that "a year from now"
/// always fits. Longer delays are refused, never shortened.
pub const MAX_DELAY: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// The longest a task may wait to start before it expires: 366 days. Longer
/// expiries are refused, never shortened; a task that should never expire
/// asks for no expiry.
pub const MAX_EXPIRY: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// The most retries a task may ask for: 1000. (The stores keep the number in
/// a 32-bit signed column; this bound keeps it far from wrapping.)
pub const MAX_RETRIES: u32 = 1000;

/// The task id `text` names, if it is canonical: `0`, or a digit other than
/// `0` followed by digits, fitting in an `i64` (the stores' ids). Anything
/// else (`+1`, `01`, ` 1`, `1.0`, `-1`, too large) names no task, so that
/// every task has exactly one id.
pub fn parse_id(text: &str) -> Option<i64> {
    let canonical = match text.as_bytes() {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    // Only digits are left, so the parse fails on overflow alone.
    if canonical { text.parse().ok() } else { None }
}

/// Options of a request to queue a task; `None` takes the job's default.
/// Unknown fields are refused. Durations are whole milliseconds; their bounds
/// are checked by [`QueueOptions::times`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueOptions {
    /// How long the task may wait to start before it expires, counted from
    /// when it may first run, in milliseconds; at most [`MAX_EXPIRY`].
    #[serde(default, with = "crate::job::opt_millis")]
    #[schema(value_type = Option<u64>, maximum = 31622400000.0)]
    pub expiry: Option<Duration>,
    /// Do not start the task before this delay, in milliseconds; at most
    /// [`MAX_DELAY`].
    #[serde(default, with = "crate::job::opt_millis")]
    #[schema(value_type = Option<u64>, maximum = 31622400000.0)]
    pub delay: Option<Duration>,
    /// Do not start the task before this time (RFC 3339), instead of a
    /// `delay`: a time past runs now; at most [`MAX_DELAY`] from now.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-12-01T09:00:00Z")]
    pub run_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Higher runs first; default 0.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Overrides the job's maximum number of retries; at most [`MAX_RETRIES`].
    #[serde(default)]
    #[schema(maximum = 1000)]
    pub max_retries: Option<u32>,
    /// Unique by args for this long, in milliseconds (at most
    /// [`MAX_DELAY`]): another request for the same job with the same args
    /// (as JSON, whatever its key order and spacing) within this period of
    /// one queued with it answers `duplicate` with that task's id, whether
    /// that task still waits, runs or has ended.
    #[serde(default, with = "crate::job::opt_millis")]
    #[schema(value_type = Option<u64>, maximum = 31622400000.0)]
    pub unique_for: Option<Duration>,
    /// The named queue it goes to (default [`DEFAULT_QUEUE`]); a node
    /// serves every queue, or those `wasmjob serve --queues` names.
    /// Its parent's, for a task a job queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9._-]+$", example = "emails")]
    pub queue: Option<String>,
}

/// The queue of a task that names none.
pub const DEFAULT_QUEUE: &str = "default";

/// Checks a queue's name: a job's name's rules (letters, digits, `-`, `_`
/// and `.`, at most 128 bytes).
pub fn check_queue(name: &str) -> Result<(), QueueError> {
    crate::job::validate_name(name).map_err(|_| {
        let shown: String = name.chars().take(crate::job::MAX_NAME_LEN).collect();
        QueueError::invalid_option(
            "queue",
            format!(
                "`{}` is not a queue's name: letters, digits, `-`, `_` and `.`, at most {} bytes",
                shown.escape_default(),
                crate::job::MAX_NAME_LEN
            ),
        )
    })
}

impl QueueOptions {
    /// When a task queued at `now` with these options may first run, and
    /// when it expires (`default_expiry` is the job's), with every bound checked.
    ///
    /// Every option is checked here, `max_retries` included, so that a
    /// request that passes may be queued as it is. The expiry counts from
    /// the time the task may first run. Values are guest- and
    /// client-controlled: nothing here wraps or panics; what is out of range
    /// is a [`QueueError::InvalidOption`] naming the option.
    pub fn times(&self, now: Millis, default_expiry: Option<Duration>) -> Result<(Millis, Option<Millis>), QueueError> {
        if let Some(retries) = self.max_retries
            && retries > MAX_RETRIES
        {
            return Err(QueueError::invalid_option(
                "max_retries",
                format!("{retries} retries is more than the {MAX_RETRIES} allowed"),
            ));
        }
        if let Some(period) = self.unique_for {
            bounded("unique_for", period, MAX_DELAY)?;
        }
        if let Some(queue) = &self.queue {
            check_queue(queue)?;
        }
        let run_at = match (self.delay, self.run_at) {
            (Some(_), Some(_)) => {
                return Err(QueueError::invalid_option("run_at", "give a `delay` or a `run_at`, not both"));
            }
            (_, Some(at)) => {
                let latest = now.saturating_add(i64::try_from(MAX_DELAY.as_millis()).unwrap_or(i64::MAX));
                let asked = at.timestamp_millis();
                if asked > latest {
                    return Err(QueueError::invalid_option(
                        "run_at",
                        format!("{} is more than {} days from now", at.to_rfc3339(), MAX_DELAY.as_secs() / 86_400),
                    ));
                }
                // A time past: the task may run now.
                asked.max(now)
            }
            (delay, None) => {
                let delay = bounded("delay", delay.unwrap_or_default(), MAX_DELAY)?;
                now.checked_add(delay).ok_or_else(|| {
                    QueueError::invalid_option(
                        "delay",
                        format!("{delay} ms from now is past the latest time a task may run at"),
                    )
                })?
            }
        };
        let expiry = match (self.expiry, default_expiry) {
            (Some(expiry), _) => Some(bounded("expiry", expiry, MAX_EXPIRY)?),
            // Not the caller's doing, but the caller can override it.
            (None, Some(default)) => Some(bounded("expiry", default, MAX_EXPIRY).map_err(|_| {
                QueueError::invalid_option(
                    "expiry",
                    format!(
                        "the job's default expiry of {} ms is longer than the {} days allowed; give an expiry",
                        default.as_millis(),
                        MAX_EXPIRY.as_secs() / 86_400
                    ),
                )
            })?),
            (None, None) => None,
        };
        let expires_at = match expiry {
            Some(expiry) => Some(run_at.checked_add(expiry).ok_or_else(|| {
                QueueError::invalid_option(
                    "expiry",
                    format!("{expiry} ms after the task may run is past the latest time a task may expire at"),
                )
            })?),
            None => None,
        };
        Ok((run_at, expires_at))
    }
}

/// `value` in milliseconds, if it is at most `max`; else an error naming
/// `field`.
fn bounded(field: &'static str, value: Duration, max: Duration) -> Result<Millis, QueueError> {
    let too_long = || {
        QueueError::invalid_option(
            field,
            format!(
                "{} ms is longer than the {} days ({} ms) allowed",
                value.as_millis(),
                max.as_secs() / 86_400,
                max.as_millis()
            ),
        )
    };
    if value > max {
        return Err(too_long());
    }
    Millis::try_from(value.as_millis()).map_err(|_| too_long())
}

/// Why a request to queue a task queued nothing. Each is an answer the caller
/// (a client, or a job through `queue-task`) can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "error", content = "detail")]
pub enum QueueError {
    #[error("unknown job `{0}`")]
    UnknownJob(String),
    /// The job forbids overlap and this task is already queued or running.
    #[error("duplicate: task {0} with the same overlap key is queued or running")]
    Duplicate(TaskId),
    #[error("invalid args: {0}")]
    InvalidArgs(String),
    /// An option of the request (`delay`, `expiry`, `max_retries`...) is out
    /// of its range; `field` names it as the API spells it.
    #[error("invalid option `{field}`: {message}")]
    InvalidOption { field: String, message: String },
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    #[error("the task tree would be deeper than {0}")]
    DepthExceeded(u32),
}

impl QueueError {
    /// A [`QueueError::InvalidOption`] for `field`.
    pub fn invalid_option(field: &str, message: impl Into<String>) -> Self {
        Self::InvalidOption { field: field.to_owned(), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_800_000_000_000;

    fn ms(ms: u64) -> Option<Duration> {
        Some(Duration::from_millis(ms))
    }

    fn field(e: QueueError) -> String {
        match e {
            QueueError::InvalidOption { field, .. } => field,
            other => panic!("not an invalid option: {other:?}"),
        }
    }

    #[test]
    fn times_count_the_delay_from_now_and_the_expiry_from_the_run_time() {
        let options = QueueOptions { delay: ms(5_000), expiry: ms(60_000), ..QueueOptions::default() };
        assert_eq!(options.times(NOW, None), Ok((NOW + 5_000, Some(NOW + 65_000))));
        // The job's expiry applies when the request gives none.
        let delayed = QueueOptions { delay: ms(5_000), ..QueueOptions::default() };
        assert_eq!(delayed.times(NOW, ms(1_000)), Ok((NOW + 5_000, Some(NOW + 6_000))));
        assert_eq!(QueueOptions::default().times(NOW, None), Ok((NOW, None)));
        // The request's expiry overrides the job's, even an out-of-range one.
        let own = QueueOptions { expiry: ms(1), ..QueueOptions::default() };
        assert_eq!(own.times(NOW, Some(Duration::MAX)), Ok((NOW, Some(NOW + 1))));
    }

    #[test]
    fn options_without_a_queue_are_written_without_one() {
        // A server from before named queues refuses unknown fields.
        assert!(!serde_json::to_string(&QueueOptions::default()).unwrap().contains("queue"));
        let named = QueueOptions { queue: Some("emails".into()), ..QueueOptions::default() };
        assert!(serde_json::to_string(&named).unwrap().contains(r#""queue":"emails""#));
    }

    #[test]
    fn times_accept_the_bounds_exactly() {
        let options = QueueOptions {
            delay: Some(MAX_DELAY),
            expiry: Some(MAX_EXPIRY),
            max_retries: Some(MAX_RETRIES),
            ..QueueOptions::default()
        };
        let (delay, expiry) = (MAX_DELAY.as_millis() as Millis, MAX_EXPIRY.as_millis() as Millis);
        assert_eq!(options.times(NOW, None), Ok((NOW + delay, Some(NOW + delay + expiry))));
    }

    #[test]
    fn times_refuse_what_is_past_a_bound_naming_the_option() {
        let over = |d: Duration| Some(d + Duration::from_millis(1));
        let huge = [ms(i64::MAX as u64), ms(u64::MAX), over(MAX_DELAY), Some(Duration::MAX)];
        for delay in huge {
            let options = QueueOptions { delay, ..QueueOptions::default() };
            assert_eq!(field(options.times(NOW, None).unwrap_err()), "delay", "{delay:?}");
        }
        for expiry in [ms(i64::MAX as u64), ms(u64::MAX), over(MAX_EXPIRY), Some(Duration::MAX)] {
            let options = QueueOptions { expiry, ..QueueOptions::default() };
            assert_eq!(field(options.times(NOW, None).unwrap_err()), "expiry", "{expiry:?}");
            // A job's own default is held to the same bound.
            assert_eq!(field(QueueOptions::default().times(NOW, expiry).unwrap_err()), "expiry");
        }
        for max_retries in [MAX_RETRIES + 1, u32::MAX] {
            let options = QueueOptions { max_retries: Some(max_retries), ..QueueOptions::default() };
            assert_eq!(field(options.times(NOW, None).unwrap_err()), "max_retries");
        }
    }

    #[test]
    fn a_run_at_past_runs_now_and_one_too_far_or_beside_a_delay_is_refused() {
        let at = |ms: Millis| Some(chrono::DateTime::from_timestamp_millis(ms).unwrap());
        let options = |run_at| QueueOptions { run_at, ..QueueOptions::default() };
        assert_eq!(options(at(NOW - 86_400_000)).times(NOW, None), Ok((NOW, None)));
        assert_eq!(options(at(0)).times(NOW, None), Ok((NOW, None)));
        assert_eq!(options(at(NOW + 5)).times(NOW, Some(Duration::from_millis(7))), Ok((NOW + 5, Some(NOW + 12))));
        let latest = NOW + MAX_DELAY.as_millis() as Millis;
        assert_eq!(options(at(latest)).times(NOW, None), Ok((latest, None)));
        assert_eq!(field(options(at(latest + 1)).times(NOW, None).unwrap_err()), "run_at");
        // Centuries ahead, and the ends of chrono's range.
        let far = chrono::DateTime::<chrono::Utc>::MAX_UTC;
        assert_eq!(field(options(Some(far)).times(NOW, None).unwrap_err()), "run_at");
        let first = chrono::DateTime::<chrono::Utc>::MIN_UTC;
        assert_eq!(options(Some(first)).times(NOW, None), Ok((NOW, None)));
        let both = QueueOptions { delay: ms(1), ..options(at(NOW)) };
        assert_eq!(field(both.times(NOW, None).unwrap_err()), "run_at");
        // Near the end of time, nothing wraps.
        assert_eq!(options(at(NOW)).times(Millis::MAX, None), Ok((Millis::MAX, None)));
    }

    #[test]
    fn times_never_overflow_near_the_end_of_time() {
        let options = QueueOptions { delay: ms(1), ..QueueOptions::default() };
        assert_eq!(field(options.times(Millis::MAX, None).unwrap_err()), "delay");
        let options = QueueOptions { expiry: ms(1), ..QueueOptions::default() };
        assert_eq!(field(options.times(Millis::MAX, None).unwrap_err()), "expiry");
        assert_eq!(QueueOptions::default().times(Millis::MAX, None), Ok((Millis::MAX, None)));
    }

    #[test]
    fn an_invalid_option_says_which_and_why() {
        let options = QueueOptions { delay: ms(u64::MAX), ..QueueOptions::default() };
        let message = options.times(NOW, None).unwrap_err().to_string();
        assert!(message.starts_with("invalid option `delay`: 18446744073709551615 ms is longer than"), "{message}");
    }

    #[test]
    fn unknown_options_and_negative_or_fractional_durations_do_not_parse() {
        let parse = |json: &str| serde_json::from_str::<QueueOptions>(json);
        assert_eq!(parse(r#"{"delay": 5, "max_retries": 2}"#).unwrap().delay, ms(5));
        assert_eq!(parse(r#"{"delay": null}"#).unwrap().delay, None);
        assert!(parse(r#"{"eta": 5}"#).unwrap_err().to_string().contains("unknown field `eta`"));
        for bad in [r#"{"delay": -1}"#, r#"{"delay": 1.5}"#, r#"{"expiry": 1e30}"#, r#"{"delay": "5s"}"#] {
            let message = parse(bad).unwrap_err().to_string();
            assert!(message.contains("expected a whole number of milliseconds"), "{bad}: {message}");
        }
    }

    #[test]
    fn only_canonical_ids_name_a_task() {
        assert_eq!(parse_id("0"), Some(0));
        assert_eq!(parse_id("42"), Some(42));
        assert_eq!(parse_id("9223372036854775807"), Some(i64::MAX));
        for alias in ["", "+1", "01", "00", " 1", "1 ", "1.0", "-1", "-0", "1e3", "abc", "9223372036854775808", "٣"] {
            assert_eq!(parse_id(alias), None, "{alias:?}");
        }
    }
}
