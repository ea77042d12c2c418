//! Hostile job: makes the host work, forever, for as little guest work as
//! it can: asks for random bytes a megabyte at a time, or writes a megabyte
//! to stdout at a time. The engine must charge that work to its fuel.

use std::io::Write as _;

use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {
    /// `random` or `stdout`.
    what: String,
}

struct HostHog;

impl Job for HostHog {
    type Args = Args;
    type Output = u64;

    fn metadata() -> Metadata {
        Metadata::regular().name("host-hog").retry(RetryPolicy::none())
    }

    fn call(_ctx: &Context, args: Args) -> Result<u64, Error> {
        let mut buffer = vec![0u8; 1 << 20];
        let mut rounds = 0u64;
        loop {
            match args.what.as_str() {
                "random" => getrandom::fill(&mut buffer).map_err(|e| Error::fatal(e.to_string()))?,
                _ => {
                    let _ = std::io::stdout().write_all(&buffer);
                }
            }
            rounds += 1;
            std::hint::black_box(rounds);
        }
    }
}

export_job!(HostHog);
