//! TLS for the sync channel. The control plane's certificate names `SERVER_NAME` whatever
//! address proxies dial, so a proxy verifies the control plane, not a DNS record. A new
//! proxy trusts only the root its join token pins; an enrolled one trusts its CA bundle
//! and presents its own leaf, which is its identity.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::model::Identity;

/// The ALPN of the sync protocol; a peer speaking anything else fails the handshake.
pub const ALPN: &[u8] = b"appliance-sync/1";
/// The DNS name in the control plane's sync certificate, and the name proxies verify.
pub const SERVER_NAME: &str = "appliance-control";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: {source}")]
    Pem {
        what: &'static str,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0}: no certificate in the PEM")]
    Empty(&'static str),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS setup: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("QUIC crypto: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsError::Empty(what));
    }
    Ok(certs)
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|source| TlsError::Pem {
        what: "private key",
        source,
    })
}

/// A session with no packet for this long is gone.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(1500);
/// How often a proxy pings a quiet session.
pub const KEEP_ALIVE: Duration = Duration::from_millis(300);

fn transport(keep_alive: bool) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // A proxy whose host vanished (or a sidecar killed with -9: UDP says nothing) is noticed
    // within this long, after which its endpoint's grace period starts. Keep-alives from
    // the proxy side, five per timeout, keep a quiet but healthy session open through a few
    // lost packets; at one small packet per 300 ms a session costs little.
    t.max_idle_timeout(Some(
        IDLE_TIMEOUT
            .try_into()
            .expect("1.5 s is a valid idle timeout"),
    ));
    if keep_alive {
        t.keep_alive_interval(Some(KEEP_ALIVE));
    }
    // One long-lived stream per session; small windows keep a quiet session's memory small
    // while a config of several MB still flows at loopback speed.
    t.max_concurrent_bidi_streams(1u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.stream_receive_window((128u32 * 1024).into());
    t.receive_window((128u32 * 1024).into());
    t.send_window(256 * 1024);
    // No datagrams in this protocol, and loopback/VPC paths need no MTU probing: both
    // would cost memory on every one of thousands of idle sessions.
    t.datagram_receive_buffer_size(None);
    t.mtu_discovery_config(None);
    Arc::new(t)
}

/// The control plane's QUIC server config: its certificate chain (root included, so a
/// token's pin can be checked against it), client certificates optional (enrolment comes
/// without one) but verified against the CA's roots when present.
pub fn server_config(
    chain_pem: &str,
    key_pem: &str,
    roots: &[CertificateDer<'static>],
) -> Result<quinn::ServerConfig, TlsError> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone())?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
        .allow_unauthenticated()
        .build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(chain_pem, "sync certificate chain")?, key(key_pem)?)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport(false));
    Ok(config)
}

/// For enrolment: no client certificate, and the server chain must contain the pinned root.
pub fn enrol_client_config(ca_pin: [u8; 32]) -> Result<quinn::ClientConfig, TlsError> {
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedRoot {
            pin: ca_pin,
            provider,
        }))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    client(tls)
}

/// For an enrolled proxy: trust the CA bundle, present the proxy's own leaf.
pub fn mtls_client_config(
    chain_pem: &str,
    key_pem: &str,
    trust_bundle_pem: &str,
) -> Result<quinn::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(trust_bundle_pem, "CA bundle")? {
        roots.add(c)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs(chain_pem, "certificate chain")?, key(key_pem)?)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    client(tls)
}

fn client(tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, TlsError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(true));
    Ok(config)
}

