//! Delivers a webhook: POSTs its `payload` as JSON to `url`, with the
//! tenant's secret `webhook-token` as a bearer token. A 2xx answer is
//! delivered; a 5xx, a timeout or a network failure is worth retrying
//! (with backoff, up to 5 times); a 4xx is the receiver refusing, and a
//! host the tenant's egress policy does not allow is refused for good:
//! neither is retried.

use wasmjob_sdk::http::{self, Body, Client, Request};
use wasmjob_sdk::prelude::*;

#[derive(Deserialize)]
struct Args {
    url: String,
    #[serde(default)]
    payload: serde_json::Value,
}

#[derive(Serialize)]
struct Delivered {
    status: u16,
}

struct Webhook;

/// The tenant's secret sent as the bearer token, to whichever URL the args
/// name: the tenant's egress allow-list is what keeps it to receivers that
/// may see it.
const TOKEN: &str = "webhook-token";

impl Job for Webhook {
    type Args = Args;
    type Output = Delivered;

    fn metadata() -> Metadata {
        Metadata::regular()
            .doc("POST a JSON payload to a URL, retrying 5xx and timeouts")
            .retry(RetryPolicy {
                max_retries: 5,
                initial_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(60),
                ..RetryPolicy::default()
            })
            .secret(TOKEN)
    }

    fn call(ctx: &Context, args: Args) -> Result<Delivered, Error> {
        let body = serde_json::to_vec(&args.payload).map_err(|e| Error::fatal(e.to_string()))?;
        let token = ctx.secret(TOKEN)?;
        let request = Request::post(&args.url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .header("idempotency-key", ctx.task_id())
            .body(Body::from(body))
            .map_err(|e| Error::fatal(format!("invalid request: {e}")))?;
        let status = http::block_on(async {
            let mut response = Client::new().send(request).await?;
            // Read the answer, so that the connection ends cleanly.
            response.body_mut().contents().await?;
            Ok::<_, http::HttpError>(response.status())
        })
        .map_err(Error::from_http)?;
        match status.as_u16() {
            200..=299 => Ok(Delivered { status: status.as_u16() }),
            code @ 400..=499 => Err(Error::fatal(format!("the receiver refused the webhook: {code}"))),
            code => Err(Error::retryable(format!("the receiver failed: {code}"))),
        }
    }
}

export_job!(Webhook);
