//! A bare wasmtime host: the yardstick `wasmjob bench` holds the sandbox
//! against, measured in the same run on the same machine.
//!
//! It runs a job's `call` the way the smallest embedding of wasmtime would:
//! an [`Engine`] built from wasmtime's default [`Config`] with only what a
//! [`BareSettings`] names turned on (fuel, epoch interruption, the pooling
//! allocator with `PoolingAllocationConfig::default()`), WASI linked as the
//! runtime links it (`add_to_linker_async`) over a default `WasiCtx`, the
//! `wasmjob:job/host` imports as no-ops, and a fresh store and instance for
//! every call. There is no resource limiter, no log, no deadline and no epoch
//! ticker. What the sandbox costs beyond this host is ours; what this host
//! costs beyond native code is wasmtime's.
//!
//! ```ignore
//! let host = BareHost::new(BareSettings { fuel: true, epoch: false, pooling: false })?;
//! let fib = host.load(crate::examples::FIB)?;
//! let wall_time = host.call(&fib, r#"{"n":30}"#).await?;
//! ```

use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::error::Context as _;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::contract::{Answer, CallResult, Export, JobPre};

/// What a bare host turns on; everything else is wasmtime's default.
#[derive(Debug, Clone, Copy)]
pub(super) struct BareSettings {
    /// `Config::consume_fuel`, with a store budget of `u64::MAX`. Default in
    /// wasmtime: off.
    pub fuel: bool,
    /// `Config::epoch_interruption`. No ticker runs, so the checks are paid
    /// and the deadline is never reached. Default in wasmtime: off.
    pub epoch: bool,
    /// The pooling allocator with `PoolingAllocationConfig::default()` (1,000
    /// instances and memories, 4 GiB per memory, nothing kept resident).
    /// Default in wasmtime: off, instances are allocated on demand.
    pub pooling: bool,
}

impl BareSettings {
    /// How the figures name the instrumentation: "fuel + epoch", "epoch only"...
    pub(super) fn metering(self) -> &'static str {
        match (self.fuel, self.epoch) {
            (true, true) => "fuel + epoch",
            (true, false) => "fuel only",
            (false, true) => "epoch only",
            (false, false) => "no fuel, no epoch",
        }
    }

    /// How the figures name the instance allocator.
    pub(super) fn allocator(self) -> &'static str {
        if self.pooling { "pooling" } else { "on-demand" }
    }

    fn engine_config(self) -> Config {
        let mut config = Config::new();
        config.consume_fuel(self.fuel).epoch_interruption(self.epoch);
        if self.pooling {
            // `PoolingAllocationConfig::default()`.
            config.allocation_strategy(InstanceAllocationStrategy::pooling());
        }
        config
    }
}

/// One engine and its linker, configured by [`BareSettings`].
pub(super) struct BareHost {
    engine: Engine,
    linker: Linker<BareState>,
    settings: BareSettings,
}

/// A job component compiled and pre-linked by a [`BareHost`].
pub(super) struct BareJob {
    pre: JobPre<BareState>,
}

impl BareHost {
    /// Builds the engine and links WASI and the job's host imports.
    pub(super) fn new(settings: BareSettings) -> anyhow::Result<Self> {
        let engine = Engine::new(&settings.engine_config())
            .with_context(|| format!("building a bare wasmtime engine ({settings:?})"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        add_job_host_to_linker(&mut linker)?;
        Ok(Self { engine, linker, settings })
    }

    /// Compiles and pre-links the job component at `path`.
    pub(super) fn load(&self, path: &str) -> anyhow::Result<BareJob> {
        let component = Component::from_file(&self.engine, path).with_context(|| format!("compiling {path}"))?;
        let pre = JobPre::new(self.linker.instantiate_pre(&component)?).map_err(anyhow::Error::msg)?;
        Ok(BareJob { pre })
    }

    /// Calls the job's `call` with `args` in a fresh store and instance.
    /// Returns the time from the store's creation to the answer, as the
    /// sandbox's `TaskReport::wall_time` counts it; an error the job answers
    /// is an error here.
    pub(super) async fn call(&self, job: &BareJob, args: &str) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let mut store = Store::new(&self.engine, BareState::default());
        if self.settings.fuel {
            store.set_fuel(u64::MAX)?;
        }
        if self.settings.epoch {
            // The store's deadline starts at the current epoch, which traps at
            // the first check; nothing advances the epoch past this one.
            store.set_epoch_deadline(1);
        }
        match job.pre.invoke(&mut store, Export::Call(args)).await? {
            Answer::Call(CallResult::Ok(_)) => Ok(start.elapsed()),
            _ => anyhow::bail!("the job answered an error"),
        }
    }
}

/// A store's state: WASI's, with wasmtime's defaults, and nothing of ours.
#[derive(Default)]
struct BareState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for BareState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The `wasmjob:job/host` imports with the least work behind them: a fixed
/// task id and attempt, `log` dropped, `queue-task` and `start-workflow`
/// traps (no benchmarked job queues tasks). Dynamic functions (`func_new`) spare the WIT types.
fn add_job_host_to_linker(linker: &mut Linker<BareState>) -> wasmtime::Result<()> {
    for version in ["0.1.0", "0.2.0", "0.3.0"] {
        // An interface of types only, which every job imports.
        linker.instance(&format!("wasmjob:job/types@{version}"))?;
        let mut host = linker.instance(&format!("wasmjob:job/host@{version}"))?;
        host.func_wrap("current-task-id", |_, ()| Ok((String::from("bare"),)))?;
        host.func_wrap("attempt", |_, ()| Ok((1u32,)))?;
        host.func_new("log", |_, _, _, _| Ok(()))?;
        host.func_new("queue-task", |_, _, _, _| Err(wasmtime::Error::msg("the bare host queues no tasks")))?;
        if version != "0.1.0" {
            host.func_new("secret", |_, _, _, _| Err(wasmtime::Error::msg("the bare host has no secrets")))?;
        }
        if version == "0.3.0" {
            host.func_new("progress", |_, _, _, _| Ok(()))?;
            host.func_new("start-workflow", |_, _, _, _| {
                Err(wasmtime::Error::msg("the bare host starts no workflows"))
            })?;
        }
    }
    Ok(())
}
