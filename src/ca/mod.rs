//! The private CA: a root and an issuing intermediate made with rcgen, leaves issued from
//! CSRs (the key never leaves the proxy's host), SPIFFE identities, rotation with overlap,
//! revocation, and ACM look-alike ARNs so App Mesh specs that name ACM resources work
//! unchanged. Knows nothing of HTTP or QUIC.

mod authority;
mod files;
mod leaf;
pub mod private;

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use authority::{Authority, AuthorityRecord};
pub use authority::{Role, BACKDATE, INTERMEDIATE_LIFETIME, ROOT_LIFETIME};
pub use leaf::{check_dns_name, IssuedLeaf};

use crate::model::Identity;

/// Default leaf lifetime. Renewal starts at 2/3, so a proxy cut off from the control plane
/// keeps valid certificates for about 8 hours. Shorter: a stolen key dies sooner. Longer:
/// proxies ride out longer outages.
pub const DEFAULT_LEAF_TTL: Duration = Duration::hours(24);
/// Default SPIFFE trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "appliance.local";
/// The folder under the data directory.
pub const CERTS_DIR: &str = "certs";
const STATE_FILE: &str = "state.json";

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A CA file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A CA file exists but does not hold what it should.
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The CSR cannot be parsed or its signature does not verify.
    #[error("certificate signing request: {0}")]
    Csr(String),
    /// The identity was revoked and gets no certificate.
    #[error("identity {0} is revoked and gets no certificate")]
    Revoked(Identity),
    /// An unrevoke of an identity that is not revoked.
    #[error("identity {0} is not revoked")]
    NotRevoked(Identity),
    /// A name cannot go into a certificate.
    #[error("{0}")]
    Name(String),
    /// rcgen refused to build a certificate.
    #[error("certificate generation: {0}")]
    Generate(String),
    /// The CA's directory is a link, another user's, or cannot be created.
    #[error(transparent)]
    Dir(#[from] private::PrivateFsError),
}

impl CaError {
    fn rcgen(e: rcgen::Error) -> CaError {
        CaError::Generate(e.to_string())
    }
}

/// Settings fixed at start.
#[derive(Debug, Clone)]
pub struct CaConfig {
    /// The SPIFFE trust domain of leaf identities.
    pub trust_domain: String,
    /// Region and account written into the CA's and certificates' ARNs.
    pub region: String,
    pub account: String,
    pub leaf_ttl: Duration,
}

/// A certificate requested through `request-certificate`: the names a listener that
/// names its ARN is served with. No key exists for it; each proxy gets a leaf for these
/// names on its own key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRecord {
    pub arn: String,
    pub domain_name: String,
    pub subject_alternative_names: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl CertificateRecord {
    /// Every DNS name the certificate covers, the domain name first.
    pub fn dns_names(&self) -> Vec<String> {
        let mut names = vec![self.domain_name.clone()];
        for n in &self.subject_alternative_names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        names
    }
}

/// Everything in `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    /// The id in the CA's ACM PCA-style ARN; stable across root rotations.
    ca_id: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    authorities: Vec<AuthorityRecord>,
    #[serde(default)]
    certificates: Vec<CertificateRecord>,
    #[serde(default)]
    revoked: Vec<Identity>,
    /// The longest leaf lifetime ever used, so a retiring authority is kept until every
    /// leaf it could have signed has expired.
    max_leaf_ttl_secs: i64,
}

/// One row of the rotation state, for the admin page and `describe-certificate-authority`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorityStatus {
    pub id: String,
    pub role: Role,
    pub status: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// For a retiring authority: when it leaves the trust bundle.
    #[serde(with = "time::serde::rfc3339::option")]
    pub leaves_bundle_at: Option<OffsetDateTime>,
}

/// The CA. Share it behind an `Arc`: issuing takes a read lock, rotation a write lock.
pub struct Ca {
    dir: PathBuf,
    config: CaConfig,
    inner: RwLock<Inner>,
    /// Bumped when the trust bundle or the revocation list changes, so the config push can
    /// hand every proxy the new bundle or close a revoked identity's session.
    changes: tokio::sync::watch::Sender<u64>,
}

