//! Outbound HTTP from a job (feature `http`), over `wasi:http`: the client
//! of [`wstd`], re-exported, plus [`block_on`] to run it inside
//! [`Job::call`](crate::Job::call).
//!
//! Why `wstd`: it is the Bytecode Alliance's async standard library for
//! WASI 0.2 components, so its client is made for `wasi:http` (no socket
//! emulation underneath) and lets one task keep several requests in
//! flight (`futures_concurrency`'s `join` over [`Client::send`] futures).
//!
//! Requests go through the engine's egress policy: a host the tenant's
//! admin did not allow answers [`ErrorCode::HttpRequestDenied`], a private
//! address [`ErrorCode::DestinationIpProhibited`] (see `wit/job.wit`).
//! [`Error::from_http`](crate::Error::from_http) makes a network error the
//! job's error: retryable, unless the policy refused the request.
//!
//! ```ignore
//! use wasmjob_sdk::http::{self, Client, Request};
//! let page = http::block_on(async {
//!     let mut response = Client::new().send(Request::get("https://example.com/").body(())?).await?;
//!     Ok::<_, http::HttpError>(response.body_mut().str_contents().await?.to_owned())
//! })
//! .map_err(wasmjob_sdk::Error::from_http)?;
//! ```

pub use wstd::http::error::ErrorCode;
pub use wstd::http::{Body, Client, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
pub use wstd::runtime::block_on;

/// The error of the HTTP client ([`anyhow::Error`](wstd::http::Error)).
pub use wstd::http::Error as HttpError;

/// The `wasi:http` error code behind `error`, if it has one (the engine's
/// answer, such as `HttpRequestDenied`); `None` for other failures.
pub fn error_code(error: &HttpError) -> Option<&ErrorCode> {
    error.downcast_ref::<ErrorCode>()
}

impl crate::Error {
    /// A failed request as the job's error: worth retrying, unless the
    /// engine's egress policy refused it (which no retry changes).
    pub fn from_http(error: HttpError) -> Self {
        let message = format!("{error:#}");
        match error_code(&error) {
            Some(ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited) => crate::Error::fatal(message),
            _ => crate::Error::retryable(message),
        }
    }
}
