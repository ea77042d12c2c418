//! The sandboxed runtime: compile a job component once, run each task in a
//! fresh instance.
//!
//! - [`Runtime`] owns the one wasmtime [`Engine`], configured for many short
//!   tasks: component model, async calls, the pooling allocator, fuel, epoch
//!   interruption for deadlines and an explicit wasm stack limit.
//! - [`Runtime::load`] validates a component, compiles it (or loads its
//!   cached compile), pre-links it and asks it for its metadata, giving a
//!   [`JobComponent`].
//! - [`Runtime::run`] runs one task of a [`JobComponent`] in a fresh store
//!   under [`TaskLimits`] and returns a [`TaskReport`]: the [`Outcome`], the
//!   fuel consumed, the wall time and the log.
//! - [`Runtime::is_due`] and [`Runtime::overlap_key`] ask a job's other
//!   exports, sandboxed and bounded in the same way.

mod cache;
pub mod compiler;
mod context;
mod epoch;
#[cfg(test)]
mod fuzz;
mod limits;
mod load;
mod log;
pub mod meter;
mod outcome;
pub(crate) mod sandbox;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};

pub use self::compiler::CompileLimits;
pub(crate) use self::context::TaskContext;
pub use self::context::{
    BoxFuture, ChildQueue, ChildRequest, MAX_PROGRESS_MESSAGE, NoProgress, Progress, ProgressSink, RecordingQueue,
    check_args,
};
pub use self::epoch::EPOCH_TICK;
pub use self::limits::{EngineLimits, TaskLimits};
pub use self::load::{JobComponent, LoadError, content_hash};
pub use self::log::{LogLevel, TaskLog, escape_controls};
pub use self::outcome::{Outcome, TaskReport};
use self::outcome::{StopCause, classify};
use self::sandbox::{SandboxLimiter, TaskState};
use crate::contract::{self, Answer, CallResult, Due, Export, JobPre};
use crate::egress::{Egress, EgressConfig, Grant, HttpUsage, TaskHttp};
use crate::secret::Secrets;
use crate::task::TaskId;

/// How to build a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Limits and defaults of every task.
    pub limits: EngineLimits,
    /// Where compiled components are cached; `None` disables the cache.
    /// Default: none.
    pub cache_dir: Option<PathBuf>,
    /// Instances that may exist at once: the size of the pooling allocator.
    /// Default 1,000; a node raises it to its concurrency plus room for
    /// control calls. Each slot reserves address space (not memory) for the
    /// largest memory a task may have.
    pub max_instances: u32,
    /// Meter fuel. Default on; turning it off is for benchmarks only, since
    /// the fuel budget is then not enforced.
    pub consume_fuel: bool,
    /// The program that compiles components in a child process of its own,
    /// under [`RuntimeConfig::compile`] ([`compiler`]): the `wasmjob` binary.
    /// `None` compiles in this process, with only the structural checks
    /// and the concurrency bound (for embedding and tests). Default: `None`;
    /// `wasmjob serve`, `run` and `inspect` set it to themselves.
    pub compiler: Option<PathBuf>,
    /// Limits of each compile.
    pub compile: CompileLimits,
    /// Where jobs' requests may connect beyond the public internet, and
    /// which certificates they trust.
    pub egress: EgressConfig,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            limits: EngineLimits::default(),
            cache_dir: None,
            max_instances: 1000,
            consume_fuel: true,
            compiler: None,
            compile: CompileLimits::default(),
            egress: EgressConfig::default(),
        }
    }
}

impl RuntimeConfig {
    /// The defaults, compiling in a child process of the running `wasmjob`
    /// binary.
    pub fn isolated() -> Self {
        Self { compiler: std::env::current_exe().ok(), ..Self::default() }
    }
}

