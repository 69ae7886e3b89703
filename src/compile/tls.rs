//! App Mesh's TLS shapes (listener `tls`, client policy `tls`) turned into the proxy's
//! sources. An `acm` or `sds` certificate is the proxy's own leaf, and `acm` or `sds` trust is
//! the appliance CA's bundle: the API has already refused ARNs that are not the appliance's.

use super::config::{
    CertificateSource, ClientTlsConfig, ListenerTlsConfig, TrustSource, ValidationConfig,
};
use crate::model::spec::{
    ClientPolicyTls, ClientTlsCertificate, ListenerTls, ListenerTlsCertificate,
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

/// The policy's TLS settings; the caller has checked `enforce` and `ports`.
pub(super) fn client(policy: &ClientPolicyTls) -> ClientTlsConfig {
    ClientTlsConfig {
        certificate: policy.certificate.as_ref().map(|c| match c {
            ClientTlsCertificate::Sds(_) => CertificateSource::Own,
            ClientTlsCertificate::File(f) => CertificateSource::File {
                chain: f.certificate_chain.clone(),
                key: f.private_key.clone(),
            },
        }),
        validation: ValidationConfig {
            trust: match &policy.validation.trust {
                TlsValidationContextTrust::Acm(_) | TlsValidationContextTrust::Sds(_) => {
                    TrustSource::Own
                }
                TlsValidationContextTrust::File(f) => TrustSource::File {
                    path: f.certificate_chain.clone(),
                },
            },
            subject_alternative_names: sans(policy.validation.subject_alternative_names.as_ref()),
        },
    }
}

/// Sorted and deduplicated, so equal policies compile to equal configs.
fn sans(sans: Option<&SubjectAlternativeNames>) -> Vec<String> {
    let mut out: Vec<String> = sans.map(|s| s.r#match.exact.clone()).unwrap_or_default();
    out.sort();
    out.dedup();
    out
}
