//! The `wasmjob:job` WIT worlds a job may export (`wit/job.wit`, 0.3.0,
//! `wit/v0.2.0/job.wit` and `wit/v0.1.0/job.wit`), and the boundary
//! between their generated types and the engine's own.
//!
//! `bindgen!` stays private to this module: the rest of the engine sees
//! [`JobPre`], [`JobMetadata`], [`Due`] and [`QueueError`](crate::task::QueueError),
//! never a generated type. The host imports are implemented on the
//! sandbox's state by delegating to the task's `TaskContext`;
//! errors the guest may see (`queue-error`, `secret-error`) are kept apart
//! from traps (a failure of the engine itself, which aborts the task).
//!
//! Every version is linked side by side: a component is pre-linked against
//! the newest first, and runs with the one it exports.

use std::time::Duration;

use chrono::{DateTime, Utc};
use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

use crate::egress::AllowList;
use crate::job::{CronSchedule, JobKind, JobMetadata, MAX_DOC_LEN, MetadataError, Schedule, validate_name};
use crate::runtime::sandbox::TaskState;

mod world;

/// Contract 0.1.0: no declared hosts or secrets.
mod v0_1 {
    super::world::world! {
        bindgen: {
            path: "../wit/v0.1.0",
            world: "wasmjob:job/job",
            imports: {
                // Queueing may wait on the store; a store failure traps the task.
                "wasmjob:job/host.queue-task": async | trappable,
                default: trappable,
            },
            exports: { default: async },
        },
        declared: |m| Declared::default(),
        periodic: |k| match k {
            types::JobKind::Regular => None,
            types::JobKind::Periodic(s) => Some(Periodic::Every(s.run_every, s.anchor)),
        },
        host: {},
    }
}

/// Contract 0.2.0: declared hosts and secrets, and `host.secret`.
mod v0_2 {
    super::world::world! {
        bindgen: {
            path: "../wit/v0.2.0",
            world: "wasmjob:job/job",
            imports: {
                // Queueing may wait on the store; a store failure traps the task.
                "wasmjob:job/host.queue-task": async | trappable,
                default: trappable,
            },
            exports: { default: async },
        },
        declared: |m| Declared { allowed_hosts: m.allowed_hosts.take(), secrets: std::mem::take(&mut m.secrets) },
        periodic: |k| match k {
            types::JobKind::Regular => None,
            types::JobKind::Periodic(s) => Some(Periodic::Every(s.run_every, s.anchor)),
        },
        host: {
            fn secret(&mut self, name: String) -> wasmtime::Result<Result<String, types::SecretError>> {
                use crate::secret::Unreadable;
                Ok(match self.task.secret(&name) {
                    Ok(value) => Ok(value),
                    Err(Unreadable::Undeclared(name)) => Err(types::SecretError::Undeclared(name)),
                    Err(Unreadable::Missing(name)) => Err(types::SecretError::Missing(name)),
                })
            }
        },
    }
}

/// Contract 0.3.0: cron-periodic jobs, `host.progress` and
/// `host.start-workflow`.
mod v0_3 {
    super::world::world! {
        bindgen: {
            path: "../wit",
            world: "wasmjob:job/job",
            imports: {
                // Queueing may wait on the store; a store failure traps the task.
                "wasmjob:job/host.queue-task": async | trappable,
                "wasmjob:job/host.start-workflow": async | trappable,
                default: trappable,
            },
            exports: { default: async },
        },
        declared: |m| Declared { allowed_hosts: m.allowed_hosts.take(), secrets: std::mem::take(&mut m.secrets) },
        periodic: |k| match k {
            types::JobKind::Regular => None,
            types::JobKind::Periodic(s) => Some(Periodic::Every(s.run_every, s.anchor)),
            types::JobKind::Cron(c) => Some(Periodic::Cron(c.expression, c.zone)),
        },
        host: {
            fn secret(&mut self, name: String) -> wasmtime::Result<Result<String, types::SecretError>> {
                use crate::secret::Unreadable;
                Ok(match self.task.secret(&name) {
                    Ok(value) => Ok(value),
                    Err(Unreadable::Undeclared(name)) => Err(types::SecretError::Undeclared(name)),
                    Err(Unreadable::Missing(name)) => Err(types::SecretError::Missing(name)),
                })
            }

            fn progress(&mut self, fraction: f32, message: String) -> wasmtime::Result<()> {
                self.task.progress(fraction, &message);
                Ok(())
            }

            async fn start_workflow(
                &mut self,
                stages: Vec<Vec<types::WorkflowStep>>,
            ) -> wasmtime::Result<Result<String, types::QueueError>> {
                // Lifted already (within the guest's memory cap); refused
                // by shape before a second copy.
                if let Err(e) = crate::workflow::check_shape(&stages) {
                    return Ok(Err(queue_error(e)));
                }
                let stages = stages
                    .into_iter()
                    .map(|stage| {
                        stage
                            .into_iter()
                            .map(|s| crate::workflow::Step {
                                job: s.job.to_ascii_lowercase(),
                                args: s.args,
                                options: queue_options(s.options),
                            })
                            .collect()
                    })
                    .collect();
                let answer = self.task.start_workflow(stages).await.map_err(wasmtime::Error::from_anyhow)?;
                Ok(answer.map_err(queue_error))
            }
        },
    }
}