/// Verifies the server chain with the pinned root as the only trust anchor. The root must be
/// among the certificates the server sent, since the proxy has nothing else yet.
#[derive(Debug)]
struct PinnedRoot {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedRoot {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let root = intermediates
            .iter()
            .find(|c| <[u8; 32]>::from(Sha256::digest(c.as_ref())) == self.pin)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the control plane's certificate does not chain to the CA the join token pins"
                        .into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(root.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What a verified client certificate says: the identity in its SPIFFE id, and its expiry.
pub struct PeerCert {
    pub identity: Identity,
    pub not_after: time::OffsetDateTime,
}

/// Reads the identity of a QUIC peer that presented a certificate (already verified by the
/// handshake against the CA's roots). `None` when it presented none.
pub fn peer_cert(conn: &quinn::Connection, trust_domain: &str) -> Option<Result<PeerCert, String>> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    let leaf = certs.first()?;
    Some(leaf_identity(leaf, trust_domain))
}

pub fn leaf_identity(leaf: &CertificateDer<'_>, trust_domain: &str) -> Result<PeerCert, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("client certificate does not parse: {e}"))?;
    let not_after =
        time::OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .map_err(|e| format!("client certificate expiry: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("client certificate SAN: {e}"))?
        .ok_or("client certificate has no subject alternative names")?;
    for name in &san.value.general_names {
        if let x509_parser::extensions::GeneralName::URI(uri) = name {
            if let Some(identity) = Identity::from_spiffe_id(uri, trust_domain) {
                return Ok(PeerCert {
                    identity,
                    not_after,
                });
            }
        }
    }
    Err(format!(
        "client certificate has no SPIFFE id in trust domain {trust_domain}"
    ))
}

/// Expiry and lifetime of the first certificate of a PEM chain: when to renew.
pub fn validity(chain_pem: &str) -> Result<(time::OffsetDateTime, time::OffsetDateTime), String> {
    let first = certs(chain_pem, "certificate chain").map_err(|e| e.to_string())?;
    let (_, cert) = x509_parser::parse_x509_certificate(first[0].as_ref())
        .map_err(|e| format!("certificate does not parse: {e}"))?;
    let v = cert.validity();
    let from = time::OffsetDateTime::from_unix_timestamp(v.not_before.timestamp())
        .map_err(|e| e.to_string())?;
    let to = time::OffsetDateTime::from_unix_timestamp(v.not_after.timestamp())
        .map_err(|e| e.to_string())?;
    Ok((from, to))
}

/// A new key on this host and a CSR for it. The CA decides every name, so the CSR asks for
/// none.
pub fn new_key_and_csr() -> Result<(String, String), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| format!("generating a key: {e}"))?;
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .map_err(|e| format!("making a CSR: {e}"))?
        .pem()
        .map_err(|e| format!("encoding the CSR: {e}"))?;
    Ok((key.serialize_pem(), csr))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed leaf with `sans`, as DER.
    fn leaf(sans: Vec<rcgen::SanType>) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = sans;
        params.self_signed(&key).unwrap().der().clone()
    }

    fn uri(s: &str) -> rcgen::SanType {
        rcgen::SanType::URI(s.try_into().unwrap())
    }

    #[test]
    fn a_leaf_naming_a_mesh_identity_in_the_trust_domain_is_that_identity() {
        let cert = leaf(vec![uri("spiffe://td/mesh/m/virtualNode/n")]);
        let peer = leaf_identity(&cert, "td").unwrap();
        assert_eq!(peer.identity.to_string(), "mesh/m/virtualNode/n");
    }

    #[test]
    fn a_leaf_that_names_no_identity_is_refused_with_why() {
        let dns_only = leaf(vec![rcgen::SanType::DnsName(
            "app.local".try_into().unwrap(),
        )]);
        let e = leaf_identity(&dns_only, "td").map(|_| ()).unwrap_err();
        assert!(e.contains("no SPIFFE id in trust domain td"), "{e}");
        let other_domain = leaf(vec![uri("spiffe://elsewhere/mesh/m/virtualNode/n")]);
        let e = leaf_identity(&other_domain, "td").map(|_| ()).unwrap_err();
        assert!(e.contains("no SPIFFE id in trust domain td"), "{e}");
        let none = leaf(Vec::new());
        let e = leaf_identity(&none, "td").map(|_| ()).unwrap_err();
        assert!(e.contains("no subject alternative names"), "{e}");
    }
}
