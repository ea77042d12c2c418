//! A periodic job due every 10 s, with no anchor, allowed to overlap:
//! `wasmjob bench-schedule` registers thousands of them.
//!
//! Its name, [`NAME`], is a fixed-length marker: the benchmark makes jobs
//! of other names by replacing those bytes in the component with
//! `bench-periodic-001`, `-002`... (same length, so the component stays
//! valid). Keep the marker unique in the binary: use it only here.

use wasmjob_sdk::prelude::*;

/// The marker the benchmark replaces; it must occur once in the component.
const NAME: &str = "bench-periodic-000";

#[derive(Deserialize)]
struct Args {}

/// Ticks every 10 s.
struct BenchPeriodic;

impl Job for BenchPeriodic {
    type Args = Args;
    type Output = ();

    fn metadata() -> Metadata {
        Metadata::periodic(Duration::from_secs(10)).name(NAME).can_overlap(true).doc("Due every 10 s (benchmark)")
    }

    fn call(_ctx: &Context, _: Args) -> Result<(), Error> {
        Ok(())
    }
}

export_job!(BenchPeriodic);