/// The sandboxed runtime. Cheap to share behind an `Arc`.
pub struct Runtime {
    engine: Engine,
    linker: Linker<TaskState>,
    limits: EngineLimits,
    consume_fuel: bool,
    cache: Option<cache::ArtifactCache>,
    compiler: Option<PathBuf>,
    compile: compiler::CompileSpec,
    /// Bounds the compiles running at once.
    compiles: tokio::sync::Semaphore,
    /// Compiles in flight, by content hash: a second load of the same
    /// bytes waits for the first one's compile instead of compiling again.
    in_flight: std::sync::Mutex<HashMap<String, Arc<SharedCompile>>>,
    /// Components compiled (not loaded from the cache, nor shared).
    compiled: std::sync::atomic::AtomicU64,
    /// Turns true when the node stops: compiles in flight are killed.
    stopping: tokio::sync::watch::Sender<bool>,
    egress: Arc<Egress>,
    _ticker: epoch::EpochTicker,
}

/// One compile, whose result every load of the same bytes waits for.
type SharedCompile = tokio::sync::OnceCell<Result<Component, LoadError>>;

/// One task to run.
pub struct TaskInput {
    pub task_id: TaskId,
    /// 1 for the first run.
    pub attempt: u32,
    /// A JSON object.
    pub args: String,
    pub limits: TaskLimits,
    /// Where the tasks this task queues go.
    pub children: Arc<dyn ChildQueue>,
    /// Where its progress reports go.
    pub progress: Arc<dyn ProgressSink>,
    /// Where its requests may go, and how much it may send and receive.
    pub egress: Grant,
    /// Its tenant's secrets, by name: the task reads those its job
    /// declares (any others are dropped).
    pub secrets: HashMap<String, String>,
}

/// A call to `is-due` or `overlap-key` that did not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the job's `{export}` export failed: {}", outcome.describe())]
pub struct ControlCallError {
    pub export: &'static str,
    pub outcome: Outcome,
}

