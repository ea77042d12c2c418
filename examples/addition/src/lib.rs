//! pulsar's own example job: add two numbers.

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {
    #[serde(default)]
    a: i64,
    #[serde(default)]
    b: i64,
}

/// Adds `a` and `b` (both default to 0).
struct Addition;

impl Job for Addition {
    type Args = Args;
    type Output = i64;

    fn metadata() -> Metadata {
        Metadata::regular().doc("Add two numbers")
    }

    fn call(_ctx: &Context, Args { a, b }: Args) -> Result<i64, Error> {
        a.checked_add(b).ok_or_else(|| Error::fatal("overflow"))
    }
}

export_job!(Addition);
