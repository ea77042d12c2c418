//! A periodic job due every second: the multi-node tests count its ticks.

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {}

/// Ticks.
struct EverySecond;

impl Job for EverySecond {
    type Args = Args;
    type Output = ();

    fn metadata() -> Metadata {
        Metadata::periodic(Duration::from_secs(1)).name("every-second").doc("Due every second")
    }

    fn call(_ctx: &Context, _: Args) -> Result<(), Error> {
        Ok(())
    }
}

export_job!(EverySecond);