struct Inner {
    state: State,
    /// Loaded authorities, oldest first.
    authorities: Vec<Authority>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA from `dir`, or creates a root and an intermediate there on first start.
    pub fn open_or_create(
        dir: &Path,
        config: CaConfig,
        now: OffsetDateTime,
    ) -> Result<Ca, CaError> {
        private::open_private_dir(dir)?;
        let state_path = dir.join(STATE_FILE);
        let ca = if state_path.exists() {
            let text = files::read(&state_path)?;
            let mut state: State = serde_json::from_str(&text).map_err(|e| CaError::Corrupt {
                path: state_path.clone(),
                reason: format!("not CA state: {e}"),
            })?;
            let authorities = state
                .authorities
                .iter()
                .cloned()
                .map(|r| Authority::load(dir, r))
                .collect::<Result<Vec<_>, _>>()?;
            for role in [Role::Root, Role::Intermediate] {
                if !authorities
                    .iter()
                    .any(|a| a.record.role == role && a.is_active())
                {
                    return Err(CaError::Corrupt {
                        path: state_path,
                        reason: format!("no active {role:?} authority"),
                    });
                }
            }
            let ttl = config.leaf_ttl.whole_seconds();
            let grew = ttl > state.max_leaf_ttl_secs;
            state.max_leaf_ttl_secs = state.max_leaf_ttl_secs.max(ttl);
            let ca = Ca {
                dir: dir.to_path_buf(),
                config,
                changes: tokio::sync::watch::channel(0).0,
                inner: RwLock::new(Inner { state, authorities }),
            };
            if grew {
                ca.save(&ca.write())?;
            }
            ca
        } else {
            let root = Authority::create_root(dir, now)?;
            let intermediate = Authority::create_intermediate(dir, &root, now)?;
            let state = State {
                ca_id: uuid::Uuid::new_v4().to_string(),
                created_at: now,
                authorities: vec![root.record.clone(), intermediate.record.clone()],
                certificates: Vec::new(),
                revoked: Vec::new(),
                max_leaf_ttl_secs: config.leaf_ttl.whole_seconds(),
            };
            let ca = Ca {
                dir: dir.to_path_buf(),
                config,
                changes: tokio::sync::watch::channel(0).0,
                inner: RwLock::new(Inner {
                    state,
                    authorities: vec![root, intermediate],
                }),
            };
            ca.save(&ca.write())?;
            tracing::info!(dir = %dir.display(), "created the private CA (root and intermediate)");
            ca
        };
        Ok(ca)
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the state half-written: every change
        // builds new values first and saves them before swapping them in.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn save(&self, inner: &Inner) -> Result<(), CaError> {
        let mut state = inner.state.clone();
        state.authorities = inner.authorities.iter().map(|a| a.record.clone()).collect();
        let text =
            serde_json::to_vec_pretty(&state).map_err(|e| CaError::Generate(e.to_string()))?;
        files::write_atomic(&self.dir.join(STATE_FILE), &text, 0o600)
    }

