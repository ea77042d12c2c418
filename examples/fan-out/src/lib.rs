//! A job that queues children: `n` additions, and returns their ids; told
//! to, it fails after queueing them (its children are then discarded).

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {
    #[serde(default = "default_n")]
    n: u32,
    #[serde(default = "default_child")]
    child: String,
    /// Fails (retryably) after queueing, on attempts before this one.
    #[serde(default)]
    fail_until: u32,
    /// Fails for good after queueing.
    #[serde(default)]
    fatal: bool,
}

fn default_n() -> u32 {
    3
}

fn default_child() -> String {
    "addition".into()
}

/// Queues `n` tasks of `child` (default: addition of `i` and `i`).
struct FanOut;

impl Job for FanOut {
    type Args = Args;
    type Output = Vec<String>;

    fn metadata() -> Metadata {
        Metadata::regular().name("fan-out").doc("Queues `n` child tasks")
    }

    fn call(ctx: &Context, args: Args) -> Result<Vec<String>, Error> {
        let ids = (0..args.n)
            .map(|i| {
                ctx.queue_task(&args.child, &serde_json::json!({ "a": i, "b": i }))
                    .map_err(|e| Error::fatal(format!("cannot queue child {i}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if args.fatal {
            return Err(Error::fatal("told to fail after queueing"));
        }
        if ctx.attempt() < args.fail_until {
            return Err(Error::retryable(format!("attempt {} fails after queueing", ctx.attempt())));
        }
        Ok(ids)
    }
}

export_job!(FanOut);
