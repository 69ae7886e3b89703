//! App Mesh's TLS shapes (listener `tls`, client policy `tls`) turned into the proxy's
//! sources. An `acm` or `sds` certificate is the proxy's own leaf, and `acm` or `sds` trust is
//! the appliance CA's bundle: the API has already refused ARNs that are not the appliance's.

use super::config::{
    CertificateSource, ClientTlsConfig, ListenerTlsConfig, PeerName, ServerCheck, TrustSource,
    ValidationConfig,
};
use crate::model::spec::{
    ClientPolicyTls, ClientTlsCertificate, ListenerTls, ListenerTlsCertificate, ListenerTlsMode,
    ListenerTlsValidationContextTrust, SubjectAlternativeNames, TlsValidationContextTrust,
};

pub(super) fn listener(tls: &ListenerTls) -> ListenerTlsConfig {
    ListenerTlsConfig {
        mode: tls.mode,
        certificate: match &tls.certificate {
            ListenerTlsCertificate::Acm(_) | ListenerTlsCertificate::Sds(_) => {
                CertificateSource::Own
            }
            ListenerTlsCertificate::File(f) => CertificateSource::File {
                chain: f.certificate_chain.clone(),
                key: f.private_key.clone(),
            },
        },
        validation: tls.validation.as_ref().map(|v| ValidationConfig {
            trust: match &v.trust {
                ListenerTlsValidationContextTrust::Sds(_) => TrustSource::Own,
                ListenerTlsValidationContextTrust::File(f) => TrustSource::File {
                    path: f.certificate_chain.clone(),
                },
            },
            subject_alternative_names: sans(v.subject_alternative_names.as_ref()),
        }),
    }
}

/// The policy's TLS settings; the caller has checked `enforce` and `ports`. `expected` is
/// checked when the policy names no SANs.
pub(super) fn client(policy: &ClientPolicyTls, expected: PeerName) -> ClientTlsConfig {
    ClientTlsConfig {
        certificate: policy.certificate.as_ref().map(|c| match c {
            ClientTlsCertificate::Sds(_) => CertificateSource::Own,
            ClientTlsCertificate::File(f) => CertificateSource::File {
                chain: f.certificate_chain.clone(),
                key: f.private_key.clone(),
            },
        }),
        server: ServerCheck::Verify {
            validation: ValidationConfig {
                trust: match &policy.validation.trust {
                    TlsValidationContextTrust::Acm(_) | TlsValidationContextTrust::Sds(_) => {
                        TrustSource::Own
                    }
                    TlsValidationContextTrust::File(f) => TrustSource::File {
                        path: f.certificate_chain.clone(),
                    },
                },
                subject_alternative_names: sans(
                    policy.validation.subject_alternative_names.as_ref(),
                ),
            },
            expected,
        },
    }
}

/// With no client policy for the server's port, App Mesh still negotiates TLS with a
/// STRICT or PERMISSIVE listener: validating against the CA of an ACM certificate (here an
/// `acm` or `sds` certificate is the server's own leaf, so the appliance CA's bundle), and
/// not validating a `file` certificate. No client certificate is offered.
pub(super) fn negotiated(server: &ListenerTls, expected: PeerName) -> Option<ClientTlsConfig> {
    if server.mode == ListenerTlsMode::Disabled {
        return None;
    }
    let server = match &server.certificate {
        ListenerTlsCertificate::Acm(_) | ListenerTlsCertificate::Sds(_) => ServerCheck::Verify {
            validation: ValidationConfig {
                trust: TrustSource::Own,
                subject_alternative_names: Vec::new(),
            },
            expected,
        },
        ListenerTlsCertificate::File(_) => ServerCheck::Unverified,
    };
    Some(ClientTlsConfig {
        certificate: None,
        server,
    })
}

/// Sorted and deduplicated, so equal policies compile to equal configs.
fn sans(sans: Option<&SubjectAlternativeNames>) -> Vec<String> {
    let mut out: Vec<String> = sans.map(|s| s.r#match.exact.clone()).unwrap_or_default();
    out.sort();
    out.dedup();
    out
}
