//! A proxy's state directory: its key and certificate (so it restarts without a token), the
//! CA bundle it trusts, and the last config it applied (so it serves while the control plane
//! is away). Every file is written to a temporary name, synced and renamed, mode 0600.
//!
//! ```text
//! DIR/identity     mesh/M/virtualNode/N: a state dir belongs to one identity
//! DIR/key.pem      the proxy's private key, made on this host
//! DIR/cert.pem     its certificate chain, leaf first
//! DIR/ca.pem       the CA bundle
//! DIR/config.json  the last config acked, as ProxyConfig JSON
//! ```

use std::path::{Path, PathBuf};

use crate::compile::ProxyConfig;
use crate::model::Identity;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct CacheError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The key, chain and bundle a proxy uses, as PEM: for the sync channel's mTLS and for the
/// data plane's TLS alike.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Leaf first, then its intermediates.
    pub chain_pem: String,
    /// PKCS#8, SEC1 or PKCS#1.
    pub key_pem: String,
    /// The CA's roots and intermediates: what an `acm` trust naming the appliance CA means.
    pub trust_bundle_pem: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens (creating, 0700) the directory, and claims it for `identity`: a directory that
    /// belongs to another identity is refused rather than silently mixed.
    pub fn open(dir: &Path, identity: &Identity) -> Result<StateDir, String> {
        crate::ca::private::open_private_dir(dir).map_err(|e| e.to_string())?;
        let s = StateDir {
            dir: dir.to_path_buf(),
        };
        let path = s.path("identity");
        // Every file the proxy reads back must be a real file of its own: a link could
        // feed it another key, or (below) get a file's text printed in an error.
        for name in ["identity", "key.pem", "cert.pem", "ca.pem", "config.json"] {
            crate::ca::private::refuse_link(&s.path(name)).map_err(|e| e.to_string())?;
        }
        match std::fs::read_to_string(&path) {
            Ok(owner) if owner.trim() == identity.to_string() => {}
            Ok(owner) => {
                // Shown only if it is an identity: the file is ours, but its text is not
                // echoed blindly.
                let owner = Identity::parse(owner.trim()).map_or_else(
                    |_| "something that is not an identity".to_owned(),
                    |i| i.to_string(),
                );
                return Err(format!(
                    "{} belongs to {owner}, not {identity}; use another --state-dir",
                    dir.display(),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_atomic(&path, identity.to_string().as_bytes()).map_err(|e| e.to_string())?
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        Ok(s)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The saved credentials, if enrolment has happened. A partial set (a crash between
    /// writes) counts as none, so the proxy enrols again.
    pub fn credentials(&self) -> Option<Credentials> {
        let read = |n: &str| std::fs::read_to_string(self.path(n)).ok();
        Some(Credentials {
            chain_pem: read("cert.pem")?,
            key_pem: read("key.pem")?,
            trust_bundle_pem: read("ca.pem")?,
        })
    }

    pub fn save_credentials(&self, c: &Credentials) -> Result<(), CacheError> {
        // The key first: a chain without its key is useless, a key without its chain only
        // means enrolling again.
        write_atomic(&self.path("key.pem"), c.key_pem.as_bytes())?;
        write_atomic(&self.path("ca.pem"), c.trust_bundle_pem.as_bytes())?;
        write_atomic(&self.path("cert.pem"), c.chain_pem.as_bytes())
    }

    pub fn save_bundle(&self, bundle_pem: &str) -> Result<(), CacheError> {
        write_atomic(&self.path("ca.pem"), bundle_pem.as_bytes())
    }

    /// The last good config. A file that does not parse or check is reported and ignored:
    /// the proxy then waits for the control plane instead of running something broken.
    pub fn config(&self) -> Option<Result<ProxyConfig, String>> {
        let path = self.path("config.json");
        let text = std::fs::read_to_string(&path).ok()?;
        Some(ProxyConfig::from_json(&text).map_err(|e| format!("{}: {e}", path.display())))
    }

    pub fn save_config(&self, config_json: &str) -> Result<(), CacheError> {
        write_atomic(&self.path("config.json"), config_json.as_bytes())
    }
}

/// Every file in the state dir is 0600, written whole (the last good config must survive a
/// crash mid-write).
fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), CacheError> {
    crate::files::write_atomic(path, contents, 0o600).map_err(|source| CacheError {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_dir_belongs_to_one_identity() {
        let d = tempfile::tempdir().unwrap();
        let a = Identity::parse("mesh/m/virtualNode/a").unwrap();
        let b = Identity::parse("mesh/m/virtualNode/b").unwrap();
        StateDir::open(d.path(), &a).unwrap();
        StateDir::open(d.path(), &a).unwrap();
        let e = StateDir::open(d.path(), &b).err().unwrap();
        assert!(e.contains("belongs to mesh/m/virtualNode/a"), "{e}");
    }

    #[test]
    fn credentials_are_all_or_nothing_and_private() {
        let d = tempfile::tempdir().unwrap();
        let s =
            StateDir::open(d.path(), &Identity::parse("mesh/m/virtualNode/a").unwrap()).unwrap();
        assert!(s.credentials().is_none());
        let c = Credentials {
            chain_pem: "c".into(),
            key_pem: "k".into(),
            trust_bundle_pem: "b".into(),
        };
        s.save_credentials(&c).unwrap();
        assert_eq!(s.credentials(), Some(c));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.path().join("key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_file(d.path().join("cert.pem")).unwrap();
        assert!(s.credentials().is_none());
    }

    #[test]
    fn a_corrupt_cached_config_is_reported_not_run() {
        let d = tempfile::tempdir().unwrap();
        let s =
            StateDir::open(d.path(), &Identity::parse("mesh/m/virtualNode/a").unwrap()).unwrap();
        assert!(s.config().is_none());
        s.save_config("{not json").unwrap();
        let e = s.config().unwrap().unwrap_err();
        assert!(e.contains("config.json"), "{e}");
    }
}
