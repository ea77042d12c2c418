//! How a job's `wasi:http` request leaves the engine: the
//! [`WasiHttpHooks::send_request`] of every task ([`TaskHttp`]).
//!
//! In order: the URL's scheme, host and port must be on the task's
//! [`Grant`] (else `HTTP-request-denied`); the task must be under its
//! request count and in-flight limits; the host is resolved here, every
//! address checked against the operator's [`Networks`] (else
//! `destination-IP-prohibited`), and the connection made to a checked
//! address, never re-resolved. Bodies are counted as they stream, against
//! the task's byte limits. Each refusal writes one line to the task's log.
//! The request runs as a tokio task that wasmtime aborts when the guest
//! drops its handle, which happens when the task's store is dropped: at
//! its deadline, when it is revoked, or when it ends.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme as UriScheme;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::network::Networks;
use super::policy::{AllowList, Scheme};
use crate::runtime::{LogLevel, TaskLog};

/// What the operator configures for every task of a node.
#[derive(Debug, Clone, Default)]
pub struct EgressConfig {
    /// Reserved ranges (loopback, private...) requests may reach anyway.
    /// Default: none.
    pub allow_networks: Vec<String>,
    /// PEM certificates trusted besides the public roots. Default: none.
    pub ca_bundle: Option<std::path::PathBuf>,
}

/// Why the egress configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("invalid --egress-allow-net: {0}")]
    Network(String),
    #[error("cannot read the CA bundle {path}: {message}")]
    CaBundle { path: String, message: String },
}

/// The node's egress settings, built once and shared by every task.
pub struct Egress {
    networks: Networks,
    tls: tokio_rustls::TlsConnector,
}

impl Egress {
    pub fn new(config: &EgressConfig) -> Result<Egress, EgressError> {
        let networks = Networks::parse(&config.allow_networks).map_err(EgressError::Network)?;
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        if let Some(path) = &config.ca_bundle {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let failed = |message: String| EgressError::CaBundle { path: path.display().to_string(), message };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| failed(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| failed(e.to_string()))?;
            if certs.is_empty() {
                return Err(failed("no certificate in it".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| failed(e.to_string()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Egress { networks, tls: tokio_rustls::TlsConnector::from(Arc::new(tls)) })
    }
}

/// The per-task HTTP limits, from the tenant's quotas
/// ([`crate::tenant::Quotas`] names them `max_http_*` and `http_*_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpLimits {
    /// Requests one task may make. Default 1,000.
    pub max_requests: u64,
    /// Requests one task may have open at once (until their response body
    /// ends or is dropped). Default 32; at least 1.
    pub max_in_flight: u32,
    /// Request body bytes one task may send, all requests together.
    /// Default 64 MiB.
    pub max_sent_bytes: u64,
    /// Response body bytes one task may receive, all requests together.
    /// Default 64 MiB.
    pub max_received_bytes: u64,
    /// Longest wait for a connection (name lookup, TCP and TLS). Default 10 s.
    pub connect_timeout: Duration,
    /// Longest wait for a response's head, and between two chunks of its
    /// body. Default 30 s. The task's own deadline bounds all of it.
    pub first_byte_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_requests: 1_000,
            max_in_flight: 32,
            max_sent_bytes: 64 << 20,
            max_received_bytes: 64 << 20,
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(30),
        }
    }
}

/// What one task may reach, and how much. Default: nowhere.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// Where the tenant's requests may go.
    pub allow: AllowList,
    /// Where the job's may go, if it narrows its tenant's list. A request
    /// goes out only if both allow it; checking each list apart spares
    /// building their intersection for every task.
    pub narrow: Option<AllowList>,
    pub limits: HttpLimits,
}

impl Grant {
    /// Which list refuses a request to `scheme://host:port`, if one does.
    pub fn refused_by(&self, scheme: Scheme, host: &str, port: u16) -> Option<&'static str> {
        if !self.allow.allows(scheme, host, port) {
            Some("its tenant's allow-list")
        } else if self.narrow.as_ref().is_some_and(|job| !job.allows(scheme, host, port)) {
            Some("its job's allowed-hosts")
        } else {
            None
        }
    }
}

