//! A job that reaches for more than it declares: it declares the secret
//! `mine` and the host `localhost`, then reads whichever secrets and
//! fetches whichever URL its args name. The answer says what it got; the
//! tests check it got only what it declared and its tenant allows.

use std::collections::BTreeMap;

use wasmjob_sdk::http::{self, Client, Request};
use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {
    /// Secrets to read.
    #[serde(default)]
    secrets: Vec<String>,
    /// A URL to GET.
    #[serde(default)]
    url: Option<String>,
}

#[derive(Serialize)]
struct Got {
    /// Each secret's value, or the error reading it gave.
    secrets: BTreeMap<String, Result<String, String>>,
    /// The URL's status, or the error.
    fetched: Option<Result<u16, String>>,
}

struct Nosy;

impl Job for Nosy {
    type Args = Args;
    type Output = Got;

    fn metadata() -> Metadata {
        Metadata::regular()
            .doc("Reads secrets and fetches a URL, declared or not")
            .secret("mine")
            .allow_host("localhost")
    }

    fn call(ctx: &Context, args: Args) -> Result<Got, Error> {
        let secrets = args.secrets.into_iter().map(|name| (name.clone(), ctx.secret(&name).map_err(|e| e.to_string())));
        let fetched = args.url.map(|url| {
            let request = Request::get(&url).body(http::Body::empty()).map_err(|e| e.to_string())?;
            http::block_on(async {
                let mut response = Client::new().send(request).await?;
                response.body_mut().contents().await?;
                Ok::<_, http::HttpError>(response.status().as_u16())
            })
            .map_err(|e| format!("{:?}", http::error_code(&e)))
        });
        Ok(Got { secrets: secrets.collect(), fetched })
    }
}

export_job!(Nosy);
