//! What a job is, in the engine's own terms: its [`JobMetadata`] as declared
//! by the component's `metadata` export and checked by the engine.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::egress::{AllowList, RuleError};
use crate::secret::SecretError;

/// The longest job name the engine accepts.
pub const MAX_NAME_LEN: usize = 128;
/// The longest doc the engine keeps (64 KiB).
pub const MAX_DOC_LEN: usize = 64 * 1024;

/// A job's declaration: name, doc, kind, overlap, expiry, limits, retries,
/// the hosts it may reach and the secrets it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobMetadata {
    /// Lower-case, unique within a tenant's registry.
    pub name: String,
    pub doc: String,
    pub doc_syntax: DocSyntax,
    pub kind: JobKind,
    pub overlap: Overlap,
    /// How long a queued task may wait to start (pulsar's `timeout`).
    /// In milliseconds.
    #[serde(with = "opt_millis")]
    #[schema(value_type = Option<u64>)]
    pub expiry: Option<Duration>,
    pub limits: RequestedLimits,
    pub retry: RetryPolicy,
    /// Where the job's requests may go, within its tenant's allow-list.
    /// `None` (and every job of contract 0.1.0): wherever its tenant's may.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_hosts: Option<AllowList>,
    /// The names of its tenant's secrets the job reads.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// The markup of a job's doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DocSyntax {
    Markdown,
    Plain,
}

/// Regular, periodic by its own `is-due`, or periodic on a cron expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum JobKind {
    Regular,
    Periodic(Schedule),
    /// The scheduler queues a task at each time the expression matches,
    /// without asking `is-due` (contract 0.3.0).
    Cron(CronSchedule),
}

/// A cron-periodic job's expression and the zone it is read in (checked
/// as [`crate::plan::When`] checks a schedule's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CronSchedule {
    pub expression: String,
    /// An IANA name, `UTC` unless the job named another.
    pub zone: String,
}

/// When a periodic job runs: every `run_every`, aligned to `anchor`.
/// (`JobSchedule` in the API's document: `Schedule` is what
/// `/v1/schedules` serves.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = JobSchedule)]
pub struct Schedule {
    /// In milliseconds.
    #[serde(with = "millis")]
    #[schema(value_type = u64)]
    pub run_every: Duration,
    pub anchor: Option<DateTime<Utc>>,
}

/// Whether tasks of a job may overlap (pulsar's `can_overlap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Overlap {
    Allow,
    Forbid,
    /// Decided per task by the job's `overlap-key` export.
    ByArgs,
}

/// Per-task resources a job asks for; `None` takes the engine's default, and
/// the engine caps each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestedLimits {
    pub fuel: Option<u64>,
    /// In milliseconds.
    #[serde(with = "opt_millis")]
    #[schema(value_type = Option<u64>)]
    pub timeout: Option<Duration>,
    pub memory_bytes: Option<u64>,
}

/// How failed tasks are retried: before retry `n` the engine waits
/// `min(initial_backoff * 2^(n-1), max_backoff)` plus up to half of that again
/// as random jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetryPolicy {
    pub max_retries: u32,
    /// In milliseconds.
    #[serde(with = "millis")]
    #[schema(value_type = u64)]
    pub initial_backoff: Duration,
    /// In milliseconds.
    #[serde(with = "millis")]
    #[schema(value_type = u64)]
    pub max_backoff: Duration,
    pub retry_on_trap: bool,
    pub retry_on_timeout: bool,
}

impl JobMetadata {
    /// Whether the job is periodic.
    pub fn is_periodic(&self) -> bool {
        matches!(self.kind, JobKind::Periodic(_) | JobKind::Cron(_))
    }
}

/// Why the engine refuses a job's metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("the job's name is empty")]
    EmptyName,
    #[error("the job's name is longer than {MAX_NAME_LEN} bytes")]
    NameTooLong,
    #[error("the job's name `{0}` may only hold letters, digits, `-`, `_` and `.`")]
    InvalidName(String),
    #[error("the job's doc is longer than {MAX_DOC_LEN} bytes")]
    DocTooLong,
    #[error("a periodic job's `run-every` must be greater than zero")]
    ZeroPeriod,
    #[error("the periodic job's anchor is out of range")]
    AnchorOutOfRange,
    #[error("the job's `allowed-hosts`: {0}")]
    AllowedHosts(RuleError),
    #[error("the job's `secrets`: {0}")]
    Secrets(SecretError),
    #[error("the job's cron schedule: {0}")]
    Cron(crate::plan::PlanError),
}

/// Checks a job name as the guest (or client) gave it, before it is
/// lower-cased, so that no non-ASCII letter folds into an ASCII one (`K`,
/// the Kelvin sign, lower-cases to `k`): 1 to [`MAX_NAME_LEN`] ASCII letters,
/// digits, `-`, `_` and `.`, not all dots.
pub fn validate_name(name: &str) -> Result<(), MetadataError> {
    if name.is_empty() {
        return Err(MetadataError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(MetadataError::NameTooLong);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !name.chars().all(allowed) || name.chars().all(|c| c == '.') {
        return Err(MetadataError::InvalidName(name.escape_default().to_string()));
    }
    Ok(())
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::opt_millis::Ms;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ms::deserialize(d).map(|Ms(ms)| Duration::from_millis(ms))
    }
}

/// Optional durations as milliseconds in JSON: whole numbers from 0 to
/// `u64::MAX`. Anything else (negative, fractional, larger, not a number) is
/// an error saying so; bounds that depend on the use are checked by the user.
pub(crate) mod opt_millis {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Unexpected, Visitor};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<Ms>::deserialize(d).map(|o| o.map(|Ms(ms)| Duration::from_millis(ms)))
    }

    /// A duration in whole milliseconds, with an error that says what is expected.
    pub(super) struct Ms(pub u64);

    impl<'de> Deserialize<'de> for Ms {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_u64(MsVisitor)
        }
    }

    struct MsVisitor;

    impl Visitor<'_> for MsVisitor {
        type Value = Ms;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a whole number of milliseconds, 0 or more")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ms, E> {
            Ok(Ms(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ms, E> {
            u64::try_from(v).map(Ms).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
        }
    }
}

#[cfg(test)]
mod name_tests {
    use super::{MetadataError, validate_name};

    #[test]
    fn names_are_checked_before_lower_casing_and_cannot_be_all_dots() {
        // KELVIN SIGN lower-cases to an ASCII `k`: it must not pose as one.
        assert!(matches!(validate_name("\u{212A}"), Err(MetadataError::InvalidName(_))));
        assert!(matches!(validate_name("."), Err(MetadataError::InvalidName(_))));
        assert!(matches!(validate_name(".."), Err(MetadataError::InvalidName(_))));
        assert!(validate_name("Nightly.Report-2_x").is_ok());
        assert!(matches!(validate_name(""), Err(MetadataError::EmptyName)));
        assert!(matches!(validate_name(&"a".repeat(129)), Err(MetadataError::NameTooLong)));
    }
}
