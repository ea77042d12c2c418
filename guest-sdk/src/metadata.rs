//! What a job declares about itself: [`Metadata`], built next to the job.

use std::time::Duration;

use crate::__private::bindings::wasmjob::job::types;
use crate::__private::wit;
use crate::Timestamp;

/// Whether tasks of a job may overlap (pulsar's `can_overlap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// Any number of tasks at once (`can_overlap = True`, the default).
    #[default]
    Allow,
    /// At most one task queued or running (`can_overlap = False`).
    Forbid,
    /// At most one task queued or running per key from
    /// [`crate::Job::overlap_key`] (`can_overlap` as a callable of the args).
    ByArgs,
}

/// Resources each task asks for; capped by the engine. `None` takes the
/// engine's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Fuel budget, roughly one unit per WebAssembly instruction.
    pub fuel: Option<u64>,
    /// Wall-clock deadline of one task.
    pub timeout: Option<Duration>,
    /// Maximum linear memory, in bytes.
    pub memory_bytes: Option<u64>,
}

/// How failed tasks are retried; see the WIT `retry-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt. Default 3.
    pub max_retries: u32,
    /// Delay before the first retry. Default 1 s.
    pub initial_backoff: Duration,
    /// Upper bound of the delay. Default 5 min.
    pub max_backoff: Duration,
    /// Retry after a trap (a panic). Default true.
    pub retry_on_trap: bool,
    /// Retry after the wall-clock deadline. Default true.
    pub retry_on_timeout: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            retry_on_trap: true,
            retry_on_timeout: true,
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self { max_retries: 0, ..Self::default() }
    }
}

/// The markup of a job's doc (pulsar's `doc_syntax`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DocSyntax {
    /// The default, as in pulsar.
    #[default]
    Markdown,
    Plain,
}

/// What a job declares about itself. Start from [`Metadata::regular`] or
/// [`Metadata::periodic`] and chain the setters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub(crate) name: String,
    doc: String,
    doc_syntax: DocSyntax,
    schedule: Option<(Duration, Option<Timestamp>)>,
    /// A cron expression and its zone, for a cron-periodic job.
    cron: Option<(String, Option<String>)>,
    overlap: Overlap,
    expiry: Option<Duration>,
    limits: Limits,
    retry: RetryPolicy,
    allowed_hosts: Option<Vec<String>>,
    secrets: Vec<String>,
}

impl Metadata {
    /// A regular job: tasks are queued on request.
    pub fn regular() -> Self {
        Self {
            name: String::new(),
            doc: String::new(),
            doc_syntax: DocSyntax::default(),
            schedule: None,
            cron: None,
            overlap: Overlap::default(),
            expiry: None,
            limits: Limits::default(),
            retry: RetryPolicy::default(),
            allowed_hosts: None,
            secrets: Vec::new(),
        }
    }

    /// A periodic job, due every `run_every` (which must be non-zero).
    pub fn periodic(run_every: Duration) -> Self {
        Self { schedule: Some((run_every, None)), ..Self::regular() }
    }

    /// A periodic job due at the times the cron `expression` matches (five
    /// fields, or six with seconds first), read in UTC unless
    /// [`Metadata::zone`] names a zone. The engine decides when it is due:
    /// [`crate::Job::is_due`] is not asked.
    pub fn cron(expression: impl Into<String>) -> Self {
        Self { cron: Some((expression.into(), None)), ..Self::regular() }
    }

    /// The IANA time zone a cron job's expression is read in, such as
    /// `Europe/Paris`. Has no effect on other jobs.
    pub fn zone(mut self, zone: impl Into<String>) -> Self {
        if let Some((_, z)) = &mut self.cron {
            *z = Some(zone.into());
        }
        self
    }

    /// Aligns a periodic job's runs to `anchor + k * run_every`; see
    /// [`crate::anchor_date`]. Has no effect on a regular job.
    pub fn anchor(mut self, anchor: Timestamp) -> Self {
        if let Some((_, a)) = &mut self.schedule {
            *a = Some(anchor);
        }
        self
    }

    /// Overrides the name (by default the lower-cased type name). The engine
    /// lower-cases it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Describes the job.
    pub fn doc(mut self, doc: impl Into<String>) -> Self {
        self.doc = doc.into();
        self
    }

    /// Sets the markup of the doc.
    pub fn doc_syntax(mut self, syntax: DocSyntax) -> Self {
        self.doc_syntax = syntax;
        self
    }

    /// Sets whether tasks may overlap.
    pub fn overlap(mut self, overlap: Overlap) -> Self {
        self.overlap = overlap;
        self
    }

    /// Shorthand for pulsar's `can_overlap = can_overlap`.
    pub fn can_overlap(self, can_overlap: bool) -> Self {
        self.overlap(if can_overlap { Overlap::Allow } else { Overlap::Forbid })
    }

    /// Queued tasks that have not started after `expiry` are revoked
    /// (pulsar's `timeout`).
    pub fn expiry(mut self, expiry: Duration) -> Self {
        self.expiry = Some(expiry);
        self
    }

    /// Sets the resources each task asks for.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Lets the job reach `host` over HTTP (repeatable):
    /// `[scheme://]host[:port]`, `*.example.com` for subdomains. Once a job
    /// names any host it reaches only hosts it names that its tenant's
    /// allow-list also allows; a job that names none reaches whatever its
    /// tenant's list allows.
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.get_or_insert_with(Vec::new).push(host.into());
        self
    }

    /// Reaches no host at all, whatever its tenant's allow-list says.
    pub fn no_egress(mut self) -> Self {
        self.allowed_hosts = Some(Vec::new());
        self
    }

    /// Declares that the job reads its tenant's secret `name` with
    /// [`crate::Context::secret`] (repeatable); it can read no other.
    pub fn secret(mut self, name: impl Into<String>) -> Self {
        self.secrets.push(name.into());
        self
    }

    /// `(run_every, anchor)` of a periodic job.
    pub fn schedule(&self) -> Option<(Duration, Option<Timestamp>)> {
        self.schedule
    }

    pub(crate) fn into_wit(self) -> wit::Metadata {
        wit::Metadata {
            name: self.name,
            doc: self.doc,
            doc_syntax: match self.doc_syntax {
                DocSyntax::Markdown => types::DocSyntax::Markdown,
                DocSyntax::Plain => types::DocSyntax::Plain,
            },
            kind: match (self.cron, self.schedule) {
                (Some((expression, zone)), _) => types::JobKind::Cron(types::CronSchedule { expression, zone }),
                (None, None) => types::JobKind::Regular,
                (None, Some((run_every, anchor))) => {
                    types::JobKind::Periodic(types::Schedule { run_every: millis(run_every), anchor })
                }
            },
            overlap: match self.overlap {
                Overlap::Allow => types::Overlap::Allow,
                Overlap::Forbid => types::Overlap::Forbid,
                Overlap::ByArgs => types::Overlap::ByArgs,
            },
            expiry: self.expiry.map(millis),
            limits: types::Limits {
                fuel: self.limits.fuel,
                timeout: self.limits.timeout.map(millis),
                memory_bytes: self.limits.memory_bytes,
            },
            retry: types::RetryPolicy {
                max_retries: self.retry.max_retries,
                initial_backoff: millis(self.retry.initial_backoff),
                max_backoff: millis(self.retry.max_backoff),
                retry_on_trap: self.retry.retry_on_trap,
                retry_on_timeout: self.retry.retry_on_timeout,
            },
            allowed_hosts: self.allowed_hosts,
            secrets: self.secrets,
        }
    }
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
