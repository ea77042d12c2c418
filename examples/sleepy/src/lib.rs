//! A job that waits: reports its progress `reports` times (the last one
//! "halfway"), sleeps `ms` milliseconds (on the host's clock, without
//! holding a core), then returns its attempt.

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {
    #[serde(default)]
    ms: u64,
    #[serde(default)]
    reports: u64,
}

/// Sleeps, then answers.
struct Sleepy;

impl Job for Sleepy {
    type Args = Args;
    type Output = u32;

    fn metadata() -> Metadata {
        Metadata::regular()
            .doc("Sleeps `ms` milliseconds")
            .retry(RetryPolicy { initial_backoff: Duration::from_millis(10), ..RetryPolicy::default() })
    }

    fn call(ctx: &Context, args: Args) -> Result<u32, Error> {
        for i in 1..args.reports {
            ctx.progress(i as f32 / (2 * args.reports) as f32, &format!("step {i}"));
        }
        if args.reports > 0 {
            ctx.progress(0.5, "halfway");
        }
        std::thread::sleep(Duration::from_millis(args.ms));
        Ok(ctx.attempt())
    }
}

export_job!(Sleepy);