/// What a task used of the network: billing-ready, like fuel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HttpUsage {
    /// Requests that reached a server (refused ones are not counted).
    pub requests: u64,
    /// Request body bytes sent.
    pub bytes_sent: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
}

/// The running counts behind [`HttpUsage`], shared with the request tasks.
#[derive(Debug, Default)]
struct Meter {
    /// Requests admitted, which the quota counts (even if their address is
    /// then refused, so that a job cannot retry a refusal for ever).
    admitted: AtomicU64,
    /// Requests that reached a server.
    requests: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
}

/// One task's `wasi:http` hooks.
pub struct TaskHttp {
    egress: Arc<Egress>,
    grant: Grant,
    /// The counts and the in-flight places, made at the task's first
    /// request: most tasks make none, and building a task is the hot path.
    used: Option<(Arc<Meter>, Arc<Semaphore>)>,
    log: TaskLog,
}

impl TaskHttp {
    pub fn new(egress: Arc<Egress>, grant: Grant, log: TaskLog) -> TaskHttp {
        TaskHttp { egress, grant, used: None, log }
    }

    /// What the task used so far.
    pub fn usage(&self) -> HttpUsage {
        let Some((meter, _)) = &self.used else { return HttpUsage::default() };
        HttpUsage {
            requests: meter.requests.load(Ordering::Relaxed),
            bytes_sent: meter.sent.load(Ordering::Relaxed),
            bytes_received: meter.received.load(Ordering::Relaxed),
        }
    }

    /// Checks a request against the grant and the limits; on success counts
    /// it and holds one of the in-flight places for it.
    fn admit(&mut self, uri: &http::Uri) -> Result<(Target, Arc<Meter>, OwnedSemaphorePermit), Error> {
        let scheme = match uri.scheme() {
            Some(s) if *s == UriScheme::HTTPS => Scheme::Https,
            Some(s) if *s == UriScheme::HTTP => Scheme::Http,
            _ => return Err(Error::HttpProtocolError),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or(Error::HttpRequestUriInvalid)?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).to_owned();
        let port = uri.port_u16().unwrap_or(scheme.default_port());
        let shown = format!("{}://{host}:{port}", if scheme == Scheme::Https { "https" } else { "http" });
        if let Some(list) = self.grant.refused_by(scheme, &host, port) {
            self.log.line(LogLevel::Warn, &format!("egress denied: {shown} is not on {list}"));
            return Err(Error::HttpRequestDenied);
        }
        let limits = self.grant.limits;
        let (meter, in_flight) =
            self.used.get_or_insert_with(|| (Arc::default(), Arc::new(Semaphore::new(limits.max_in_flight as usize))));
        if meter.admitted.load(Ordering::Relaxed) >= limits.max_requests {
            let line = format!("egress denied: {shown}: the task made its {} requests", limits.max_requests);
            self.log.line(LogLevel::Warn, &line);
            return Err(Error::HttpRequestDenied);
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            let line = format!("egress denied: {shown}: {} requests already open", limits.max_in_flight);
            self.log.line(LogLevel::Warn, &line);
            return Err(Error::ConnectionLimitReached);
        };
        meter.admitted.fetch_add(1, Ordering::Relaxed);
        Ok((Target { scheme, host, port, shown }, meter.clone(), permit))
    }
}

/// Where an admitted request goes.
struct Target {
    scheme: Scheme,
    /// A name, or an IP address without brackets.
    host: String,
    port: u16,
    /// `scheme://host:port`, for log lines.
    shown: String,
}

/// A response, and the future that drives its connection.
type Sent = (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>);
type ResponseFuture = Box<dyn Future<Output = Result<Sent, Error>> + Send>;

