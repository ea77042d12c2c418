//! Hostile job: loops inside `metadata`. The engine must reject the component
//! instead of hanging.

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {}

struct MetadataLoop;

impl Job for MetadataLoop {
    type Args = Args;
    type Output = ();

    fn metadata() -> Metadata {
        let mut i = 0u64;
        loop {
            i = std::hint::black_box(i.wrapping_add(1));
        }
    }

    fn call(_ctx: &Context, _: Args) -> Result<(), Error> {
        Ok(())
    }
}

export_job!(MetadataLoop);
