//! Leaves from an appliance CA opened through the library, on keys made here, written to
//! the `--credentials-dir` layout proxies read (`cert.pem`, `key.pem`, `ca.pem`).

use std::path::{Path, PathBuf};

use appliance::ca::{Ca, CaConfig, DEFAULT_TRUST_DOMAIN};
use appliance::model::Identity;

pub struct Pki {
    pub ca: Ca,
}

impl Pki {
    /// The CA in `dir`, created there on first use.
    pub fn open(dir: &Path) -> Pki {
        let config = CaConfig {
            trust_domain: DEFAULT_TRUST_DOMAIN.into(),
            region: "us-east-1".into(),
            account: "000000000000".into(),
            leaf_ttl: time::Duration::hours(24),
        };
        let ca = Ca::open_or_create(dir, config, time::OffsetDateTime::now_utc()).expect("CA");
        Pki { ca }
    }

    /// A chain and key for `identity`, with `dns` names besides its SPIFFE id.
    pub fn leaf(&self, identity: &str, dns: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let names: Vec<String> = dns.iter().map(|s| s.to_string()).collect();
        let leaf = self
            .ca
            .issue_leaf(
                &Identity::parse(identity).unwrap(),
                &csr,
                &names,
                time::OffsetDateTime::now_utc(),
            )
            .unwrap();
        (leaf.chain_pem, key.serialize_pem())
    }

    /// A fresh credentials directory under `root` for `identity`.
    pub fn credentials(&self, root: &Path, identity: &str, dns: &[&str]) -> PathBuf {
        let dir = root.join(identity.replace('/', "_"));
        std::fs::create_dir_all(&dir).unwrap();
        let (chain, key) = self.leaf(identity, dns);
        write_credentials(&dir, Some((&chain, &key)), Some(&self.ca.bundle_pem()));
        dir
    }
}

/// Replaces `path` in one step, so a proxy polling it never reads half a file.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub fn write_credentials(dir: &Path, leaf: Option<(&str, &str)>, bundle: Option<&str>) {
    if let Some(b) = bundle {
        write_atomic(&dir.join("ca.pem"), b);
    }
    if let Some((chain, key)) = leaf {
        write_atomic(&dir.join("key.pem"), key);
        write_atomic(&dir.join("cert.pem"), chain);
    }
}

pub fn spiffe(identity: &str) -> String {
    format!("spiffe://{DEFAULT_TRUST_DOMAIN}/{identity}")
}
