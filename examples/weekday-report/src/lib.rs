//! A cron-periodic job (contract 0.3.0): due at 09:00 on weekdays in Paris.
//! The engine decides when it is due from the expression.

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {}

/// Reports on weekday mornings.
struct WeekdayReport;

impl Job for WeekdayReport {
    type Args = Args;
    type Output = ();

    fn metadata() -> Metadata {
        Metadata::cron("0 9 * * MON-FRI").zone("Europe/Paris").name("weekday-report").doc("Weekdays at 09:00 in Paris")
    }

    fn call(_ctx: &Context, _: Args) -> Result<(), Error> {
        Ok(())
    }
}

export_job!(WeekdayReport);
