//! The per-task sandbox: the store's state and the limits it enforces.
//!
//! Every task gets a fresh [`TaskState`]: a WASI context that grants clocks and
//! random only (no preopened directories, no environment, no arguments, no
//! sockets, no name lookups), stdout and stderr captured into the bounded
//! [`TaskLog`], and a [`SandboxLimiter`] that caps memory and tables.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::context::TaskContext;
use super::log::TaskLog;

/// Most instances, tables and memories one component may create. Rust
/// components use 1-3 of each; the bound stops a hostile component from
/// exhausting the pool.
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 16;

/// The state of one task's store.
pub struct TaskState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: SandboxLimiter,
    pub(crate) task: TaskContext,
}

impl TaskState {
    pub(crate) fn new(task: TaskContext, limiter: SandboxLimiter) -> Self {
        let log: &TaskLog = &task.log;
        let wasi = WasiCtx::builder()
            .stdout(log.clone())
            .stderr(log.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self { wasi, table: ResourceTable::new(), limiter, task }
    }
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps linear memory and tables, and remembers whether it refused a growth
/// so that the trap that usually follows is reported as `memory-limit`.
pub struct SandboxLimiter {
    memory_bytes: usize,
    table_elements: usize,
    pub(crate) memory_refused: bool,
}

impl SandboxLimiter {
    pub(crate) fn new(memory_bytes: u64, table_elements: usize) -> Self {
        Self {
            memory_bytes: usize::try_from(memory_bytes).unwrap_or(usize::MAX),
            table_elements,
            memory_refused: false,
        }
    }
}

impl ResourceLimiter for SandboxLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_bytes;
        self.memory_refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}
