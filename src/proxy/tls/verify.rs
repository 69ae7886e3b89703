//! What rustls calls during a handshake: certificate resolvers and peer verifiers that read
//! the current value of a slot on every handshake, so a renewed certificate or a rotated
//! trust bundle applies to the next connection without rebuilding any config.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::{CertSlot, TrustSlot};
use crate::compile::PeerName;

/// The handshake-signature half of a verifier, the same for every verifier here: checked
/// with `self.provider`'s algorithms.
macro_rules! signatures_by_provider {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
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
        ) -> Result<HandshakeSignatureValid, Error> {
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
    };
}

// === impl CertSlot as a resolver ===

/// Serves the slot's current certificate; none (not loaded yet) fails the handshake, which
/// the listener has already logged and counted before getting here.
#[derive(Debug)]
pub(super) struct SlotServerCert(pub Arc<CertSlot>);

impl ResolvesServerCert for SlotServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current()
    }
}

#[derive(Debug)]
pub(super) struct SlotClientCert(pub Arc<CertSlot>);

impl ResolvesClientCert for SlotClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.current()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

// === impl PeerVerifier ===

/// Checks a peer's chain against a trust slot's current roots, then its names against the
/// policy's exact SANs. Used both ways: a listener checking clients (mutual TLS) and an
/// upstream connection checking servers.
#[derive(Debug)]
pub(super) struct PeerVerifier {
    pub trust: Arc<TrustSlot>,
    /// Exact DNS or URI names; empty accepts `expected`, or with none any name (App Mesh's
    /// listener validation: trust only).
    pub sans: Vec<String>,
    /// What a server must be named when `sans` is empty (App Mesh: its service-discovery
    /// name); none on a listener checking its clients.
    pub expected: Option<PeerName>,
    /// Identities (`mesh/M/virtualNode/N`) whose certificates are refused: revoked by the
    /// control plane, their leaves not expired yet.
    pub revoked: Arc<super::revoked::Revocations>,
    pub provider: Arc<CryptoProvider>,
}

impl PeerVerifier {
    fn check_sans(&self, end_entity: &CertificateDer<'_>) -> Result<(), Error> {
        let names = peer_names(end_entity);
        if self.revoked.names_revoked(&names) {
            return Err(Error::InvalidCertificate(CertificateError::Revoked));
        }
        let ok = match (&self.sans[..], &self.expected) {
            ([], None) => true,
            ([], Some(expected)) => names.iter().any(|n| names_peer(n, expected)),
            (sans, _) => names
                .iter()
                .any(|n| sans.iter().any(|want| san_is(n, want))),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
        }
    }
}

/// Whether a certificate SAN (`peer_names` form: a URI or a DNS name) is the expected
/// server name.
fn names_peer(san: &str, expected: &PeerName) -> bool {
    match expected {
        PeerName::Dns(want) => !san.contains("://") && dns_matches(san, want),
        PeerName::Node { mesh, node } => san
            .strip_prefix("spiffe://")
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(_, path)| path == format!("mesh/{mesh}/virtualNode/{node}")),
    }
}

/// A policy's exact SAN against a certificate's: URIs compare as strings, DNS names by
/// certificate name rules (Envoy's exact matcher on a DNS SAN does the same).
fn san_is(san: &str, want: &str) -> bool {
    if san.contains("://") || want.contains("://") {
        san == want
    } else {
        dns_matches(san, want)
    }
}

/// Whether the certificate's DNS name `pattern` covers `name`, as Envoy matches: case does
/// not matter, and one `*` may stand in the leftmost label only, for at least one character
/// (`*.a.com` covers `x.a.com`, not `a.com` or `y.x.a.com`; `f*.a.com` covers `fx.a.com`;
/// never inside an `xn--` label).
fn dns_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    if !pattern.contains('*') {
        return pattern == name;
    }
    let (Some((plabel, prest)), Some((nlabel, nrest))) =
        (pattern.split_once('.'), name.split_once('.'))
    else {
        return false;
    };
    if prest.contains('*') || prest.is_empty() || prest != nrest {
        return false;
    }
    let Some((pre, post)) = plabel.split_once('*') else {
        return false;
    };
    if post.contains('*') || (plabel != "*" && plabel.starts_with("xn--")) {
        return false;
    }
    nlabel.len() > pre.len() + post.len() && nlabel.starts_with(pre) && nlabel.ends_with(post)
}

/// Accepts any server certificate (its handshake signature is still checked): App Mesh's
/// TLS toward a listener that serves a `file` certificate when no client policy applies.
#[derive(Debug)]
pub(super) struct AnyServerCert {
    pub provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    signatures_by_provider!();
}

