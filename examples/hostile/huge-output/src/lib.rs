//! Hostile job: produces `mib` MiB of output, as its result or on stdout.

use std::io::Write;

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {
    #[serde(default = "default_mib")]
    mib: usize,
    /// Write to stdout instead of returning the output.
    #[serde(default)]
    stdout: bool,
}

fn default_mib() -> usize {
    16
}

struct HugeOutput;

impl Job for HugeOutput {
    type Args = Args;
    type Output = String;

    fn metadata() -> Metadata {
        Metadata::regular().name("huge-output").retry(RetryPolicy::none())
    }

    fn call(_ctx: &Context, args: Args) -> Result<String, Error> {
        let chunk = "x".repeat(1 << 20);
        if args.stdout {
            let mut out = std::io::stdout().lock();
            for _ in 0..args.mib {
                out.write_all(chunk.as_bytes())?;
            }
            out.flush()?;
            return Ok("written".into());
        }
        Ok(chunk.repeat(args.mib))
    }
}

export_job!(HugeOutput);
