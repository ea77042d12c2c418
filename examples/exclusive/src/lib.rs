//! Non-overlapping jobs: at most one task per `account` at a time
//! (pulsar's `can_overlap` as a callable of the args).

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {
    account: Option<String>,
}

/// Settles an account. Two settlements of one account never overlap; tasks
/// without an account may.
struct Settle;

impl Job for Settle {
    type Args = Args;
    type Output = String;

    fn metadata() -> Metadata {
        Metadata::regular().overlap(Overlap::ByArgs).doc("Settles one account at a time")
    }

    fn overlap_key(args: &Args) -> Option<String> {
        args.account.clone()
    }

    fn call(_ctx: &Context, args: Args) -> Result<String, Error> {
        Ok(format!("settled {}", args.account.as_deref().unwrap_or("nothing")))
    }
}

export_job!(Settle);
