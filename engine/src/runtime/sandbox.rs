//! The per-task sandbox: the store's state and the limits it enforces.
//!
//! Every task gets a fresh [`TaskState`]: a WASI context that grants clocks and
//! random only (no preopened directories, no environment, no arguments, no
//! sockets, no name lookups), stdout and stderr captured into the bounded
//! [`TaskLog`], `wasi:http` through the task's egress hook ([`TaskHttp`]),
//! and a [`SandboxLimiter`] that caps memory and tables.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::context::TaskContext;
use super::log::TaskLog;
use super::meter::{MAX_RANDOM_BYTES, MeteredRng};
use crate::egress::TaskHttp;

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
    http: WasiHttpCtx,
    pub(crate) hooks: TaskHttp,
    pub(crate) limiter: SandboxLimiter,
    pub(crate) task: TaskContext,
}

impl TaskState {
    pub(crate) fn new(task: TaskContext, hooks: TaskHttp, limiter: SandboxLimiter) -> Self {
        let log: &TaskLog = &task.log;
        let wasi = WasiCtx::builder()
            .stdout(log.clone())
            .stderr(log.clone())
            .secure_random(MeteredRng::secure(log.work().clone()))
            .insecure_random(MeteredRng::insecure(log.work().clone()))
            .max_random_size(MAX_RANDOM_BYTES)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self { wasi, table: ResourceTable::new(), http: WasiHttpCtx::new(), hooks, limiter, task }
    }
}

impl WasiHttpView for TaskState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Bytes a table element is charged in a task's memory: a function
/// reference is one pointer, kept in a wider slot. Default 16.
const TABLE_ELEMENT_BYTES: usize = 16;

/// Caps the memory of the whole task: the sum of every linear memory and
/// table of every core instance of the component (a component may hold
/// many), and each table's length; remembers whether it refused a growth
/// so that the trap that usually follows is reported as `memory-limit`.
pub struct SandboxLimiter {
    /// The task's memory cap, in bytes.
    memory_bytes: usize,
    table_elements: usize,
    /// Bytes of memories and tables the task holds (as approved).
    used: usize,
    /// The last approved growth, taken back if the growth then fails.
    pending: usize,
    pub(crate) memory_refused: bool,
}

impl SandboxLimiter {
    pub(crate) fn new(memory_bytes: u64, table_elements: usize) -> Self {
        Self {
            memory_bytes: usize::try_from(memory_bytes).unwrap_or(usize::MAX),
            table_elements,
            used: 0,
            pending: 0,
            memory_refused: false,
        }
    }

    /// Bytes of memories and tables the task holds.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used as u64
    }

    /// Approves growing something from `current` to `desired` bytes if the
    /// whole task stays within its cap.
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let delta = desired.saturating_sub(current);
        match self.used.checked_add(delta) {
            Some(used) if used <= self.memory_bytes => {
                self.used = used;
                self.pending = delta;
                true
            }
            _ => false,
        }
    }
}

impl ResourceLimiter for SandboxLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.grow(current, desired);
        self.memory_refused |= !allowed;
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used = self.used.saturating_sub(std::mem::take(&mut self.pending));
        Ok(())
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Ok(false);
        }
        let bytes = |elements: usize| elements.saturating_mul(TABLE_ELEMENT_BYTES);
        let allowed = self.grow(bytes(current), bytes(desired));
        self.memory_refused |= !allowed;
        Ok(allowed)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used = self.used.saturating_sub(std::mem::take(&mut self.pending));
        Ok(())
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

#[cfg(test)]
mod tests {
    use wasmtime::component::{Component, Linker};
    use wasmtime::{Config, Engine, Store};

    use super::SandboxLimiter;

    const MIB: u64 = 1 << 20;

    /// Instantiates `wat` (a component) under a memory cap of `cap` bytes.
    fn instantiate(wat: &str, cap: u64) -> wasmtime::Result<()> {
        let engine = Engine::new(Config::new().wasm_component_model(true))?;
        let component = Component::new(&engine, wat::parse_str(wat)?)?;
        let mut store = Store::new(&engine, SandboxLimiter::new(cap, 100_000));
        store.limiter(|limiter| limiter);
        Linker::new(&engine).instantiate(&mut store, &component)?;
        Ok(())
    }

    /// A component of `n` core instances, each with a memory of `pages`.
    fn many_memories(n: usize, pages: u32) -> String {
        let instances: String = (0..n).map(|i| format!("(core instance $i{i} (instantiate $m))")).collect();
        format!("(component (core module $m (memory {pages})) {instances})")
    }

    #[test]
    fn the_memory_cap_covers_every_core_instance_of_a_task() {
        // 4 instances of 40 MiB each: one fits a 64 MiB cap, four do not.
        assert!(instantiate(&many_memories(1, 640), 64 * MIB).is_ok());
        let refused = instantiate(&many_memories(4, 640), 64 * MIB);
        assert!(refused.is_err(), "160 MiB of memories were allowed under a 64 MiB cap");
        assert!(instantiate(&many_memories(4, 640), 256 * MIB).is_ok());
    }

    #[test]
    fn tables_count_towards_the_memory_cap() {
        // 2 tables of 100,000 elements: 3.2 MB charged against a 1 MiB cap.
        let wat = "(component (core module $m (table 100000 funcref)) \
                   (core instance $a (instantiate $m)) (core instance $b (instantiate $m)))";
        assert!(instantiate(wat, MIB).is_err());
        assert!(instantiate(wat, 8 * MIB).is_ok());
    }
}
