//! Leaf certificates: for proxies from their CSRs, and for the control plane's own listeners.

use std::net::IpAddr;

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use super::authority::{random_serial, Authority, BACKDATE};
use super::{CaConfig, CaError};
use crate::model::Identity;

/// A leaf and what the proxy needs with it.
#[derive(Debug, Clone)]
pub struct IssuedLeaf {
    /// Leaf first, then the intermediate.
    pub chain_pem: String,
    pub not_after: OffsetDateTime,
}

/// DNS names as certificates carry them: ASCII, at most 253 characters, an optional
/// leading `*.` wildcard label.
pub fn check_dns_name(name: &str) -> Result<(), CaError> {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    let ok = !bare.is_empty()
        && name.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(CaError::Name(format!(
            "{name:?} is not a DNS name a certificate can carry"
        )))
    }
}

fn leaf_params(
    cn: &str,
    sans: Vec<SanType>,
    issuer: &Authority,
    ttl: time::Duration,
    now: OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "appliance");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = now - BACKDATE;
    // Never outlive the issuer: a chain with an expired intermediate fails anyway.
    params.not_after = (now + ttl).min(issuer.record.not_after);
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    params
}

fn dns_sans(names: &[String]) -> Result<Vec<SanType>, CaError> {
    names
        .iter()
        .map(|n| {
            check_dns_name(n)?;
            let ia5 = n
                .clone()
                .try_into()
                .map_err(|e| CaError::Name(format!("{n:?}: {e}")))?;
            Ok(SanType::DnsName(ia5))
        })
        .collect()
}

fn chain(leaf_pem: String, issuer: &Authority) -> String {
    let mut chain = leaf_pem;
    if !chain.ends_with('\n') {
        chain.push('\n');
    }
    chain.push_str(&issuer.cert_pem);
    chain
}

pub(super) fn issue(
    issuer: &Authority,
    csr_pem: &str,
    identity: &Identity,
    config: &CaConfig,
    dns_names: &[String],
    now: OffsetDateTime,
) -> Result<IssuedLeaf, CaError> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| CaError::Csr(e.to_string()))?;
    let spiffe = identity.spiffe_id(&config.trust_domain);
    let mut sans = vec![SanType::URI(
        spiffe
            .clone()
            .try_into()
            .map_err(|e| CaError::Name(format!("{spiffe}: {e}")))?,
    )];
    let mut unique: Vec<String> = Vec::new();
    for n in dns_names {
        if !unique.contains(n) {
            unique.push(n.clone());
        }
    }
    sans.extend(dns_sans(&unique)?);
    let params = leaf_params(identity.name.as_str(), sans, issuer, config.leaf_ttl, now);
    let cert = params
        .signed_by(&csr.public_key, &issuer.issuer)
        .map_err(CaError::rcgen)?;
    Ok(IssuedLeaf {
        chain_pem: chain(cert.pem(), issuer),
        not_after: params.not_after,
    })
}

pub(super) fn issue_server(
    issuer: &Authority,
    dns_names: &[String],
    ips: &[IpAddr],
    config: &CaConfig,
    now: OffsetDateTime,
) -> Result<(String, String), CaError> {
    let key = KeyPair::generate().map_err(CaError::rcgen)?;
    let mut sans = dns_sans(dns_names)?;
    sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let cn = dns_names
        .first()
        .cloned()
        .unwrap_or_else(|| "appliance control plane".to_owned());
    // The control plane renews its own certificate on restart and by its maintenance task,
    // so it uses the leaf lifetime too.
    let params = leaf_params(&cn, sans, issuer, config.leaf_ttl, now);
    let cert = params
        .signed_by(&key, &issuer.issuer)
        .map_err(CaError::rcgen)?;
    Ok((chain(cert.pem(), issuer), key.serialize_pem()))
}
