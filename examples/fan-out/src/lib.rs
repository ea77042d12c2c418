//! A job that queues children: `n` additions, and returns their ids.

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {
    #[serde(default = "default_n")]
    n: u32,
    #[serde(default = "default_child")]
    child: String,
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
        (0..args.n)
            .map(|i| {
                ctx.queue_task(&args.child, &serde_json::json!({ "a": i, "b": i }))
                    .map_err(|e| Error::fatal(format!("cannot queue child {i}: {e}")))
            })
            .collect()
    }
}

export_job!(FanOut);