impl WasiHttpHooks for TaskHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        let admitted = self.admit(request.uri());
        let egress = self.egress.clone();
        let limits = self.grant.limits;
        let log = self.log.clone();
        // Whatever happens to the request, its body lingers for the guest.
        let request = request.map(|body| Lingering(Some(body)));
        Box::new(async move {
            let (target, meter, permit) = admitted?;
            send(&egress, target, request, options, limits, meter, permit, &log).await
        })
    }

    // A job's network errors are its own business: they reach the guest as
    // error codes, not the node's log.
    fn p2_error_from_hyper(&mut self, err: &hyper::Error) -> ErrorCode {
        tracing::debug!(error = %err, "a job's request failed");
        if err.is_timeout() { ErrorCode::HttpResponseTimeout } else { ErrorCode::HttpProtocolError }
    }

    fn p2_error_from_connect(&mut self, err: &std::io::Error) -> ErrorCode {
        tracing::debug!(error = %err, "a job's connection failed");
        ErrorCode::ConnectionRefused
    }

    fn p2_error_from_tls(&mut self, err: &std::io::Error) -> ErrorCode {
        tracing::debug!(error = %err, "a job's TLS handshake failed");
        match err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::InvalidCertificate(_)) => ErrorCode::TlsCertificateError,
            _ => ErrorCode::TlsProtocolError,
        }
    }
}

