//! The engine's limits: the defaults a task gets, the caps no job can exceed,
//! and the bounds on everything that crosses the host boundary.

use std::time::Duration;

use crate::job::RequestedLimits;

/// Engine-wide limits. Every field says its default.
#[derive(Debug, Clone)]
pub struct EngineLimits {
    /// Fuel of a task whose job asks for none. Default 1e10 units: about a
    /// second of tight compute (a spinning loop burns 1e9 in ~70 ms here).
    pub default_fuel: u64,
    /// Most fuel any task may get. Default 1e12 units.
    pub max_fuel: u64,
    /// Deadline of a task whose job asks for none. Default 30 s.
    pub default_timeout: Duration,
    /// Longest deadline any task may get. Default 15 min.
    pub max_timeout: Duration,
    /// Memory of a task whose job asks for none: the sum of all its linear
    /// memories and tables, across every core instance. Default 64 MiB.
    pub default_memory_bytes: u64,
    /// Most linear memory any instance may have; also the size of a pooled
    /// memory slot. Default 1 GiB.
    pub max_memory_bytes: u64,
    /// Most table elements any table may grow to. Default 100,000.
    pub max_table_elements: usize,
    /// Maximum WebAssembly stack of a task. Default 512 KiB: deep recursion
    /// traps with a stack overflow instead of exhausting the host.
    pub max_wasm_stack: usize,
    /// Largest args a task may be queued with. Default 1 MiB.
    pub max_args_bytes: usize,
    /// Largest result a task may return; a larger one fails the task with
    /// `output-too-large`, never silently cut. Default 1 MiB.
    pub max_result_bytes: usize,
    /// Bytes of log kept per task (stdout, stderr and `log` lines); the rest
    /// is dropped and the drop noted. Default 64 KiB.
    pub max_log_bytes: usize,
    /// Longest log line from `log`; longer lines are cut and marked. Default 4 KiB.
    pub max_log_line_bytes: usize,
    /// Largest component accepted, whatever a tenant's quota: also the
    /// body limit of an upload. Default 128 MiB (a Python job with a few
    /// dependencies is 20-40 MB); `wasmjob serve --max-component-size`.
    pub max_component_bytes: usize,
    /// Limits of the engine's calls to `metadata`, `is-due` and `overlap-key`:
    /// these must answer quickly. Default 100 M fuel, 2 s, 64 MiB.
    pub control_call: TaskLimits,
}

impl Default for EngineLimits {
    fn default() -> Self {
        Self {
            default_fuel: 10_000_000_000,
            max_fuel: 1_000_000_000_000,
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(15 * 60),
            default_memory_bytes: 64 << 20,
            max_memory_bytes: 1 << 30,
            max_table_elements: 100_000,
            max_wasm_stack: 512 << 10,
            max_args_bytes: 1 << 20,
            max_result_bytes: 1 << 20,
            max_log_bytes: 64 << 10,
            max_log_line_bytes: 4 << 10,
            max_component_bytes: 128 << 20,
            control_call: TaskLimits { fuel: 100_000_000, timeout: Duration::from_secs(2), memory_bytes: 64 << 20 },
        }
    }
}

/// The limits one task runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLimits {
    /// Fuel budget.
    pub fuel: u64,
    /// Wall-clock deadline from the start of instantiation.
    pub timeout: Duration,
    /// Memory cap of the whole task, in bytes: all its linear memories and
    /// tables together (table elements count 16 bytes each).
    pub memory_bytes: u64,
}

impl EngineLimits {
    /// What a job asks for, with the engine's defaults filled in and its caps
    /// applied.
    pub fn resolve(&self, requested: &RequestedLimits) -> TaskLimits {
        TaskLimits {
            fuel: requested.fuel.unwrap_or(self.default_fuel).min(self.max_fuel),
            timeout: requested.timeout.unwrap_or(self.default_timeout).min(self.max_timeout),
            memory_bytes: requested.memory_bytes.unwrap_or(self.default_memory_bytes).min(self.max_memory_bytes),
        }
    }

    /// Caps explicit per-task overrides (from the CLI or a tenant's quota).
    pub fn cap(&self, limits: TaskLimits) -> TaskLimits {
        TaskLimits {
            fuel: limits.fuel.min(self.max_fuel),
            timeout: limits.timeout.min(self.max_timeout),
            memory_bytes: limits.memory_bytes.min(self.max_memory_bytes),
        }
    }
}
