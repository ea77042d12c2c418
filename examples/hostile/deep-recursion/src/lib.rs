//! Hostile job: recurses without end. The engine's wasm stack limit must stop
//! it.

use std::hint::black_box;

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {}

struct DeepRecursion;

impl Job for DeepRecursion {
    type Args = Args;
    type Output = u64;

    fn metadata() -> Metadata {
        Metadata::regular().name("deep-recursion").retry(RetryPolicy::none())
    }

    fn call(_ctx: &Context, _: Args) -> Result<u64, Error> {
        Ok(deeper(0))
    }
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn deeper(depth: u64) -> u64 {
    black_box(deeper(black_box(depth + 1))) + 1
}

export_job!(DeepRecursion);
