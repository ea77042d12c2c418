//! Hostile job: panics. The engine reports a trap and keeps serving.

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {}

struct Panic;

impl Job for Panic {
    type Args = Args;
    type Output = ();

    fn metadata() -> Metadata {
        Metadata::regular().retry(RetryPolicy::none())
    }

    fn call(_ctx: &Context, _: Args) -> Result<(), Error> {
        panic!("this job panics on purpose")
    }
}

export_job!(Panic);