/// A job component pre-linked against the contract version it exports.
pub(crate) enum JobPre<T: 'static> {
    V0_1(v0_1::JobPre<T>),
    V0_2(v0_2::JobPre<T>),
    V0_3(v0_3::JobPre<T>),
}

impl<T: 'static> Clone for JobPre<T> {
    fn clone(&self) -> Self {
        match self {
            Self::V0_1(pre) => Self::V0_1(pre.clone()),
            Self::V0_2(pre) => Self::V0_2(pre.clone()),
            Self::V0_3(pre) => Self::V0_3(pre.clone()),
        }
    }
}

impl<T: Send + 'static> JobPre<T> {
    /// Finds the contract version `pre` exports, newest first. The error
    /// says why it is neither.
    pub(crate) fn new(pre: InstancePre<T>) -> Result<Self, String> {
        let newest = match v0_3::JobPre::new(pre.clone()) {
            Ok(pre) => return Ok(Self::V0_3(pre)),
            Err(e) => e,
        };
        let older = match v0_2::JobPre::new(pre.clone()) {
            Ok(pre) => return Ok(Self::V0_2(pre)),
            Err(e) => e,
        };
        v0_1::JobPre::new(pre).map(Self::V0_1).map_err(|oldest| {
            format!("not a `wasmjob:job/job@0.3.0` ({newest:#}), a `@0.2.0` ({older:#}) nor a `@0.1.0` ({oldest:#})")
        })
    }

    /// The contract version: "0.3.0", "0.2.0" or "0.1.0".
    pub(crate) fn contract(&self) -> &'static str {
        match self {
            Self::V0_1(_) => "0.1.0",
            Self::V0_2(_) => "0.2.0",
            Self::V0_3(_) => "0.3.0",
        }
    }

    /// Instantiates the component in `store` and calls `export`. Errors are
    /// traps.
    pub(crate) async fn invoke(&self, store: &mut Store<T>, export: Export<'_>) -> wasmtime::Result<Answer> {
        match self {
            Self::V0_1(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                v0_1::invoke(&instance, store, export).await
            }
            Self::V0_2(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                v0_2::invoke(&instance, store, export).await
            }
            Self::V0_3(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                v0_3::invoke(&instance, store, export).await
            }
        }
    }
}

/// The answer of a periodic job's `is-due` export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Due {
    /// Whether a task should be queued now.
    pub is_due: bool,
    /// Time from `now` to the next due run.
    pub next_run_in: Duration,
}

/// Links the `wasmjob:job/host` imports of every version into `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    v0_1::add_to_linker(linker)?;
    v0_2::add_to_linker(linker)?;
    v0_3::add_to_linker(linker)
}

/// A periodic job's schedule as a version declares it.
enum Periodic {
    /// `run-every` and `anchor`, in ms.
    Every(u64, Option<i64>),
    /// A cron expression and its zone.
    Cron(String, Option<String>),
}

/// What a job declares it reaches and reads, as the guest wrote it.
#[derive(Default)]
struct Declared {
    allowed_hosts: Option<Vec<String>>,
    secrets: Vec<String>,
}

/// What a job's `call` returned, before the engine checks the result.
pub(crate) enum CallResult {
    Ok(String),
    Retryable(String),
    Fatal(String),
}

/// Longest job-error message kept. Default 16 KiB.
pub const MAX_ERROR_BYTES: usize = 16 << 10;
/// Longest overlap key a job may answer; a longer one refuses the task.
/// Default 1 KiB.
pub const MAX_OVERLAP_KEY_BYTES: usize = 1 << 10;

/// `message`, cut to [`MAX_ERROR_BYTES`] on a character boundary, saying so.
fn bounded_message(mut message: String) -> String {
    if message.len() <= MAX_ERROR_BYTES {
        return message;
    }
    let total = message.len();
    let mut cut = MAX_ERROR_BYTES;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(&format!(" [wasmjob: message cut at {cut} of {total} bytes]"));
    message
}

