//! The benchmark's probe: answers with the wall-clock time at which its
//! call began, so that `wasmjob bench-queue` measures queue→start itself.

use wasmjob_sdk::prelude::*;

/// Answers `{"started_ns": <nanoseconds since the Unix epoch>}`.
struct Stamp;

/// Any arguments; they are ignored.
#[derive(Deserialize)]
struct Args {}

#[derive(Serialize)]
struct Started {
    started_ns: u64,
}

impl Job for Stamp {
    type Args = Args;
    type Output = Started;

    fn metadata() -> Metadata {
        Metadata::regular().doc("Answer with the time the call began")
    }

    fn call(_ctx: &Context, _args: Args) -> Result<Started, Error> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Ok(Started { started_ns: u64::try_from(now.as_nanos()).unwrap_or(u64::MAX) })
    }
}

export_job!(Stamp);