/// Resolves, checks, connects and sends; answers with the response (its
/// body metered) and the connection's I/O future.
#[allow(clippy::too_many_arguments)]
async fn send(
    egress: &Egress,
    target: Target,
    mut request: http::Request<Lingering>,
    options: Option<RequestOptions>,
    limits: HttpLimits,
    meter: Arc<Meter>,
    permit: OwnedSemaphorePermit,
    log: &TaskLog,
) -> Result<Sent, Error> {
    let bounded = |asked: Option<Duration>, most: Duration| asked.map_or(most, |a| a.min(most));
    let connect_timeout = bounded(options.and_then(|o| o.connect_timeout), limits.connect_timeout);
    let first_byte_timeout = bounded(options.and_then(|o| o.first_byte_timeout), limits.first_byte_timeout);
    let between_bytes = bounded(options.and_then(|o| o.between_bytes_timeout), limits.first_byte_timeout);

    let stream = tokio::time::timeout(connect_timeout, connect(egress, &target, log))
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
    let stream: Box<dyn Stream> = match target.scheme {
        Scheme::Http => Box::new(stream),
        Scheme::Https => {
            let name = match target.host.parse::<IpAddr>() {
                Ok(ip) => rustls::pki_types::ServerName::from(ip),
                Err(_) => rustls::pki_types::ServerName::try_from(target.host.clone())
                    .map_err(|_| Error::HttpRequestUriInvalid)?,
            };
            let tls = tokio::time::timeout(connect_timeout, egress.tls.connect(name, stream))
                .await
                .map_err(|_| Error::ConnectionTimeout)?;
            Box::new(tls.map_err(Error::Tls)?)
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    meter.requests.fetch_add(1, Ordering::Relaxed);

    // The head says where to: only the path and query go on the wire.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = http::Uri::builder().path_and_query(path).build().map_err(|_| Error::HttpRequestUriInvalid)?;
    let request = request.map(|body| {
        Metered {
            inner: body,
            meter: meter.clone(),
            way: Way::Sent,
            limit: limits.max_sent_bytes,
            idle: None,
            permit: None,
        }
        .boxed_unsync()
    });

    // Drive the connection while waiting for the response's head.
    let mut conn = Box::pin(conn);
    let mut conn_ended: Option<Result<(), hyper::Error>> = None;
    let head = async {
        let send = sender.send_request(request);
        tokio::pin!(send);
        loop {
            tokio::select! {
                response = &mut send => return response.map_err(Error::from),
                ended = &mut conn, if conn_ended.is_none() => conn_ended = Some(ended),
            }
        }
    };
    let response = tokio::time::timeout(first_byte_timeout, head).await.map_err(|_| Error::ConnectionReadTimeout)??;
    let idle = Some((between_bytes, Box::pin(tokio::time::sleep(between_bytes))));
    let limit = limits.max_received_bytes;
    let response = response.map(|incoming| {
        Metered { inner: incoming, meter, way: Way::Received, limit, idle, permit: Some(permit) }.boxed_unsync()
    });
    let io: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async move {
        match conn_ended {
            Some(ended) => ended.map_err(Error::from),
            None => conn.await.map_err(Error::from),
        }
    });
    Ok((response, io))
}

/// How long a request body dropped unfinished (its request failed, or
/// hyper needed no more of it) is still read, and how much of it, so that
/// the guest's body writes succeed and it reads the request's own error
/// code: dropped at once, the body would fail the guest's writes first
/// ("connection reset"), depending on which of the two the guest looked at
/// first.
const DRAIN_WAIT: Duration = Duration::from_secs(1);
const DRAIN_BYTES: usize = 1 << 20;

/// Reads and drops `body` until it ends, [`DRAIN_BYTES`] or [`DRAIN_WAIT`].
async fn drain(mut body: WasiBody) {
    let read = async {
        let mut bytes = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            bytes = bytes.saturating_add(frame.data_ref().map_or(0, |d| d.len()));
            if bytes > DRAIN_BYTES {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_WAIT, read).await;
}

/// A request body that outlives the engine's interest in it: a request
/// that fails before it is sent drops its body, and hyper drops one it need
/// not read (an empty one, or once the response is in); the guest's next
/// write (even of nothing, which some clients make) would then fail.
/// Dropped unfinished, it is [drained](drain) in the background.
struct Lingering(Option<WasiBody>);

impl Body for Lingering {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let Some(body) = self.0.as_mut() else { return Poll::Ready(None) };
        let frame = Pin::new(body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.0 = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.as_ref().map_or_else(|| http_body::SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        if let Some(body) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(drain(body));
        }
    }
}

/// A connection a request can go over: TCP, or TLS over TCP.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Resolves the target's host and connects to the first of its addresses
/// that the operator's networks permit.
async fn connect(egress: &Egress, target: &Target, log: &TaskLog) -> Result<TcpStream, Error> {
    let addresses: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| Error::DnsError { rcode: Some(e.to_string()), info_code: None })?
            .collect(),
    };
    let (permitted, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addresses.into_iter().partition(|a| egress.networks.permits(a.ip()));
    if permitted.is_empty() {
        if let Some(first) = refused.first() {
            let line = format!(
                "egress denied: {} resolves to {}, a private or reserved address the operator does not allow",
                target.shown,
                first.ip()
            );
            log.line(LogLevel::Warn, &line);
            return Err(Error::DestinationIpProhibited);
        }
        return Err(Error::DestinationNotFound);
    }
    let mut last = None;
    for address in permitted {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Connect(last.expect("one address was tried")))
}

/// Which way a body goes.
#[derive(Clone, Copy)]
enum Way {
    Sent,
    Received,
}

/// A body counted into the task's [`Meter`] as it streams, cut with the
/// task's byte limit; a response body also gives up after a silence
/// (`idle`) and holds the request's in-flight place until it is dropped.
struct Metered<B> {
    inner: B,
    meter: Arc<Meter>,
    way: Way,
    limit: u64,
    idle: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
    permit: Option<OwnedSemaphorePermit>,
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    let counter = match this.way {
                        Way::Sent => &this.meter.sent,
                        Way::Received => &this.meter.received,
                    };
                    let total = counter.fetch_add(n, Ordering::Relaxed).saturating_add(n);
                    if total > this.limit {
                        return Poll::Ready(Some(Err(match this.way {
                            Way::Sent => Error::HttpRequestBodySize(Some(this.limit)),
                            Way::Received => Error::HttpResponseBodySize(Some(this.limit)),
                        })));
                    }
                }
                if let Some((wait, sleep)) = &mut this.idle {
                    sleep.as_mut().reset(tokio::time::Instant::now() + *wait);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.permit = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let silent_too_long = this.idle.as_mut().is_some_and(|(_, sleep)| sleep.as_mut().poll(cx).is_ready());
                if silent_too_long { Poll::Ready(Some(Err(Error::ConnectionReadTimeout))) } else { Poll::Pending }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
