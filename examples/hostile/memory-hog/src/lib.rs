//! Hostile job: allocates until memory runs out. The engine's memory cap must
//! stop it.

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {}

struct MemoryHog;

impl Job for MemoryHog {
    type Args = Args;
    type Output = usize;

    fn metadata() -> Metadata {
        Metadata::regular().name("memory-hog").retry(RetryPolicy::none())
    }

    fn call(_ctx: &Context, _: Args) -> Result<usize, Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

export_job!(MemoryHog);
