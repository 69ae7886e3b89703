//! Originating TLS to a cluster: a hyper connector that opens TCP, then, for a cluster
//! under a client policy, a TLS session with the cluster's one `ClientConfig` (so its
//! resumption cache is shared by every connection to the cluster).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::verify::{
    failure_reason, peer_identity, rustls_error, AnyServerCert, PeerVerifier, SlotClientCert,
};
use super::{CertSlot, TlsStore, TrustSlot};
use crate::compile::{ClientTlsConfig, ConfigError, ServerCheck};
use crate::model::spec::PortProtocol;
use crate::proxy::stats::{ClusterLabels, ClusterPeerLabels, ClusterReasonLabels, Stats};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A TLS connection to an upstream could not be made; the request gets a 503 naming it.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct UpstreamTlsError {
    /// One line: what failed and the likely cause.
    pub reason: String,
}

/// One cluster's TLS: its config and the slots it reads.
pub(crate) struct UpstreamTls {
    config: Arc<ClientConfig>,
    cert: Option<Arc<CertSlot>>,
    /// None when the server's certificate is not validated.
    trust: Option<Arc<TrustSlot>>,
    cluster: String,
    stats: Arc<Stats>,
}

impl UpstreamTls {
    pub fn new(
        store: &TlsStore,
        policy: &ClientTlsConfig,
        protocol: PortProtocol,
        cluster: &str,
        stats: &Arc<Stats>,
    ) -> Result<UpstreamTls, ConfigError> {
        let cert = policy.certificate.as_ref().map(|c| store.cert(c));
        let (trust, verifier): (_, Arc<dyn ServerCertVerifier>) = match &policy.server {
            ServerCheck::Verify {
                validation,
                expected,
            } => {
                let trust = store.trust(&validation.trust);
                let verifier = Arc::new(PeerVerifier {
                    trust: trust.clone(),
                    sans: validation.subject_alternative_names.clone(),
                    expected: Some(expected.clone()),
                    revoked: store.revoked.clone(),
                    provider: store.provider.clone(),
                });
                (Some(trust), verifier)
            }
            ServerCheck::Unverified => (
                None,
                Arc::new(AnyServerCert {
                    provider: store.provider.clone(),
                }),
            ),
        };
        let builder = ClientConfig::builder_with_provider(store.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ConfigError::Invalid(format!("cluster {cluster} TLS: {e}")))?
            .dangerous() // a custom verifier: the chain is checked, names only as App Mesh does
            .with_custom_certificate_verifier(verifier);
        let mut config = match &cert {
            Some(slot) => builder.with_client_cert_resolver(Arc::new(SlotClientCert(slot.clone()))),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = match protocol {
            PortProtocol::Http2 | PortProtocol::Grpc => vec![b"h2".to_vec()],
            // Raw TCP names no application protocol.
            PortProtocol::Tcp => Vec::new(),
            _ => vec![b"http/1.1".to_vec()],
        };
        Ok(UpstreamTls {
            config: Arc::new(config),
            cert,
            trust,
            cluster: cluster.to_owned(),
            stats: stats.clone(),
        })
    }

    /// Whether the credentials this TLS needs are loaded. Until then no handshake can start,
    /// which says nothing about the endpoint (a health check waits instead of failing it).
    pub(crate) fn ready(&self) -> bool {
        self.cert.as_ref().is_none_or(|c| c.current().is_some())
            && self.trust.as_ref().is_none_or(|t| t.current().is_some())
    }

    fn failed(&self, reason: &str) {
        self.stats
            .upstream_tls_failures
            .get_or_create(&ClusterReasonLabels {
                cluster: self.cluster.clone(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    async fn handshake(
        &self,
        uri: &Uri,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, UpstreamTlsError> {
        let endpoint = uri.authority().map(|a| a.as_str()).unwrap_or("?");
        let host = uri.host().unwrap_or_default();
        self.handshake_to(endpoint, host, tcp).await
    }

    /// TLS over a connection already open to `endpoint` (`host:port`), for a raw TCP
    /// splice.
    pub(crate) async fn handshake_tcp(
        &self,
        endpoint: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, UpstreamTlsError> {
        let host = match endpoint.rfind(':') {
            Some(i) if !endpoint[i..].contains(']') => &endpoint[..i],
            _ => endpoint,
        };
        self.handshake_to(endpoint, host, tcp).await
    }

    async fn handshake_to(
        &self,
        endpoint: &str,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, UpstreamTlsError> {
        let missing = [
            self.cert
                .as_ref()
                .filter(|c| c.current().is_none())
                .map(|c| &c.what),
            self.trust
                .as_ref()
                .filter(|t| t.current().is_none())
                .map(|t| &t.what),
        ];
        if let Some(what) = missing.into_iter().flatten().next() {
            self.failed("no_credentials");
            return Err(UpstreamTlsError {
                reason: format!("no TLS to {endpoint}: {what} are not loaded yet"),
            });
        }
        let host = host.trim_matches(['[', ']']);
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.to_owned()).map_err(|e| UpstreamTlsError {
                reason: format!("{host:?} is not a TLS server name: {e}"),
            })?,
        };
        let connector = TlsConnector::from(self.config.clone());
        match connector.connect(name, tcp).await {
            Ok(stream) => {
                let conn = stream.get_ref().1;
                self.stats
                    .upstream_tls_handshakes
                    .get_or_create(&ClusterPeerLabels {
                        cluster: self.cluster.clone(),
                        peer: peer_identity(conn.peer_certificates()),
                    })
                    .inc();
                if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                    self.stats
                        .upstream_tls_resumed
                        .get_or_create(&ClusterLabels {
                            cluster: self.cluster.clone(),
                        })
                        .inc();
                }
                Ok(stream)
            }
            Err(e) => {
                let tls = rustls_error(&e);
                let kind = tls.map_or_else(|| "io".to_owned(), failure_reason);
                self.failed(&kind);
                let hint = match kind.as_str() {
                    "not_tls" => " (the upstream answered in plain text: does its listener terminate TLS?)",
                    "io" => " (the upstream closed the connection during the handshake: does its listener terminate TLS?)",
                    "unknown_ca" => " (its certificate does not chain to the client policy's trust)",
                    "san_mismatch" => " (its certificate names none of the client policy's subject alternative names, or, with none listed, not the server's service-discovery name)",
                    k if k.starts_with("peer_alert") => " (the upstream refused the handshake; it may not accept this proxy's certificate)",
                    _ => "",
                };
                Err(UpstreamTlsError {
                    reason: format!("TLS handshake failed: {e}{hint}"),
                })
            }
        }
    }
}

// === impl Connector ===

/// The connector of every upstream client: plain TCP, or TLS for a cluster under a policy.
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    tls: Option<Arc<UpstreamTls>>,
}

impl Connector {
    pub(crate) fn new(http: HttpConnector, tls: Option<Arc<UpstreamTls>>) -> Connector {
        Connector { http, tls }
    }
}

impl tower::Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.http.call(uri.clone());
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = connecting.await?;
            match tls {
                None => Ok(Conn::Plain(tcp)),
                Some(tls) => {
                    let stream = tls.handshake(&uri, tcp.into_inner()).await?;
                    Ok(Conn::Tls(TokioIo::new(Box::new(stream))))
                }
            }
        })
    }
}

/// An upstream connection, plain or TLS.
pub enum Conn {
    Plain(TokioIo<TcpStream>),
    Tls(TokioIo<Box<TlsStream<TcpStream>>>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Conn::Plain(s) => s.connected(),
            Conn::Tls(s) => {
                let (tcp, session) = s.inner().get_ref();
                let connected = tcp.connected();
                if session.alpn_protocol() == Some(b"h2") {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}
