//! Glue between [`crate::Job`] and the generated bindings, used by
//! [`crate::export_job!`]. Not part of the public API.

pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "wasmjob:job/job",
        pub_export_macro: true,
        export_macro_name: "__export_job_world",
        default_bindings_module: "::wasmjob_sdk::__private::bindings",
        runtime_path: "::wasmjob_sdk::__private::wit_bindgen_rt",
    });
}

pub use bindings::__export_job_world as export;
pub use bindings::Guest;
pub use wit_bindgen::rt as wit_bindgen_rt;

/// The WIT types, as the bindings name them.
pub mod wit {
    pub use super::bindings::wasmjob::job::types::{Due, JobError, Metadata, Timestamp};
}

use crate::Job;
use crate::error::ErrorKind;

/// The job's metadata, with its name defaulted from `type_name` (the text of
/// the type as written in `export_job!`) and lower-cased.
pub fn metadata<J: Job>(type_name: &str) -> wit::Metadata {
    let mut metadata = J::metadata();
    if metadata.name.is_empty() {
        let last_segment = type_name.rsplit("::").next().unwrap_or(type_name);
        metadata.name = last_segment.trim().to_owned();
    }
    metadata.name = metadata.name.to_lowercase();
    metadata.into_wit()
}

pub fn call<J: Job>(args: String) -> Result<String, wit::JobError> {
    let args: J::Args = parse_args(&args)?;
    let ctx = crate::Context::current();
    let output = J::call(&ctx, args).map_err(|e| match e.kind {
        ErrorKind::Retryable => wit::JobError::Retryable(e.message),
        ErrorKind::Fatal => wit::JobError::Fatal(e.message),
    })?;
    serde_json::to_string(&output).map_err(|e| wit::JobError::Fatal(format!("cannot serialize the result: {e}")))
}

pub fn overlap_key<J: Job>(args: String) -> Option<String> {
    // Args the job cannot parse will fail in `call`; they do not overlap.
    let args: J::Args = parse_args(&args).ok()?;
    J::overlap_key(&args)
}

pub fn is_due<J: Job>(last_run_at: wit::Timestamp, now: wit::Timestamp) -> wit::Due {
    let due = J::is_due(last_run_at, now);
    wit::Due { is_due: due.is_due, next_run_in: due.next_run_in }
}

/// Bad args are the caller's mistake: retrying cannot fix them.
fn parse_args<T: serde::de::DeserializeOwned>(args: &str) -> Result<T, wit::JobError> {
    // An empty string means "no args", like calling a pulsar job with no kwargs.
    let args = if args.trim().is_empty() { "{}" } else { args };
    serde_json::from_str(args).map_err(|e| wit::JobError::Fatal(format!("invalid args: {e}")))
}