/// Checks a job's metadata as a version mapped it (the name as the guest
/// sent it, regular, nothing declared), and completes it with its
/// `schedule` (`run-every`, `anchor` in ms) and what it declared. The name is
/// lower-cased here, whatever the guest sent.
fn checked_metadata(
    mut m: JobMetadata,
    periodic: Option<Periodic>,
    declared: Declared,
) -> Result<JobMetadata, MetadataError> {
    validate_name(&m.name)?;
    m.name = m.name.to_ascii_lowercase();
    if m.doc.len() > MAX_DOC_LEN {
        return Err(MetadataError::DocTooLong);
    }
    match periodic {
        None => {}
        Some(Periodic::Every(run_every, anchor)) => {
            if run_every == 0 {
                return Err(MetadataError::ZeroPeriod);
            }
            let anchor = anchor
                .map(|ms| DateTime::<Utc>::from_timestamp_millis(ms).ok_or(MetadataError::AnchorOutOfRange))
                .transpose()?;
            m.kind = JobKind::Periodic(Schedule { run_every: Duration::from_millis(run_every), anchor });
        }
        Some(Periodic::Cron(expression, zone)) => {
            let now = Utc::now().timestamp_millis();
            let when =
                crate::plan::When::new(Some(&expression), zone.as_deref(), None, now).map_err(MetadataError::Cron)?;
            let crate::plan::When::Cron { expression, zone } = when else {
                unreachable!("a cron expression was given")
            };
            m.kind = JobKind::Cron(CronSchedule { expression, zone });
        }
    }
    m.allowed_hosts = declared
        .allowed_hosts
        .map(|hosts| AllowList::parse(&hosts))
        .transpose()
        .map_err(MetadataError::AllowedHosts)?;
    m.secrets = crate::secret::validate_declared(declared.secrets).map_err(MetadataError::Secrets)?;
    Ok(m)
}

/// A call into one of the world's exports.
pub(crate) enum Export<'a> {
    Metadata,
    Call(&'a str),
    OverlapKey(&'a str),
    IsDue { last_run_at: i64, now: i64 },
}

/// What an export answered, in the engine's types.
pub(crate) enum Answer {
    Metadata(Box<Result<JobMetadata, MetadataError>>),
    Call(CallResult),
    OverlapKey(Option<String>),
    IsDue(Due),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{DocSyntax, Overlap, RequestedLimits, RetryPolicy};
    use crate::secret::SecretError;

    fn regular(name: &str) -> JobMetadata {
        JobMetadata {
            name: name.into(),
            doc: String::new(),
            doc_syntax: DocSyntax::Plain,
            kind: JobKind::Regular,
            overlap: Overlap::Allow,
            expiry: None,
            limits: RequestedLimits::default(),
            retry: RetryPolicy {
                max_retries: 0,
                initial_backoff: Duration::ZERO,
                max_backoff: Duration::ZERO,
                retry_on_trap: false,
                retry_on_timeout: false,
            },
            allowed_hosts: None,
            secrets: Vec::new(),
        }
    }

    fn declared(hosts: Option<Vec<String>>, secrets: Vec<String>) -> Declared {
        Declared { allowed_hosts: hosts, secrets }
    }

    #[test]
    fn declared_hosts_and_secrets_are_checked_and_kept() {
        let hosts = Some(vec!["https://*.example.com".to_owned(), "localhost:8080".to_owned()]);
        let secrets = vec!["token".to_owned(), "token".to_owned(), "API.key".to_owned()];
        let m = checked_metadata(regular("Hook"), None, declared(hosts, secrets)).unwrap();
        assert_eq!(m.name, "hook");
        assert_eq!(m.allowed_hosts.unwrap().to_strings(), ["https://*.example.com", "localhost:8080"]);
        assert_eq!(m.secrets, ["token", "API.key"], "duplicates dropped, case kept");
        let none = checked_metadata(regular("a"), None, Declared::default()).unwrap();
        assert_eq!((none.allowed_hosts, none.secrets), (None, vec![]), "nothing declared: the tenant's list applies");
        let nowhere = checked_metadata(regular("a"), None, declared(Some(vec![]), vec![])).unwrap();
        assert!(nowhere.allowed_hosts.unwrap().is_empty(), "an empty list reaches no host");
    }

    #[test]
    fn declarations_far_past_their_bounds_are_refused_naming_the_field() {
        let many_hosts: Vec<String> = (0..100_000).map(|i| format!("h{i}.example.com")).collect();
        let e = checked_metadata(regular("a"), None, declared(Some(many_hosts), vec![])).unwrap_err();
        assert!(matches!(e, MetadataError::AllowedHosts(_)), "{e}");
        let long_host = vec![format!("{}.example.com", "h".repeat(1 << 20))];
        let e = checked_metadata(regular("a"), None, declared(Some(long_host), vec![])).unwrap_err();
        assert!(e.to_string().starts_with("the job's `allowed-hosts`"), "{e}");
        for bad in ["http://", "ftp://example.com", "exa mple.com", "example.com:99999", ""] {
            let e = checked_metadata(regular("a"), None, declared(Some(vec![bad.into()]), vec![])).unwrap_err();
            assert!(matches!(e, MetadataError::AllowedHosts(_)), "`{bad}`: {e}");
        }
        let many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
        let e = checked_metadata(regular("a"), None, declared(None, many)).unwrap_err();
        assert_eq!(e, MetadataError::Secrets(SecretError::TooManyDeclared));
        for bad in ["", "a b", "x/../y", "\u{212A}"] {
            let e = checked_metadata(regular("a"), None, declared(None, vec![bad.into()])).unwrap_err();
            assert!(matches!(e, MetadataError::Secrets(SecretError::InvalidName(_))), "`{bad}`: {e}");
        }
        let e = checked_metadata(regular("a"), None, declared(None, vec!["s".repeat(1 << 20)])).unwrap_err();
        assert!(e.to_string().len() < 200, "the error does not echo a megabyte: {e}");
    }
}