    /// Fires after every rotation, prune and revocation.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn config(&self) -> &CaConfig {
        &self.config
    }

    /// The CA's ARN, in ACM Private CA's form: what `$ROOT_CA_ARN` is in App Mesh specs.
    pub fn ca_arn(&self) -> String {
        format!(
            "arn:aws:acm-pca:{}:{}:certificate-authority/{}",
            self.config.region,
            self.config.account,
            self.read().state.ca_id
        )
    }

    pub fn is_known_ca_arn(&self, arn: &str) -> bool {
        arn == self.ca_arn()
    }

    pub fn is_known_certificate_arn(&self, arn: &str) -> bool {
        self.certificate(arn).is_some()
    }

    pub fn certificate(&self, arn: &str) -> Option<CertificateRecord> {
        self.read()
            .state
            .certificates
            .iter()
            .find(|c| c.arn == arn)
            .cloned()
    }

    /// Records a certificate for `domain_name` (and extra names), as ACM's RequestCertificate
    /// would, and returns its ARN.
    pub fn request_certificate(
        &self,
        domain_name: &str,
        sans: &[String],
        now: OffsetDateTime,
    ) -> Result<String, CaError> {
        for name in std::iter::once(domain_name).chain(sans.iter().map(String::as_str)) {
            leaf::check_dns_name(name)?;
        }
        let mut inner = self.write();
        let arn = format!(
            "arn:aws:acm:{}:{}:certificate/{}",
            self.config.region,
            self.config.account,
            uuid::Uuid::new_v4()
        );
        inner.state.certificates.push(CertificateRecord {
            arn: arn.clone(),
            domain_name: domain_name.to_owned(),
            subject_alternative_names: sans.to_vec(),
            created_at: now,
        });
        if let Err(e) = self.save(&inner) {
            inner.state.certificates.pop();
            return Err(e);
        }
        Ok(arn)
    }

    /// The trust bundle: every root and intermediate not yet retired out, roots first.
    pub fn bundle_pem(&self) -> String {
        let inner = self.read();
        let mut out = String::new();
        for role in [Role::Root, Role::Intermediate] {
            for a in inner.authorities.iter().filter(|a| a.record.role == role) {
                out.push_str(&a.cert_pem);
                if !a.cert_pem.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
        out
    }

    /// The roots clients should trust, DER.
    pub fn root_certs(&self) -> Vec<rustls_pki_types::CertificateDer<'static>> {
        self.read()
            .authorities
            .iter()
            .filter(|a| a.record.role == Role::Root)
            .map(|a| a.cert_der.clone())
            .collect()
    }

    /// SHA-256 of the active root's DER: what join tokens pin.
    pub fn root_fingerprint(&self) -> [u8; 32] {
        let inner = self.read();
        let root = inner
            .authorities
            .iter()
            .rev()
            .find(|a| a.record.role == Role::Root && a.is_active())
            .expect("open_or_create guarantees an active root");
        Sha256::digest(root.cert_der.as_ref()).into()
    }

    /// What `issue_leaf` would refuse, checked without signing anything: a CSR that does
    /// not parse, or a revoked identity. Enrolment runs this before it spends a join token.
    pub fn check_enrolment(&self, identity: &Identity, csr_pem: &str) -> Result<(), CaError> {
        if self.read().state.revoked.contains(identity) {
            return Err(CaError::Revoked(identity.clone()));
        }
        rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map(|_| ())
            .map_err(|e| CaError::Csr(e.to_string()))
    }

    /// Issues a leaf for `identity` on the CSR's public key. The CA decides every name: the
    /// SPIFFE id plus `dns_names`; whatever the CSR asks for is ignored.
    pub fn issue_leaf(
        &self,
        identity: &Identity,
        csr_pem: &str,
        dns_names: &[String],
        now: OffsetDateTime,
    ) -> Result<IssuedLeaf, CaError> {
        let inner = self.read();
        if inner.state.revoked.contains(identity) {
            return Err(CaError::Revoked(identity.clone()));
        }
        let issuer = active(&inner, Role::Intermediate);
        leaf::issue(issuer, csr_pem, identity, &self.config, dns_names, now)
    }

    /// A certificate and key for the control plane's own listeners (API over TLS, QUIC sync).
    /// The key is made here, in the control plane's process, and never leaves it.
    pub fn issue_server_cert(
        &self,
        dns_names: &[String],
        ips: &[std::net::IpAddr],
        now: OffsetDateTime,
    ) -> Result<(String, String), CaError> {
        let inner = self.read();
        leaf::issue_server(
            active(&inner, Role::Intermediate),
            dns_names,
            ips,
            &self.config,
            now,
        )
    }

    /// Starts a new intermediate. It is in the bundle before it signs anything; the old one
    /// stays until every leaf it signed has expired (see `prune`).
    pub fn rotate_intermediate(&self, now: OffsetDateTime) -> Result<(), CaError> {
        let mut inner = self.write();
        let root_idx = active_index(&inner, Role::Root);
        let fresh = Authority::create_intermediate(&self.dir, &inner.authorities[root_idx], now)?;
        let old = active_index(&inner, Role::Intermediate);
        inner.authorities[old].record.retired_at = Some(now);
        inner.authorities.push(fresh);
        self.save(&inner)?;
        tracing::info!("rotated the issuing intermediate");
        self.changes.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Starts a new root and a new intermediate under it; the old pair stays trusted until
    /// the old intermediate's leaves have expired.
    pub fn rotate_root(&self, now: OffsetDateTime) -> Result<(), CaError> {
        let mut inner = self.write();
        let root = Authority::create_root(&self.dir, now)?;
        let intermediate = Authority::create_intermediate(&self.dir, &root, now)?;
        for a in inner.authorities.iter_mut().filter(|a| a.is_active()) {
            a.record.retired_at = Some(now);
        }
        inner.authorities.push(root);
        inner.authorities.push(intermediate);
        self.save(&inner)?;
        tracing::info!("rotated the root CA");
        self.changes.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Drops retired authorities whose leaves have all expired; returns how many went.
    pub fn prune(&self, now: OffsetDateTime) -> Result<usize, CaError> {
        let mut inner = self.write();
        let keep_for = Duration::seconds(inner.state.max_leaf_ttl_secs) + BACKDATE;
        let expired = |r: &AuthorityRecord| r.retired_at.is_some_and(|at| now > at + keep_for);
        let before = inner.authorities.len();
        let gone_intermediates: Vec<String> = inner
            .authorities
            .iter()
            .filter(|a| a.record.role == Role::Intermediate && expired(&a.record))
            .map(|a| a.record.id.clone())
            .collect();
        inner
            .authorities
            .retain(|a| !gone_intermediates.contains(&a.record.id));
        // A retired root goes once no intermediate it signed is left.
        let still_used: Vec<String> = inner
            .authorities
            .iter()
            .filter_map(|a| a.record.issuer.clone())
            .collect();
        inner.authorities.retain(|a| {
            !(a.record.role == Role::Root
                && expired(&a.record)
                && !still_used.contains(&a.record.id))
        });
        let removed = before - inner.authorities.len();
        if removed > 0 {
            self.save(&inner)?;
            tracing::info!(removed, "retired authorities left the trust bundle");
            self.changes.send_modify(|v| *v += 1);
        }
        Ok(removed)
    }

    /// Rotates what is close to expiry and prunes what is done; for a periodic task.
    pub fn maintain(&self, now: OffsetDateTime) -> Result<(), CaError> {
        let margin =
            Duration::seconds(self.read().state.max_leaf_ttl_secs) * 2 + Duration::days(30);
        let (root_end, intermediate_end) = {
            let inner = self.read();
            (
                active(&inner, Role::Root).record.not_after,
                active(&inner, Role::Intermediate).record.not_after,
            )
        };
        if root_end - now < margin {
            self.rotate_root(now)?;
        } else if intermediate_end - now < margin {
            self.rotate_intermediate(now)?;
        }
        self.prune(now)?;
        Ok(())
    }

    /// Revokes an identity: it gets no new certificate from now on.
    pub fn revoke_identity(&self, identity: &Identity) -> Result<(), CaError> {
        let mut inner = self.write();
        if inner.state.revoked.contains(identity) {
            return Ok(());
        }
        inner.state.revoked.push(identity.clone());
        if let Err(e) = self.save(&inner) {
            inner.state.revoked.pop();
            return Err(e);
        }
        tracing::info!(%identity, "identity revoked");
        self.changes.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Lifts a revocation: the identity may enrol (with a new join token) and renew again.
    pub fn unrevoke_identity(&self, identity: &Identity) -> Result<(), CaError> {
        let mut inner = self.write();
        let Some(at) = inner.state.revoked.iter().position(|i| i == identity) else {
            return Err(CaError::NotRevoked(identity.clone()));
        };
        let removed = inner.state.revoked.remove(at);
        if let Err(e) = self.save(&inner) {
            inner.state.revoked.insert(at, removed);
            return Err(e);
        }
        tracing::info!(%identity, "identity revocation lifted");
        self.changes.send_modify(|v| *v += 1);
        Ok(())
    }

    pub fn is_revoked(&self, identity: &Identity) -> bool {
        self.read().state.revoked.contains(identity)
    }

    pub fn revoked(&self) -> Vec<Identity> {
        self.read().state.revoked.clone()
    }

    /// Every authority with its role, state and expiry.
    pub fn status(&self) -> Vec<AuthorityStatus> {
        self.status_of(&self.read())
    }

    /// The CA in ACM PCA's DescribeCertificateAuthority shape.
    pub fn describe_certificate_authority(&self) -> Value {
        let arn = self.ca_arn();
        let inner = self.read();
        let root = active(&inner, Role::Root);
        let epoch = |t: OffsetDateTime| t.unix_timestamp() as f64;
        let serial = x509_parser::parse_x509_certificate(root.cert_der.as_ref())
            .map(|(_, c)| c.raw_serial_as_string())
            .unwrap_or_default();
        json!({
            "CertificateAuthority": {
                "Arn": arn,
                "OwnerAccount": self.config.account,
                "CreatedAt": epoch(inner.state.created_at),
                "LastStateChangeAt": epoch(inner.authorities.iter().map(|a| a.record.not_before).max().unwrap_or(inner.state.created_at)),
                "Type": "ROOT",
                "Serial": serial,
                "Status": "ACTIVE",
                "NotBefore": epoch(root.record.not_before),
                "NotAfter": epoch(root.record.not_after),
                "CertificateAuthorityConfiguration": {
                    "KeyAlgorithm": "EC_prime256v1",
                    "SigningAlgorithm": "SHA256WITHECDSA",
                    "Subject": { "Organization": "appliance", "CommonName": format!("appliance root CA {}", root.record.id) }
                },
                "UsageMode": "SHORT_LIVED_CERTIFICATE",
                "TrustDomain": self.config.trust_domain,
                "Authorities": serde_json::to_value(self.status_of(&inner)).unwrap_or(Value::Null),
            }
        })
    }

    fn status_of(&self, inner: &Inner) -> Vec<AuthorityStatus> {
        let keep_for = Duration::seconds(inner.state.max_leaf_ttl_secs) + BACKDATE;
        inner
            .authorities
            .iter()
            .map(|a| AuthorityStatus {
                id: a.record.id.clone(),
                role: a.record.role,
                status: if a.is_active() { "ACTIVE" } else { "RETIRING" },
                not_after: a.record.not_after,
                leaves_bundle_at: a.record.retired_at.map(|at| at + keep_for),
            })
            .collect()
    }
}

fn active_index(inner: &Inner, role: Role) -> usize {
    inner
        .authorities
        .iter()
        .rposition(|a| a.record.role == role && a.is_active())
        .expect("open_or_create guarantees an active authority of each role")
}

fn active(inner: &Inner, role: Role) -> &Authority {
    &inner.authorities[active_index(inner, role)]
}

#[cfg(test)]
mod tests;
