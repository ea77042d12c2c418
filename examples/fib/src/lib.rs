//! A compute-heavy job: naive recursive Fibonacci, for benchmarks.

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {
    n: u32,
}

/// Computes `fib(n)` the slow way.
struct Fib;

impl Job for Fib {
    type Args = Args;
    type Output = u64;

    fn metadata() -> Metadata {
        Metadata::regular()
            .doc("Naive recursive Fibonacci")
            .limits(Limits { fuel: Some(u64::MAX), ..Limits::default() })
    }

    fn call(_ctx: &Context, args: Args) -> Result<u64, Error> {
        Ok(fib(args.n))
    }
}

#[inline(never)]
fn fib(n: u32) -> u64 {
    if n < 2 { u64::from(n) } else { fib(n - 1) + fib(n - 2) }
}

export_job!(Fib);
