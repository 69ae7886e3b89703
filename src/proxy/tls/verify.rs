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
    /// Exact DNS or URI names; empty accepts any name (App Mesh: trust only).
    pub sans: Vec<String>,
    pub provider: Arc<CryptoProvider>,
}

impl PeerVerifier {
    fn check_sans(&self, end_entity: &CertificateDer<'_>) -> Result<(), Error> {
        if self.sans.is_empty() {
            return Ok(());
        }
        if peer_names(end_entity)
            .iter()
            .any(|n| self.sans.iter().any(|want| want == n))
        {
            Ok(())
        } else {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
        }
    }
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
