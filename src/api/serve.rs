//! The API's accept loop, plain HTTP and TLS alike: per-connection limits (a cap on open
//! connections, a header read timeout, a header size limit), a body read timeout and a
//! request timeout on every request, and a drain deadline at shutdown. A client that opens
//! connections and never finishes a request cannot hold them, nor the memory behind them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{router, AppState};

/// A request head (request line and headers) larger than this is answered 431, as Envoy's
/// default `max_request_headers_kb` of 60 does.
pub const MAX_HEADER_BYTES: usize = 60 * 1024;
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refusal ("too many connections") may take to write before the socket is
/// simply closed.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Defaults of the `control` flags that set `Limits`, named here where they are used.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// What one client may hold of the API, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a connection's first byte (or the end of its last response) to the end of the
    /// next request head. nginx uses 60 s; API clients send their head at once, so less.
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body (nginx's `client_body_timeout`).
    pub body_read_timeout: Duration,
    /// Longest a whole request may take, from head to response; also bounds how long a
    /// drain waits on a slow one.
    pub request_timeout: Duration,
    /// Open connections at once; one more is answered 503 (plain HTTP) or closed (TLS).
    pub max_connections: usize,
    /// How long in-flight requests get after shutdown is requested.
    pub drain_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            drain_deadline: DEFAULT_DRAIN_DEADLINE,
        }
    }
}

/// Serves the API on `listener` (over TLS when `tls` is given) until `shutdown` fires, then
/// drains for at most `limits.drain_deadline`.
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let mut app = router(state).layer(axum::middleware::from_fn_with_state(limits, request_limits));
    if acceptor.is_some() {
        // Marked so the admin page's session cookie is `Secure` there.
        app = app.layer(axum::Extension(super::admin::ServedOverTls));
    }
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(%e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "connection refused: too many open connections");
            if acceptor.is_none() {
                tokio::spawn(refuse(tcp));
            }
            continue;
        };
        // The peer's address, for the sign-in limiter (per client address, on both paths).
        let service = TowerToHyperService::new(
            tower::ServiceBuilder::new()
                .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                })
                .service(app.clone()),
        );
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(MAX_HEADER_BYTES);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX));
            let result = match acceptor {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => {
                    let tls =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, %e, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(limits.drain_deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("API drain deadline passed; closing open connections");
    }
    Ok(())
}

/// Tells a client over the connection cap why it is turned away, then closes.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut sock: S) {
    const BODY: &str = "too many open connections; try again later\n";
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: text/plain\r\nretry-after: 1\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        sock.write_all(reply.as_bytes()).await?;
        sock.shutdown().await
    })
    .await;
}

/// Bounds each request: its body may stall for at most `body_read_timeout` between pieces,
/// and the whole request may take at most `request_timeout`.
async fn request_limits(
    axum::extract::State(limits): axum::extract::State<Limits>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let req = req.map(|body| Body::new(StallTimeoutBody::new(body, limits.body_read_timeout)));
    match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout = ?limits.request_timeout, "request timed out");
            crate::model::ApiError::ServiceUnavailable(format!(
                "the request did not complete within {} s",
                limits.request_timeout.as_secs()
            ))
            .into_response()
        }
    }
}

/// The error a body read gets when the client sent nothing for too long.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no request body data for {0:?}")]
pub struct BodyStalled(pub Duration);

/// A request body that fails with `BodyStalled` when no piece arrives within `limit`.
struct StallTimeoutBody {
    inner: Body,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl StallTimeoutBody {
    fn new(inner: Body, limit: Duration) -> Self {
        StallTimeoutBody {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl hyper::body::Body for StallTimeoutBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = Instant::now() + this.limit;
                this.deadline.as_mut().reset(next);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    Poll::Ready(Some(Err(axum::Error::new(BodyStalled(this.limit)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_body_that_stalls_fails_after_the_limit() {
        use tokio_stream::StreamExt;
        let piece = tokio_stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"abc"))]);
        let body = Body::from_stream(piece.chain(tokio_stream::pending()));
        let mut body = StallTimeoutBody::new(body, Duration::from_millis(200));
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().ok(), Some(Bytes::from_static(b"abc")));
        let started = Instant::now();
        let err = body.frame().await.expect("an error").expect_err("stalled");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(err.to_string().contains("no request body data"), "{err}");
    }
}
