//! Terminating TLS on a listener: STRICT takes only TLS, PERMISSIVE tells TLS from plain
//! text by the first byte (a TLS record of a ClientHello starts with 0x16), DISABLED is plain.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rustls::server::{ServerConfig, ServerSessionMemoryCache};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::verify::{failure_reason, peer_identity, rustls_error, PeerVerifier, SlotServerCert};
use super::{CertSlot, TlsStore};
use crate::compile::{ConfigError, ListenerTlsConfig};
use crate::model::spec::{ListenerTlsMode, PortProtocol};
use crate::proxy::stats::{ListenerLabels, ListenerPeerLabels, ListenerReasonLabels, Stats};

/// A client that has not sent its first byte, or finished its handshake, by then is
/// dropped, so half-open connections cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a PERMISSIVE tcp listener waits for a client's first byte before it takes the
/// connection as plain text: a server-speaks-first protocol (SMTP, MySQL) sends nothing
/// until it hears from the server, and must not stall on a TLS sniff.
const PERMISSIVE_TCP_FIRST_BYTE: Duration = Duration::from_secs(1);
/// First byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// Resumable TLS sessions each listener remembers (about 100 bytes each).
const SESSION_CACHE: usize = 4096;

/// One listener's TLS, built when its config is applied and kept while it is unchanged.
pub(crate) struct ListenerTls {
    pub config: ListenerTlsConfig,
    pub protocol: PortProtocol,
    server: Arc<ServerConfig>,
    cert: Arc<CertSlot>,
    label: String,
    stats: Arc<Stats>,
    /// Whether "credentials not loaded" was logged, so a client retrying does not flood.
    warned: AtomicBool,
}

impl ListenerTls {
    /// `label` names the listener in `/stats` (`0.0.0.0_9080`, as Envoy's stats do).
    pub fn new(
        store: &TlsStore,
        config: &ListenerTlsConfig,
        protocol: PortProtocol,
        label: String,
        stats: &Arc<Stats>,
    ) -> Result<ListenerTls, ConfigError> {
        let cert = store.cert(&config.certificate);
        let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = match &config.validation
        {
            Some(v) => Arc::new(PeerVerifier {
                trust: store.trust(&v.trust),
                sans: v.subject_alternative_names.clone(),
                expected: None,
                revoked: store.revoked.clone(),
                provider: store.provider.clone(),
            }),
            None => rustls::server::WebPkiClientVerifier::no_client_auth(),
        };
        let mut server = ServerConfig::builder_with_provider(store.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ConfigError::Invalid(format!("listener {label} TLS: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(SlotServerCert(cert.clone())));
        // HTTP/2 over TLS is chosen by ALPN where the listener speaks it.
        server.alpn_protocols = match protocol {
            PortProtocol::Http2 | PortProtocol::Grpc => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            // Raw TCP names no application protocol: a client offering any ALPN still connects.
            PortProtocol::Tcp => Vec::new(),
            _ => vec![b"http/1.1".to_vec()],
        };
        server.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        Ok(ListenerTls {
            config: config.clone(),
            protocol,
            server: Arc::new(server),
            cert,
            label,
            stats: stats.clone(),
            warned: AtomicBool::new(false),
        })
    }

    fn failed(&self, reason: &str) {
        self.stats
            .listener_tls_failures
            .get_or_create(&ListenerReasonLabels {
                listener: self.label.clone(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    fn counter(
        &self,
        family: &prometheus_client::metrics::family::Family<ListenerLabels, Counter>,
    ) {
        family
            .get_or_create(&ListenerLabels {
                listener: self.label.clone(),
            })
            .inc();
    }

    /// Takes a new connection through the listener's TLS mode. `None`: refused (counted
    /// and logged at debug, or at warn when the proxy's own fault).
    pub async fn accept(&self, mut tcp: TcpStream) -> Option<Downstream> {
        if self.config.mode == ListenerTlsMode::Disabled {
            return Some(Downstream::Plain(tcp));
        }
        let mut first = [0u8; 1];
        let server_may_speak_first =
            self.config.mode == ListenerTlsMode::Permissive && self.protocol == PortProtocol::Tcp;
        let wait = if server_may_speak_first {
            PERMISSIVE_TCP_FIRST_BYTE
        } else {
            HANDSHAKE_TIMEOUT
        };
        match tokio::time::timeout(wait, tcp.peek(&mut first)).await {
            Ok(Ok(1)) => {}
            Ok(_) => return None, // closed before a byte, or reset
            Err(_) if server_may_speak_first => {
                self.counter(&self.stats.listener_plaintext);
                return Some(Downstream::Plain(tcp));
            }
            Err(_) => {
                self.failed("timeout");
                return None;
            }
        }
        if first[0] != TLS_HANDSHAKE {
            if self.config.mode == ListenerTlsMode::Permissive {
                self.counter(&self.stats.listener_plaintext);
                return Some(Downstream::Plain(tcp));
            }
            self.failed("plaintext");
            // Tell an HTTP client why, as nginx does, instead of a bare reset.
            if first[0].is_ascii_uppercase() {
                let body = "this listener requires TLS (mode STRICT); use https\n";
                let resp = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(resp.as_bytes()).await;
                let _ = tcp.shutdown().await;
            }
            return None;
        }
        if self.cert.current().is_none() {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(listener = %self.label, source = %self.cert.what, "refusing TLS handshakes: the certificate is not loaded yet");
            }
            self.failed("no_credentials");
            return None;
        }
        self.warned.store(false, Ordering::Relaxed);
        let acceptor = TlsAcceptor::from(self.server.clone());
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Err(_) => {
                self.failed("timeout");
                None
            }
            Ok(Err(e)) => {
                let reason = rustls_error(&e).map_or_else(|| "io".to_owned(), failure_reason);
                tracing::debug!(listener = %self.label, error = %e, %reason, "TLS handshake failed");
                self.failed(&reason);
                None
            }
            Ok(Ok(stream)) => {
                let conn = stream.get_ref().1;
                self.stats
                    .listener_tls_handshakes
                    .get_or_create(&ListenerPeerLabels {
                        listener: self.label.clone(),
                        peer: peer_identity(conn.peer_certificates()),
                    })
                    .inc();
                if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                    self.counter(&self.stats.listener_tls_resumed);
                }
                Some(Downstream::Tls(Box::new(stream)))
            }
        }
    }
}

// === impl Downstream ===

impl Downstream {
    /// The mesh identity of a TLS client that sent a certificate naming one: what a later
    /// revocation closes this connection for.
    pub fn peer(&self) -> Option<String> {
        match self {
            Downstream::Plain(_) => None,
            Downstream::Tls(s) => super::Revocations::identity(s.get_ref().1.peer_certificates()),
        }
    }
}

/// A client connection, in plain text or TLS, as one type for the HTTP server.
pub(crate) enum Downstream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Downstream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Downstream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Downstream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Downstream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Downstream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Downstream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Downstream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Downstream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Downstream::Plain(s) => s.is_write_vectored(),
            Downstream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Downstream::Plain(s) => Pin::new(s).poll_flush(cx),
            Downstream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Downstream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Downstream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
