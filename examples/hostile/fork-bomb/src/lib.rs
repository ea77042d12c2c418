//! Hostile job: queues `width` copies of itself, each of which does the same,
//! forever. The engine's caps on children per task and tree depth must stop
//! it. Returns how many children it managed to queue.

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {
    #[serde(default = "default_width")]
    width: u32,
}

fn default_width() -> u32 {
    1_000_000
}

struct ForkBomb;

impl Job for ForkBomb {
    type Args = Args;
    type Output = u32;

    fn metadata() -> Metadata {
        Metadata::regular().name("fork-bomb").retry(RetryPolicy::none())
    }

    fn call(ctx: &Context, args: Args) -> Result<u32, Error> {
        let mut queued = 0;
        for _ in 0..args.width {
            match ctx.queue_task("fork-bomb", &serde_json::json!({ "width": args.width })) {
                Ok(_) => queued += 1,
                Err(e) => {
                    ctx.log(LogLevel::Warn, format!("stopped after {queued}: {e}"));
                    break;
                }
            }
        }
        Ok(queued)
    }
}

export_job!(ForkBomb);
