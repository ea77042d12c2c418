//! wasmjob's integration tests, in one binary.
//!
//! The example components under `examples/` are built by the engine's build
//! script; their paths are `wasmjob::examples::*`. The Python and JavaScript
//! ones (`examples/python/`, `examples/js/`) are built by `tests/build.rs`.

mod api_support;
mod openapi_support;
mod support;

mod activity;
mod api;
mod attempts;
mod bad_input;

mod children;
mod client;
mod cluster;
mod compile_bounds;
mod console;
mod egress;
mod events;
mod failures;
mod fork_bomb;
mod guest_answers;
mod isolation;
mod kill;
mod limits;
mod metadata;
mod metering;
mod multinode;
mod named_schedules;
mod openapi;
mod overlap;
mod periodic;
mod poison;
mod polyglot;
mod progress;
mod queueing;
mod queues;
mod results;
mod schedule;
mod secrets;
mod shutdown;
mod unique;
mod uploads;
mod validation;
mod workflows;
