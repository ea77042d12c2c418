//! Hostile job: a periodic job whose `is-due` takes as long as the engine
//! lets it (it sleeps; the engine cuts it at its control-call deadline).
//! It must delay nobody's schedule but its own tenant's.

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {}

struct SlowIsDue;

impl Job for SlowIsDue {
    type Args = Args;
    type Output = ();

    fn metadata() -> Metadata {
        Metadata::periodic(Duration::from_secs(1)).name("slow-is-due")
    }

    fn call(_ctx: &Context, _: Args) -> Result<(), Error> {
        Ok(())
    }

    fn is_due(_last_run_at: Timestamp, _now: Timestamp) -> Due {
        std::thread::sleep(Duration::from_secs(60));
        Due { is_due: true, next_run_in: 0 }
    }
}

export_job!(SlowIsDue);