impl ServerCertVerifier for PeerVerifier {
    /// The chain must lead to the trust; the host name is not checked against the endpoint
    /// (endpoints are often addresses), only the policy's SANs are, as App Mesh does.
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let trust = self
            .trust
            .current()
            .ok_or_else(|| Error::General(format!("{} is not loaded", self.trust.what)))?;
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &trust.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        self.check_sans(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    signatures_by_provider!();
}

impl ClientCertVerifier for PeerVerifier {
    /// No CA names are sent: the current roots live behind a swap and the hint is optional.
    /// Clients then offer whatever certificate they have.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let trust = self
            .trust
            .current()
            .ok_or_else(|| Error::General(format!("{} is not loaded", self.trust.what)))?;
        trust
            .clients
            .verify_client_cert(end_entity, intermediates, now)?;
        self.check_sans(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    signatures_by_provider!();
}

// === peer names ===

/// The certificate's URI and DNS SANs, URIs (SPIFFE ids) first. Unparsable: none.
pub(super) fn peer_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::URI(u) => uris.push((*u).to_owned()),
            GeneralName::DNSName(d) => dns.push((*d).to_owned()),
            _ => {}
        }
    }
    uris.extend(dns);
    uris
}

/// The label a peer is counted under: its first URI SAN (the SPIFFE id), else its first
/// DNS SAN; `none` when it sent no certificate.
pub(super) fn peer_identity(chain: Option<&[CertificateDer<'_>]>) -> String {
    chain
        .and_then(|c| c.first())
        .and_then(|c| peer_names(c).into_iter().next())
        .unwrap_or_else(|| "none".to_owned())
}

/// A short, bounded label for why a handshake failed, for the failure counters.
pub(super) fn failure_reason(e: &Error) -> String {
    match e {
        Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => "unknown_ca",
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "san_mismatch"
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => "expired",
            CertificateError::Revoked => "revoked",
            _ => "bad_certificate",
        }
        .to_owned(),
        Error::NoCertificatesPresented => "no_peer_certificate".to_owned(),
        Error::AlertReceived(a) => format!("peer_alert_{a:?}").to_lowercase(),
        Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => "not_tls".to_owned(),
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => "protocol".to_owned(),
        Error::PeerIncompatible(_) => "incompatible".to_owned(),
        Error::PeerMisbehaved(_) => "protocol".to_owned(),
        _ => "other".to_owned(),
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if that is what it carries.
pub(super) fn rustls_error(e: &std::io::Error) -> Option<&Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn a_wildcard_san_covers_one_leftmost_label() {
        assert!(dns_matches("*.apps.local", "a.apps.local"));
        assert!(dns_matches("*.Apps.Local", "A.apps.local"));
        assert!(!dns_matches("*.apps.local", "apps.local"));
        assert!(!dns_matches("*.apps.local", "a.b.apps.local"));
        assert!(dns_matches("f*.apps.local", "fx.apps.local"));
        assert!(!dns_matches("f*.apps.local", "f.apps.local"));
        assert!(!dns_matches("a.*.local", "a.b.local"));
        assert!(!dns_matches("xn--*.apps.local", "xn--a.apps.local"));
        assert!(dns_matches("white.apps.local", "WHITE.apps.local"));
    }

    #[test]
    fn the_expected_name_is_a_dns_san_or_the_nodes_spiffe_path() {
        let dns = PeerName::Dns("white.local".into());
        assert!(names_peer("white.local", &dns));
        assert!(!names_peer("spiffe://white.local", &dns));
        let node = PeerName::Node {
            mesh: "m".into(),
            node: "white".into(),
        };
        assert!(names_peer(
            "spiffe://appliance.local/mesh/m/virtualNode/white",
            &node
        ));
        assert!(!names_peer(
            "spiffe://appliance.local/mesh/m/virtualNode/black",
            &node
        ));
        assert!(!names_peer(
            "spiffe://appliance.local/mesh/m/virtualGateway/white",
            &node
        ));
    }

    #[test]
    fn a_policys_exact_dns_san_matches_a_wildcard_certificate_and_uris_exactly() {
        assert!(san_is("*.apps.local", "white.apps.local"));
        assert!(
            !san_is("white.apps.local", "*.apps.local"),
            "the policy's name is exact"
        );
        assert!(san_is(
            "spiffe://d/mesh/m/virtualNode/a",
            "spiffe://d/mesh/m/virtualNode/a"
        ));
        assert!(!san_is(
            "spiffe://d/mesh/m/virtualNode/a",
            "spiffe://D/mesh/m/virtualNode/a"
        ));
    }
}
