//! Write wasmjob jobs in Rust.
//!
//! A job is a type that implements [`Job`]: typed, serde-deserialized args in,
//! a serializable result out, and its [`Metadata`] declared next to it.
//! [`export_job!`] turns it into a component exporting the `wasmjob:job` world;
//! job authors never write wit-bindgen code.
//!
//! ```ignore
//! use wasmjob_sdk::prelude::*;
//!
//! #[derive(Deserialize)]
//! struct Args { #[serde(default)] a: i64, #[serde(default)] b: i64 }
//!
//! /// Add two numbers (pulsar's `Addition`).
//! struct Addition;
//!
//! impl Job for Addition {
//!     type Args = Args;
//!     type Output = i64;
//!     fn metadata() -> Metadata { Metadata::regular().doc("Add two numbers") }
//!     fn call(_ctx: &Context, args: Args) -> Result<i64, Error> { Ok(args.a + args.b) }
//! }
//!
//! export_job!(Addition);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release`; the `.wasm`
//! file under `target/wasm32-wasip2/release/` is the component to upload.
//!
//! The job's name defaults to the lower-cased type name (`addition`);
//! [`Metadata::name`] overrides it. Periodic jobs declare their schedule with
//! [`Metadata::periodic`] and get pulsar's `is_due` semantics from
//! [`schedule::is_due`], which [`Job::is_due`] may override; or with
//! [`Metadata::cron`] (and [`Metadata::zone`]), which the engine follows
//! itself. A long task reports how far it has got with
//! [`Context::progress`].

// The generated bindings name this crate by its absolute path, from inside too.
extern crate self as wasmjob_sdk;

mod context;
mod error;
#[cfg(feature = "http")]
pub mod http;
mod job;
mod metadata;
pub mod schedule;

#[doc(hidden)]
pub mod __private;

pub use context::{Context, LogLevel, QueueError, QueueOptions, Step, TaskId};
pub use error::Error;
pub use job::Job;
pub use metadata::{DocSyntax, Limits, Metadata, Overlap, RetryPolicy};
pub use schedule::{Due, Timestamp, anchor_date, anchor_datetime};

/// What a job module usually needs, plus serde's derives.
pub mod prelude {
    pub use crate::{
        Context, Due, Error, Job, Limits, LogLevel, Metadata, Overlap, QueueOptions, RetryPolicy, Step, Timestamp,
        anchor_date, export_job,
    };
    pub use serde::{Deserialize, Serialize};
    pub use std::time::Duration;
}

/// Exports a type implementing [`Job`] as the component's `job` world.
///
/// Call it once per component, at the crate root: `export_job!(Addition);`.
/// The job's default name is the lower-cased type name.
#[macro_export]
macro_rules! export_job {
    ($job:ty) => {
        const _: () = {
            struct __WasmjobExport;

            impl $crate::__private::Guest for __WasmjobExport {
                fn metadata() -> $crate::__private::wit::Metadata {
                    $crate::__private::metadata::<$job>(::core::stringify!($job))
                }
                fn call(
                    args: ::std::string::String,
                ) -> ::core::result::Result<::std::string::String, $crate::__private::wit::JobError> {
                    $crate::__private::call::<$job>(args)
                }
                fn overlap_key(args: ::std::string::String) -> ::core::option::Option<::std::string::String> {
                    $crate::__private::overlap_key::<$job>(args)
                }
                fn is_due(
                    last_run_at: $crate::__private::wit::Timestamp,
                    now: $crate::__private::wit::Timestamp,
                ) -> $crate::__private::wit::Due {
                    $crate::__private::is_due::<$job>(last_run_at, now)
                }
            }

    $crate::__private::export!(__WasmjobExport with_types_in $crate::__private::bindings);
        };
    };
    ($($other:tt)*) => {
        ::core::compile_error!("usage: `export_job!(MyJob);` where `MyJob` implements `wasmjob_sdk::Job`");
    };
}
