//! What one downstream client may hold of a proxy's HTTP listeners: a cap on open
//! connections (one more gets a 503 and is closed), a deadline for each request head, and
//! Envoy's request header size limit. Kept apart from the request path (`server.rs`) so the
//! limits are read in one place.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A request head (request line and headers) over this is answered 431, as Envoy's
/// `max_request_headers_kb` default of 60 does.
pub const MAX_HEADER_BYTES: usize = 60 * 1024;
/// nginx's `client_header_timeout`. A client has this long to send each request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Open downstream connections per listener before new ones are refused. Envoy has no
/// default cap; this one only stops a client from exhausting the proxy's memory.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// How long a refusal may take to write before the socket is simply closed.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Limits for every HTTP listener of one proxy.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// From a connection's start (or its last response) to the end of the next request head.
    pub header_read_timeout: Duration,
    /// Open connections per listener.
    pub max_connections: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl ListenerLimits {
    /// A hyper connection builder that applies the head timeout and the header size limit,
    /// HTTP/1 and HTTP/2 alike.
    pub(crate) fn http_builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(MAX_HEADER_BYTES);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX));
        builder
    }

    /// The counter of one listener's open connections.
    pub(crate) fn connection_slots(&self) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(self.max_connections))
    }
}

/// A slot for a new connection, or `None` (logged) when the listener is full.
pub(crate) fn take_slot(
    slots: &Arc<Semaphore>,
    peer: std::net::SocketAddr,
) -> Option<OwnedSemaphorePermit> {
    let slot = slots.clone().try_acquire_owned().ok();
    if slot.is_none() {
        tracing::warn!(%peer, "connection refused: too many open connections");
    }
    slot
}

/// Tells a plain-HTTP client over the cap why it is turned away, then closes.
pub(crate) async fn refuse<S: AsyncWrite + Unpin>(mut sock: S) {
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
