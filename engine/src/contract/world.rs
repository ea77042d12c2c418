//! One version of the `wasmjob:job` world: its generated bindings, its host
//! imports on the sandbox's state, and its exports mapped onto the engine's
//! types. Versions differ in a few types and imports only, so each is the
//! same text ([`world!`]) over its own `bindgen!`, with what is its own
//! passed in.

/// Expands, inside a version's module, to its bindings and their mapping.
///
/// - `bindgen`: the arguments of its `bindgen!`;
/// - `declared`: given the guest's `metadata` record (`&mut`), the hosts
///   and secrets it declares, as a `Declared`;
/// - `periodic`: given the guest's `job-kind`, its periodic schedule, as a
///   `Periodic` (`None` for a regular job);
/// - `host`: the host functions of this version beyond the ones all share.
macro_rules! world {
    (
        bindgen: { $($bindgen:tt)* },
        declared: |$m:ident| $declared:expr,
        periodic: |$k:ident| $periodic:expr,
        host: { $($host:item)* } $(,)?
    ) => {
        mod bindings {
            wasmtime::component::bindgen!({ $($bindgen)* });
        }

        use std::time::Duration;

        use wasmtime::component::{HasSelf, Linker};

        use bindings::wasmjob::job::{host, types};
        pub(crate) use bindings::{Job, JobPre};
        use $crate::contract::{Answer, CallResult, Export, bounded_message, checked_metadata, Declared, Periodic};
        use $crate::job::{DocSyntax, JobMetadata, MetadataError, Overlap, RequestedLimits, RetryPolicy};
        use $crate::runtime::LogLevel;
        use $crate::runtime::sandbox::TaskState;
        use $crate::task::{QueueError, QueueOptions, TaskId};

        /// Links this version's `host` and `types` imports into `linker`.
        pub(crate) fn add_to_linker(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
            host::add_to_linker::<TaskState, HasSelf<TaskState>>(linker, |state| state)?;
            types::add_to_linker::<TaskState, HasSelf<TaskState>>(linker, |state| state)
        }

        impl types::Host for TaskState {}

        impl host::Host for TaskState {
            fn current_task_id(&mut self) -> wasmtime::Result<String> {
                Ok(self.task.task_id.clone())
            }

            fn attempt(&mut self) -> wasmtime::Result<u32> {
                Ok(self.task.attempt)
            }

            async fn queue_task(
                &mut self,
                job: String,
                args: String,
                options: types::QueueOptions,
            ) -> wasmtime::Result<Result<TaskId, types::QueueError>> {
                let answer = self
                    .task
                    .queue_child(job, args, queue_options(options))
                    .await
                    .map_err(wasmtime::Error::from_anyhow)?;
                Ok(answer.map_err(queue_error))
            }

            fn log(&mut self, level: types::LogLevel, message: String) -> wasmtime::Result<()> {
                let level = match level {
                    types::LogLevel::Trace => LogLevel::Trace,
                    types::LogLevel::Debug => LogLevel::Debug,
                    types::LogLevel::Info => LogLevel::Info,
                    types::LogLevel::Warn => LogLevel::Warn,
                    types::LogLevel::Error => LogLevel::Error,
                };
                self.task.log.line(level, &message);
                Ok(())
            }

            $($host)*
        }

        /// A guest's queueing options in the engine's terms.
        fn queue_options(options: types::QueueOptions) -> QueueOptions {
            QueueOptions {
                expiry: options.expiry.map(Duration::from_millis),
                delay: options.delay.map(Duration::from_millis),
                run_at: None,
                unique_for: None,
                priority: options.priority,
                max_retries: options.max_retries,
                queue: None,
            }
        }

        /// Why queueing refused, as the guest sees it.
        fn queue_error(e: QueueError) -> types::QueueError {
            match e {
                QueueError::UnknownJob(job) => types::QueueError::UnknownJob(job),
                QueueError::Duplicate(id) => types::QueueError::Duplicate(id),
                QueueError::InvalidArgs(why) => types::QueueError::InvalidArgs(why),
                // The WIT has no case of its own for options; the message names the option.
                e @ QueueError::InvalidOption { .. } => types::QueueError::InvalidArgs(e.to_string()),
                QueueError::QuotaExceeded(which) => types::QueueError::QuotaExceeded(which),
                QueueError::DepthExceeded(max) => types::QueueError::DepthExceeded(max),
            }
        }

        /// A job-error message is guest-controlled: it is cut to
        /// [`MAX_ERROR_BYTES`](super::MAX_ERROR_BYTES), since it is stored and served.
        fn call_result(result: Result<String, types::JobError>) -> CallResult {
            match result {
                Ok(json) => CallResult::Ok(json),
                Err(types::JobError::Retryable(message)) => CallResult::Retryable(bounded_message(message)),
                Err(types::JobError::Fatal(message)) => CallResult::Fatal(bounded_message(message)),
            }
        }

        /// Maps the job's declared metadata onto [`JobMetadata`] and checks it.
        fn metadata(mut m: types::Metadata) -> Result<JobMetadata, MetadataError> {
            let declared: Declared = {
                #[allow(unused_variables)]
                let $m = &mut m;
                $declared
            };
            let schedule: Option<Periodic> = {
                let $k = m.kind;
                $periodic
            };
            let metadata = JobMetadata {
                name: m.name,
                doc: m.doc,
                doc_syntax: match m.doc_syntax {
                    types::DocSyntax::Markdown => DocSyntax::Markdown,
                    types::DocSyntax::Plain => DocSyntax::Plain,
                },
                kind: $crate::job::JobKind::Regular,
                overlap: match m.overlap {
                    types::Overlap::Allow => Overlap::Allow,
                    types::Overlap::Forbid => Overlap::Forbid,
                    types::Overlap::ByArgs => Overlap::ByArgs,
                },
                expiry: m.expiry.map(Duration::from_millis),
                limits: RequestedLimits {
                    fuel: m.limits.fuel,
                    timeout: m.limits.timeout.map(Duration::from_millis),
                    memory_bytes: m.limits.memory_bytes,
                },
                retry: RetryPolicy {
                    max_retries: m.retry.max_retries,
                    initial_backoff: Duration::from_millis(m.retry.initial_backoff),
                    max_backoff: Duration::from_millis(m.retry.max_backoff),
                    retry_on_trap: m.retry.retry_on_trap,
                    retry_on_timeout: m.retry.retry_on_timeout,
                },
                allowed_hosts: None,
                secrets: Vec::new(),
            };
            checked_metadata(metadata, schedule, declared)
        }

        /// Calls `export` on `instance`. Errors are traps.
        pub(crate) async fn invoke<T: Send + 'static>(
            instance: &Job,
            store: &mut wasmtime::Store<T>,
            export: Export<'_>,
        ) -> wasmtime::Result<Answer> {
            Ok(match export {
                Export::Metadata => Answer::Metadata(Box::new(metadata(instance.call_metadata(store).await?))),
                Export::Call(args) => Answer::Call(call_result(instance.call_call(store, args).await?)),
                Export::OverlapKey(args) => Answer::OverlapKey(instance.call_overlap_key(store, args).await?),
                Export::IsDue { last_run_at, now } => {
                    let due = instance.call_is_due(store, last_run_at, now).await?;
                    Answer::IsDue($crate::contract::Due {
                        is_due: due.is_due,
                        next_run_in: Duration::from_millis(due.next_run_in),
                    })
                }
            })
        }
    };
}

pub(super) use world;
