//! One certificate authority of the appliance's PKI: a root or an intermediate, its
//! certificate and the key that signs with it.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::files::{cert_path, key_path, read, write_atomic};
use super::CaError;

/// Lifetime of a root CA.
pub const ROOT_LIFETIME: Duration = Duration::days(3650);
/// Lifetime of an issuing intermediate. It is rotated well before it runs out.
pub const INTERMEDIATE_LIFETIME: Duration = Duration::days(365);
/// Certificates start this far in the past, so a peer whose clock is a little behind
/// still accepts them.
pub const BACKDATE: Duration = Duration::minutes(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Root,
    Intermediate,
}

/// What `state.json` records of an authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorityRecord {
    pub id: String,
    pub role: Role,
    /// The root that signed an intermediate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// When it stopped signing; `None` while it is the active one of its role.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub retired_at: Option<OffsetDateTime>,
}

/// A loaded authority: its record, certificate, and signing key.
pub struct Authority {
    pub record: AuthorityRecord,
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is never printed.
        f.debug_struct("Authority")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

fn ca_params(
    cn: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    path_len: Option<u8>,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "appliance");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = match path_len {
        Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
        None => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = path_len.is_some();
    params
}

pub fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // a positive INTEGER
    SerialNumber::from_slice(&bytes)
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

impl Authority {
    /// Makes a new self-signed root and writes its files.
    pub fn create_root(dir: &Path, now: OffsetDateTime) -> Result<Authority, CaError> {
        let id = format!("root-{}", short_id());
        let key = KeyPair::generate().map_err(CaError::rcgen)?;
        let params = ca_params(
            format!("appliance root CA {id}"),
            now - BACKDATE,
            now + ROOT_LIFETIME,
            None,
        );
        let cert = params.self_signed(&key).map_err(CaError::rcgen)?;
        let record = AuthorityRecord {
            id,
            role: Role::Root,
            issuer: None,
            not_before: params.not_before,
            not_after: params.not_after,
            retired_at: None,
        };
        Self::persist(dir, record, cert.pem(), key)
    }

    /// Makes a new intermediate signed by `root` and writes its files.
    pub fn create_intermediate(
        dir: &Path,
        root: &Authority,
        now: OffsetDateTime,
    ) -> Result<Authority, CaError> {
        let id = format!("intermediate-{}", short_id());
        let key = KeyPair::generate().map_err(CaError::rcgen)?;
        let not_after = (now + INTERMEDIATE_LIFETIME).min(root.record.not_after);
        let params = ca_params(
            format!("appliance intermediate CA {id}"),
            now - BACKDATE,
            not_after,
            Some(0),
        );
        let cert = params
            .signed_by(&key, &root.issuer)
            .map_err(CaError::rcgen)?;
        let record = AuthorityRecord {
            id,
            role: Role::Intermediate,
            issuer: Some(root.record.id.clone()),
            not_before: params.not_before,
            not_after,
            retired_at: None,
        };
        Self::persist(dir, record, cert.pem(), key)
    }

    fn persist(
        dir: &Path,
        record: AuthorityRecord,
        cert_pem: String,
        key: KeyPair,
    ) -> Result<Authority, CaError> {
        write_atomic(
            &key_path(dir, &record.id),
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
        write_atomic(&cert_path(dir, &record.id), cert_pem.as_bytes(), 0o644)?;
        Self::from_parts(dir, record, cert_pem, key)
    }

    /// Loads an authority's certificate and key from `dir`.
    pub fn load(dir: &Path, record: AuthorityRecord) -> Result<Authority, CaError> {
        let cert_pem = read(&cert_path(dir, &record.id))?;
        let key_file = key_path(dir, &record.id);
        let key = KeyPair::from_pem(&read(&key_file)?).map_err(|e| CaError::Corrupt {
            path: key_file.clone(),
            reason: format!("not a private key: {e}"),
        })?;
        Self::from_parts(dir, record, cert_pem, key)
    }

    fn from_parts(
        dir: &Path,
        record: AuthorityRecord,
        cert_pem: String,
        key: KeyPair,
    ) -> Result<Authority, CaError> {
        use rustls_pki_types::pem::PemObject;
        let path = cert_path(dir, &record.id);
        let cert_der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| CaError::Corrupt {
                path: path.clone(),
                reason: format!("not a PEM certificate: {e}"),
            })?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| CaError::Corrupt {
            path,
            reason: format!("not a CA certificate: {e}"),
        })?;
        Ok(Authority {
            record,
            cert_pem,
            cert_der,
            issuer,
        })
    }

    pub fn is_active(&self) -> bool {
        self.record.retired_at.is_none()
    }
}