impl Runtime {
    /// Builds the engine, its linker and the epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let engine = match Engine::new(&engine_config(&config, true)) {
            Ok(engine) => engine,
            Err(e) => {
                // Some hosts cap virtual memory below what the pool reserves.
                tracing::warn!(error = %e, "pooling allocator unavailable; instantiating on demand");
                Engine::new(&engine_config(&config, false))?
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        contract::add_to_linker(&mut linker)?;
        // A cache only saves time: one that cannot be opened is done without.
        let cache = config.cache_dir.as_ref().and_then(|dir| match cache::ArtifactCache::open(dir, &engine) {
            Ok(cache) => Some(cache),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot open the compile cache; compiling every time");
                None
            }
        });
        let ticker = epoch::EpochTicker::start(engine.weak());
        let compile = compiler::CompileSpec {
            consume_fuel: config.consume_fuel,
            max_wasm_stack: config.limits.max_wasm_stack,
            max_memory_bytes: config.limits.max_memory_bytes,
            limits: config.compile,
        };
        Ok(Self {
            engine,
            linker,
            limits: config.limits,
            consume_fuel: config.consume_fuel,
            cache,
            compiler: config.compiler,
            compiles: tokio::sync::Semaphore::new(config.compile.concurrent.max(1)),
            in_flight: std::sync::Mutex::default(),
            compiled: std::sync::atomic::AtomicU64::new(0),
            compile,
            stopping: tokio::sync::watch::Sender::new(false),
            egress: Arc::new(Egress::new(&config.egress)?),
            _ticker: ticker,
        })
    }

    /// Stops every compile in flight, and refuses new ones: the node stops.
    pub fn stop_compiling(&self) {
        self.stopping.send_replace(true);
    }

    /// The limits of each compile.
    pub fn compile_limits(&self) -> &CompileLimits {
        &self.compile.limits
    }

    /// The engine's limits.
    pub fn limits(&self) -> &EngineLimits {
        &self.limits
    }

    /// The limits a task of `job` runs under, unless overridden.
    pub fn task_limits(&self, job: &JobComponent) -> TaskLimits {
        self.limits.resolve(&job.metadata().limits)
    }

    /// Runs one task of `job`. Never fails: every way a task can end is an
    /// [`Outcome`].
    pub async fn run(&self, job: &JobComponent, input: TaskInput) -> TaskReport {
        let log = TaskLog::new(self.limits.max_log_bytes, self.limits.max_log_line_bytes);
        if let Err(e) = check_args(&input.args, self.limits.max_args_bytes) {
            return TaskReport {
                outcome: Outcome::FatalError { message: e.to_string() },
                fuel_consumed: 0,
                wall_time: Duration::ZERO,
                http: HttpUsage::default(),
                log: String::new(),
            };
        }
        let limits = self.limits.cap(input.limits);
        let secrets = Secrets::new(&job.metadata().secrets, input.secrets);
        let ctx =
            TaskContext::new(input.task_id, input.attempt, input.children, log.clone(), self.limits.max_args_bytes)
                .with_secrets(secrets)
                .with_progress(input.progress);
        let hooks = TaskHttp::new(self.egress.clone(), input.egress, log.clone());
        let (answer, fuel_consumed, wall_time, http) =
            self.sandboxed(&job.pre, ctx, hooks, limits, Export::Call(&input.args)).await;
        let outcome = match answer {
            Ok(Answer::Call(CallResult::Ok(json))) => self.check_result(json),
            Ok(Answer::Call(CallResult::Retryable(message))) => Outcome::RetryableError { message },
            Ok(Answer::Call(CallResult::Fatal(message))) => Outcome::FatalError { message },
            Ok(_) => unreachable!("`call` answers with a call result"),
            Err(outcome) => outcome,
        };
        TaskReport { outcome, fuel_consumed, wall_time, http, log: log.contents() }
    }

    /// Asks a periodic job whether a task is due at `now`; a cron-periodic
    /// job's answer is computed here, from its expression, without a call.
    pub async fn is_due(
        &self,
        job: &JobComponent,
        last_run_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Due, ControlCallError> {
        if let crate::job::JobKind::Cron(cron) = &job.metadata().kind {
            return Ok(crate::plan::cron_due(cron, last_run_at.timestamp_millis(), now.timestamp_millis()));
        }
        let export = Export::IsDue { last_run_at: last_run_at.timestamp_millis(), now: now.timestamp_millis() };
        match self.control_call(&job.pre, export).await {
            Ok(Answer::IsDue(due)) => Ok(due),
            Ok(_) => unreachable!("`is-due` answers with a due"),
            Err(outcome) => Err(ControlCallError { export: "is-due", outcome }),
        }
    }

    /// Asks an `overlap: by-args` job under which key a task with `args` must
    /// not overlap others.
    pub async fn overlap_key(&self, job: &JobComponent, args: &str) -> Result<Option<String>, ControlCallError> {
        match self.control_call(&job.pre, Export::OverlapKey(args)).await {
            Ok(Answer::OverlapKey(Some(key))) if key.len() > contract::MAX_OVERLAP_KEY_BYTES => {
                let message =
                    format!("an overlap key of {} bytes; the limit is {}", key.len(), contract::MAX_OVERLAP_KEY_BYTES);
                Err(ControlCallError { export: "overlap-key", outcome: Outcome::InvalidOutput { message } })
            }
            Ok(Answer::OverlapKey(key)) => Ok(key),
            Ok(_) => unreachable!("`overlap-key` answers with a key"),
            Err(outcome) => Err(ControlCallError { export: "overlap-key", outcome }),
        }
    }

    /// Calls one of the engine's control exports (`metadata`, `is-due`,
    /// `overlap-key`) under `control_call` limits, with no task behind it.
    async fn control_call(&self, pre: &JobPre<TaskState>, export: Export<'_>) -> Result<Answer, Outcome> {
        let log = TaskLog::new(self.limits.max_log_bytes, self.limits.max_log_line_bytes);
        // Control calls reach no network.
        let hooks = TaskHttp::new(self.egress.clone(), Grant::default(), log.clone());
        let ctx =
            TaskContext::new("control".into(), 1, Arc::new(RecordingQueue::default()), log, self.limits.max_args_bytes);
        self.sandboxed(pre, ctx, hooks, self.limits.control_call, export).await.0
    }

    /// Instantiates `pre` in a fresh store and calls `export`, under `limits`.
    /// Returns the answer (or the outcome that stopped it), the fuel
    /// consumed, the wall time and the network used.
    async fn sandboxed(
        &self,
        pre: &JobPre<TaskState>,
        ctx: TaskContext,
        hooks: TaskHttp,
        limits: TaskLimits,
        export: Export<'_>,
    ) -> (Result<Answer, Outcome>, u64, Duration, HttpUsage) {
        let start = Instant::now();
        let deadline = start + limits.timeout;
        let limiter = SandboxLimiter::new(limits.memory_bytes, self.limits.max_table_elements);
        let mut store = Store::new(&self.engine, TaskState::new(ctx, hooks, limiter));
        store.limiter(|state| &mut state.limiter);
        if self.consume_fuel {
            store.set_fuel(limits.fuel).expect("fuel is enabled");
        }
        store.set_epoch_deadline(1);
        let metered = self.consume_fuel;
        store.epoch_deadline_callback(move |ctx| {
            // Host work is paid from the same budget as guest work. (The
            // running code keeps its fuel counter in a register, so the
            // host's share is added up apart and compared, not subtracted.)
            if metered && ctx.data().task.log.work().total() > ctx.get_fuel()? {
                return Err(wasmtime::Trap::OutOfFuel.into());
            }
            Ok(if Instant::now() >= deadline { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
        });

        let call = pre.invoke(&mut store, export);
        // The epoch stops wasm at the deadline; this backstop also stops a
        // task stuck in an async host call.
        let result = match tokio::time::timeout(limits.timeout + 4 * EPOCH_TICK, call).await {
            Ok(result) => result,
            Err(_) => Err(wasmtime::Trap::Interrupt.into()),
        };
        let wall_time = start.elapsed();
        // A task whose host work outgrew what it had left ran out of fuel,
        // however it ended.
        let debt = store.data().task.log.work().total();
        let left = if self.consume_fuel { store.get_fuel().unwrap_or(0) } else { 0 };
        let fuel_consumed =
            if self.consume_fuel { (limits.fuel - left).saturating_add(debt).min(limits.fuel) } else { 0 };
        let result = match result {
            Ok(_) if self.consume_fuel && debt > left => Err(wasmtime::Trap::OutOfFuel.into()),
            other => other,
        };
        let answer = result.map_err(|error| {
            let cause = StopCause {
                fuel: limits.fuel,
                timeout: limits.timeout,
                memory_bytes: limits.memory_bytes,
                memory_refused: store.data().limiter.memory_refused,
            };
            classify(&error, &cause)
        });
        (answer, fuel_consumed, wall_time, store.data().hooks.usage())
    }

    /// A result must be JSON and within the size bound; it is never cut.
    fn check_result(&self, json: String) -> Outcome {
        if json.len() > self.limits.max_result_bytes {
            return Outcome::OutputTooLarge { bytes: json.len(), limit: self.limits.max_result_bytes };
        }
        match serde_json::from_str::<serde::de::IgnoredAny>(&json) {
            Ok(_) => Outcome::Success { result: json },
            Err(e) => Outcome::InvalidOutput { message: e.to_string() },
        }
    }
}

/// An engine that compiles exactly as a runtime with `spec` would, without
/// the pooling allocator's reservations (a compiler child's address space
/// is limited).
pub(crate) fn engine_for_compiling(spec: &compiler::CompileSpec) -> anyhow::Result<Engine> {
    let config = RuntimeConfig {
        limits: EngineLimits {
            max_wasm_stack: spec.max_wasm_stack,
            max_memory_bytes: spec.max_memory_bytes,
            ..Default::default()
        },
        consume_fuel: spec.consume_fuel,
        ..RuntimeConfig::default()
    };
    Ok(Engine::new(&engine_config(&config, false))?)
}

/// The engine configuration: one place for every setting that shapes the
/// sandbox.
fn engine_config(config: &RuntimeConfig, pooling: bool) -> Config {
    let limits = &config.limits;
    let mut c = Config::new();
    c.wasm_component_model(true)
        .consume_fuel(config.consume_fuel)
        .epoch_interruption(true)
        .max_wasm_stack(limits.max_wasm_stack)
        // Room for host frames below the wasm stack limit on the fiber.
        .async_stack_size(limits.max_wasm_stack + (1 << 20))
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    if pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * 4)
            .total_memories(config.max_instances)
            .total_tables(config.max_instances * 2)
            .total_stacks(config.max_instances)
            .max_memory_size(usize::try_from(limits.max_memory_bytes).unwrap_or(usize::MAX))
            // Reset small memories with memset instead of madvise+page
            // faults: most tasks touch little memory.
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(1 << 16)
            .pagemap_scan(wasmtime::Enabled::Auto);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    c
}
