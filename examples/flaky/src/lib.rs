//! A job that fails as told: retryably until attempt `succeed_at`, or fatally.

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {
    /// The attempt that succeeds; earlier ones fail with a retryable error.
    #[serde(default)]
    succeed_at: u32,
    /// Fail with a fatal error instead.
    #[serde(default)]
    fatal: bool,
}

/// Fails on purpose, to exercise retries.
struct Flaky;

impl Job for Flaky {
    type Args = Args;
    type Output = u32;

    fn metadata() -> Metadata {
        Metadata::regular().retry(RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        })
    }

    fn call(ctx: &Context, args: Args) -> Result<u32, Error> {
        if args.fatal {
            return Err(Error::fatal("told to fail"));
        }
        if ctx.attempt() < args.succeed_at {
            return Err(Error::retryable(format!("attempt {} failed", ctx.attempt())));
        }
        Ok(ctx.attempt())
    }
}

export_job!(Flaky);
