//! pulsar's `Crawler`, as a wasmjob job: fetches its pages concurrently
//! over `wasi:http`, extracts their links, and queues a child task per new
//! link until its depth runs out (each child records this task as its
//! `from_task`). The engine's egress policy decides which hosts it reaches.

use std::collections::BTreeSet;

use futures_concurrency::future::Join;
use wasmjob_sdk::http::{self, Client, HttpError, Request};
use wasmjob_sdk::prelude::*;

/// Most bytes of a page read for links. Default 1 MiB.
const MAX_PAGE_BYTES: usize = 1 << 20;

#[derive(Deserialize, Serialize)]
struct Args {
    /// Pages to fetch, all at once.
    urls: Vec<String>,
    /// Levels of links to follow below these pages. Default 0.
    #[serde(default)]
    depth: u32,
    /// Most children queued by one task. Default 10.
    #[serde(default = "ten")]
    max_links: usize,
}

fn ten() -> usize {
    10
}

#[derive(Serialize)]
struct Page {
    url: String,
    status: u16,
    bytes: usize,
    links: Vec<String>,
}

#[derive(Serialize)]
struct Crawled {
    pages: Vec<Page>,
    /// Children queued, one per new link.
    queued: usize,
}

struct Crawler;

impl Job for Crawler {
    type Args = Args;
    type Output = Crawled;

    fn metadata() -> Metadata {
        Metadata::regular().doc("Fetch pages and crawl their links, a child task per link")
    }

    fn call(ctx: &Context, args: Args) -> Result<Crawled, Error> {
        let fetches = args.urls.iter().map(|url| fetch(url));
        let pages: Vec<Page> = http::block_on(fetches.collect::<Vec<_>>().join())
            .into_iter()
            .collect::<Result<_, HttpError>>()
            .map_err(Error::from_http)?;
        let mut queued = 0;
        if args.depth > 0 {
            let seen: BTreeSet<&String> = args.urls.iter().collect();
            let new: BTreeSet<&String> = pages.iter().flat_map(|p| &p.links).filter(|l| !seen.contains(l)).collect();
            for link in new.into_iter().take(args.max_links) {
                let child = Args { urls: vec![link.clone()], depth: args.depth - 1, max_links: args.max_links };
                ctx.queue_task("crawler", &child).map_err(|e| Error::retryable(format!("{e:?}")))?;
                queued += 1;
            }
        }
        Ok(Crawled { pages, queued })
    }
}

async fn fetch(url: &str) -> Result<Page, HttpError> {
    let mut response = Client::new().send(Request::get(url).body(())?).await?;
    let status = response.status().as_u16();
    let body = response.body_mut().contents().await?;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_PAGE_BYTES)]);
    Ok(Page { url: url.to_owned(), status, bytes: body.len(), links: links(url, &text) })
}

/// The absolute `http(s)` links of `page` (fetched from `url`), in order,
/// without repeats.
fn links(url: &str, page: &str) -> Vec<String> {
    // `scheme://authority` of the page, for links starting with `/`.
    let origin = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    let mut found = Vec::new();
    for piece in page.split("href=\"").skip(1) {
        let Some(link) = piece.split('"').next() else { continue };
        let link = link.split('#').next().unwrap_or_default();
        let absolute = if link.starts_with("http://") || link.starts_with("https://") {
            link.to_owned()
        } else if link.starts_with('/') && !link.starts_with("//") {
            format!("{origin}{link}")
        } else {
            continue;
        };
        if !found.contains(&absolute) {
            found.push(absolute);
        }
    }
    found
}

export_job!(Crawler);
