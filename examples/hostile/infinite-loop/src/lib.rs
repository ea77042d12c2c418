//! Hostile job: spins forever. The engine must stop it (fuel or deadline).

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {}

struct InfiniteLoop;

impl Job for InfiniteLoop {
    type Args = Args;
    type Output = ();

    fn metadata() -> Metadata {
        Metadata::regular().name("infinite-loop").retry(RetryPolicy::none())
    }

    fn call(_ctx: &Context, _: Args) -> Result<(), Error> {
        let mut i = 0u64;
        loop {
            i = std::hint::black_box(i.wrapping_add(1));
        }
    }
}

export_job!(InfiniteLoop);
