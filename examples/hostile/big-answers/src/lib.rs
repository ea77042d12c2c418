//! Hostile job: hands the engine answers far bigger than any sane job's: a
//! job-error message of `error_bytes`, an overlap key of `key_bytes`, and
//! an `is-due` that is never due again before the end of time. The engine
//! must bound each at the boundary and keep serving.

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {
    #[serde(default)]
    error_bytes: usize,
    #[serde(default)]
    key_bytes: usize,
}

struct BigAnswers;

impl Job for BigAnswers {
    type Args = Args;
    type Output = ();

    fn metadata() -> Metadata {
        Metadata::periodic(Duration::from_secs(3600))
            .name("big-answers")
            .overlap(Overlap::ByArgs)
            .retry(RetryPolicy::none())
    }

    fn call(_ctx: &Context, args: Args) -> Result<(), Error> {
        Err(Error::fatal("e".repeat(args.error_bytes)))
    }

    fn overlap_key(args: &Args) -> Option<String> {
        (args.key_bytes > 0).then(|| "k".repeat(args.key_bytes))
    }

    fn is_due(_last_run_at: Timestamp, _now: Timestamp) -> Due {
        Due { is_due: true, next_run_in: u64::MAX }
    }
}

export_job!(BigAnswers);
