//! A periodic job: due every day at 03:00 UTC, never two runs at once.

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {}

/// Builds the nightly report.
struct NightlyReport;

impl Job for NightlyReport {
    type Args = Args;
    type Output = String;

    fn metadata() -> Metadata {
        Metadata::periodic(Duration::from_secs(24 * 3600))
            .anchor(anchor_date(3, 0, 0))
            .can_overlap(false)
            .doc("Builds the nightly report at 03:00 UTC")
    }

    fn call(ctx: &Context, _: Args) -> Result<String, Error> {
        ctx.info("building the nightly report");
        Ok(format!("report of task {}", ctx.task_id()))
    }
}

export_job!(NightlyReport);
