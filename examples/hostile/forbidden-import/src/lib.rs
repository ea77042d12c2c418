//! Hostile component: a job that also imports an interface the engine does not
//! provide (raw sockets). The engine must refuse it and name the import.

use wasmjob_sdk::prelude::*;

mod raw {
    wit_bindgen::generate!({
        inline: "
            package evil:net;
            interface raw-socket {
                open: func(host: string) -> u32;
            }
            world sockets {
                import raw-socket;
            }
        ",
    });
}

#[derive(Deserialize)]
struct Args {}

struct ForbiddenImport;

impl Job for ForbiddenImport {
    type Args = Args;
    type Output = u32;

    fn metadata() -> Metadata {
        Metadata::regular().name("forbidden-import")
    }

    fn call(_ctx: &Context, _: Args) -> Result<u32, Error> {
        Ok(raw::evil::net::raw_socket::open("example.com"))
    }
}

export_job!(ForbiddenImport);
