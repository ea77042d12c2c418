//! wasmjob: a job engine whose jobs are WebAssembly components.
//!
//! The life of a task, module by module:
//!
//! - [`contract`]: the `wasmjob:job` WIT worlds a job may implement (0.2.0,
//!   and 0.1.0 still run), mapped onto the engine's own types ([`job`]).
//! - [`runtime`]: compiles and validates a component once ([`runtime::Runtime::load`]),
//!   then runs each task in a fresh sandbox with a fuel budget, a wall-clock
//!   deadline and a memory cap, and tells the outcomes apart
//!   ([`runtime::Outcome`]).

/// The allocator of every program built on this crate (the `wasmjob`
/// command, and the tests' copy of it): jemalloc. With glibc's, the worker
/// threads waited on its arena locks whenever one freed what another had
/// allocated (a task's future is boxed where it is claimed and freed where
/// it ends). mimalloc removed the waits too, but with 3,000 tasks waiting
/// on the network it held 28 % more memory, and by default spent 20-45 %
/// more CPU faulting in the pages it had given back (`bench-egress`).
/// Declared here, not in each `main`, so that the tests running the engine
/// in their own process run it on the same allocator; a program with an
/// allocator of its own cannot link this crate (none in this workspace).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub mod activity;
pub mod api;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod completer;
pub mod console;
pub mod contract;
pub mod egress;
pub mod events;
pub mod job;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod plan;
pub mod progress;
pub mod queue;
pub mod registry;
pub mod retention;
pub mod retry;
pub mod runtime;
pub mod scheduler;
pub mod secret;
pub mod signals;
pub mod store;
pub mod task;
pub mod tenant;
pub mod upload;
pub mod wire;
pub mod worker;
pub mod workflow;

/// Paths of the example components, built by `engine/build.rs` from
/// `examples/` (used by the demo, the tests and the benchmarks).
pub mod examples {
    include!(concat!(env!("OUT_DIR"), "/examples.rs"));
}
