//! TLS in the data plane: the proxy's own credentials (set by the control plane, or read from
//! a directory), certificates and trust bundles read from files, listeners that terminate
//! TLS (STRICT, PERMISSIVE) and connectors that originate it. Every certificate and trust
//! sits in a slot swapped atomically: new handshakes see the new value, open connections
//! keep theirs, and no config is rebuilt.

mod connector;
mod listener;
mod revoked;
mod verify;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use tokio_util::sync::CancellationToken;

pub(crate) use connector::UpstreamTls;
pub use connector::{Connector, UpstreamTlsError};
pub(crate) use listener::{Downstream, ListenerTls};
pub(crate) use revoked::Revocations;

use crate::compile::{CertificateSource, TrustSource};

/// How often certificate and trust files (and a `--credentials-dir`) are checked for
/// changes. Shorter notices a renewal sooner; each check is a few `stat` calls.
pub const FILE_POLL: Duration = Duration::from_secs(2);

/// The proxy's own TLS credentials: a leaf from the appliance CA on the proxy's own key,
/// and the CA's bundle (roots and intermediates), which is what an `acm` trust naming the
/// appliance CA means. The same value the config push keeps in the proxy's state directory.
pub use crate::sync::Credentials;

/// Why certificates, keys or trust bundles cannot be used. `what` names the source: "the
/// proxy's own credentials" or the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A chain or bundle with no `CERTIFICATE` block (an empty or truncated file).
    #[error("{what}: no PEM certificate found")]
    NoCertificate { what: String },
    /// PEM that does not decode, or a key block missing.
    #[error("{what}: {reason}")]
    Pem { what: String, reason: String },
    /// A key type the crypto provider does not support.
    #[error("{what}: unusable private key: {reason}")]
    Key { what: String, reason: String },
    /// The key is not the one the leaf certifies (often: the chain renewed, the key not yet).
    #[error("{what}: the private key does not match the certificate")]
    KeyMismatch { what: String },
    /// A trust bundle rustls refuses as roots.
    #[error("{what}: bad trust bundle: {reason}")]
    Trust { what: String, reason: String },
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

// === slots ===

/// A certificate and key the proxy presents; empty until first loaded.
#[derive(Debug)]
pub(crate) struct CertSlot {
    /// For logs and errors: "the proxy's own credentials", "file /a.pem".
    pub what: String,
    key: ArcSwapOption<CertifiedKey>,
}

impl CertSlot {
    fn new(what: String) -> CertSlot {
        CertSlot {
            what,
            key: ArcSwapOption::empty(),
        }
    }

    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.key.load_full()
    }
}

/// The roots a peer's chain must lead to, and the client verifier built from them (built
/// once per change, not per handshake).
pub(crate) struct Trust {
    roots: Arc<RootCertStore>,
    clients: Arc<dyn ClientCertVerifier>,
}

#[derive(Debug)]
pub(crate) struct TrustSlot {
    pub what: String,
    trust: ArcSwapOption<Trust>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Trust({} roots)", self.roots.len())
    }
}

impl TrustSlot {
    fn new(what: String) -> TrustSlot {
        TrustSlot {
            what,
            trust: ArcSwapOption::empty(),
        }
    }

    pub fn current(&self) -> Option<Arc<Trust>> {
        self.trust.load_full()
    }
}

// === impl TlsStore ===

/// Every slot of one proxy: its own credentials and the files its config names. Slots live
/// as long as the proxy, so a config swap that keeps a file keeps its loaded value.
pub(crate) struct TlsStore {
    pub provider: Arc<CryptoProvider>,
    own_cert: Arc<CertSlot>,
    own_trust: Arc<TrustSlot>,
    own_expiry: Mutex<Option<SystemTime>>,
    files: Mutex<Files>,
    /// The config's revoked peers, read by every verifier on every handshake and watched by
    /// open connections.
    pub(crate) revoked: Arc<Revocations>,
}

/// A file certificate's slot and the (chain, key) modification times it was loaded at.
type FileCert = (Arc<CertSlot>, Option<[SystemTime; 2]>);

/// File slots with the modification times they were loaded at (none: not loaded yet).
#[derive(Default)]
struct Files {
    /// (chain path, key path) -> slot.
    certs: HashMap<(String, String), FileCert>,
    trusts: HashMap<String, (Arc<TrustSlot>, Option<SystemTime>)>,
}

const OWN: &str = "the proxy's own credentials";

impl TlsStore {
    pub fn new() -> TlsStore {
        TlsStore {
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            own_cert: Arc::new(CertSlot::new(OWN.to_owned())),
            own_trust: Arc::new(TrustSlot::new(format!("the CA bundle of {OWN}"))),
            own_expiry: Mutex::new(None),
            files: Mutex::new(Files::default()),
            revoked: Arc::default(),
        }
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Files> {
        // Slots are only inserted or swapped whole: a panic elsewhere leaves nothing half-done.
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks and installs the proxy's own credentials: the trust first, so by the time the
    /// new leaf is presented the proxy already accepts peers renewed by the same CA.
    pub fn set_own(&self, creds: &Credentials) -> Result<SystemTime, TlsError> {
        let (key, not_after) =
            certified_key(&self.provider, &creds.chain_pem, &creds.key_pem, OWN)?;
        let trust = trust(
            &self.provider,
            &creds.trust_bundle_pem,
            &self.own_trust.what,
        )?;
        self.own_trust.trust.store(Some(Arc::new(trust)));
        self.own_cert.key.store(Some(Arc::new(key)));
        *self
            .own_expiry
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(not_after);
        Ok(not_after)
    }

    pub fn own_expiry(&self) -> Option<SystemTime> {
        *self
            .own_expiry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The slot for a certificate source; a file is read now if it is new to this proxy.
    pub fn cert(&self, source: &CertificateSource) -> Arc<CertSlot> {
        let CertificateSource::File { chain, key } = source else {
            return self.own_cert.clone();
        };
        let mut files = self.files();
        let entry = files
            .certs
            .entry((chain.clone(), key.clone()))
            .or_insert_with(|| {
                let slot = Arc::new(CertSlot::new(format!("file {chain} (key {key})")));
                (slot, None)
            });
        if entry.1.is_none() {
            entry.1 = reload_cert(&self.provider, &entry.0, chain, key, None);
        }
        entry.0.clone()
    }

    pub fn trust(&self, source: &TrustSource) -> Arc<TrustSlot> {
        let TrustSource::File { path } = source else {
            return self.own_trust.clone();
        };
        let mut files = self.files();
        let entry = files.trusts.entry(path.clone()).or_insert_with(|| {
            let slot = Arc::new(TrustSlot::new(format!("trust file {path}")));
            (slot, None)
        });
        if entry.1.is_none() {
            entry.1 = reload_trust(&self.provider, &entry.0, path, None);
        }
        entry.0.clone()
    }

    /// Re-reads every file whose modification time changed. A file that fails to load keeps
    /// the last good value (logged), and is tried again at the next poll.
    fn poll_files(&self) {
        let mut files = self.files();
        for ((chain, key), (slot, seen)) in files.certs.iter_mut() {
            if let Some(now) = reload_cert(&self.provider, slot, chain, key, *seen) {
                *seen = Some(now);
            }
        }
        for (path, (slot, seen)) in files.trusts.iter_mut() {
            if let Some(now) = reload_trust(&self.provider, slot, path, *seen) {
                *seen = Some(now);
            }
        }
    }

    /// Polls the files every `FILE_POLL` until `stop`.
    pub fn spawn_file_poller(self: &Arc<Self>, stop: CancellationToken) {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(FILE_POLL) => {}
                }
                let Some(store) = store.upgrade() else { return };
                // Blocking reads of small files, kept off the request threads.
                let _ = tokio::task::spawn_blocking(move || store.poll_files()).await;
            }
        });
    }
}

fn mtime(path: &str) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Loads a file certificate if its files changed since `seen`; returns their new times
/// when it loaded them.
fn reload_cert(
    provider: &CryptoProvider,
    slot: &CertSlot,
    chain: &str,
    key: &str,
    seen: Option<[SystemTime; 2]>,
) -> Option<[SystemTime; 2]> {
    let times = [mtime(chain)?, mtime(key)?];
    if seen == Some(times) {
        return None;
    }
    let loaded = read(chain).and_then(|c| {
        let k = read(key)?;
        certified_key(provider, &c, &k, &slot.what)
    });
    match loaded {
        Ok((certified, not_after)) => {
            slot.key.store(Some(Arc::new(certified)));
            tracing::info!(source = %slot.what, not_after = ?not_after, "TLS certificate loaded");
            Some(times)
        }
        Err(e) => {
            tracing::warn!(error = %e, "TLS certificate not loaded; keeping the previous one");
            None
        }
    }
}

fn reload_trust(
    provider: &Arc<CryptoProvider>,
    slot: &TrustSlot,
    path: &str,
    seen: Option<SystemTime>,
) -> Option<SystemTime> {
    let time = mtime(path)?;
    if seen == Some(time) {
        return None;
    }
    match read(path).and_then(|pem| trust(provider, &pem, &slot.what)) {
        Ok(t) => {
            tracing::info!(source = %slot.what, roots = t.roots.len(), "TLS trust loaded");
            slot.trust.store(Some(Arc::new(t)));
            Some(time)
        }
        Err(e) => {
            tracing::warn!(error = %e, "TLS trust not loaded; keeping the previous one");
            None
        }
    }
}

fn read(path: impl AsRef<Path>) -> Result<String, TlsError> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses a chain and key and checks that the key is the leaf's; returns the leaf's expiry.
fn certified_key(
    provider: &CryptoProvider,
    chain_pem: &str,
    key_pem: &str,
    what: &str,
) -> Result<(CertifiedKey, SystemTime), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_owned(),
            reason: format!("certificate chain: {e}"),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            what: what.to_owned(),
        });
    };
    let not_after = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map(|(_, c)| {
            let secs = c.validity().not_after.timestamp();
            SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
        })
        .map_err(|e| TlsError::Pem {
            what: what.to_owned(),
            reason: format!("leaf certificate: {e}"),
        })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: what.to_owned(),
        reason: format!("private key: {e}"),
    })?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        // A key type whose public half rustls cannot derive: nothing to compare, accept.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok((certified, not_after))
        }
        Err(_) => Err(TlsError::KeyMismatch {
            what: what.to_owned(),
        }),
    }
}

fn trust(provider: &Arc<CryptoProvider>, pem: &str, what: &str) -> Result<Trust, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError::Pem {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| TlsError::Trust {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate {
            what: what.to_owned(),
        });
    }
    let roots = Arc::new(roots);
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::Trust {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Trust { roots, clients })
}

// === credentials directory ===

/// Loads `DIR/cert.pem` (chain), `DIR/key.pem` and `DIR/ca.pem` as the proxy's own
/// credentials now, then re-reads them whenever one changes, until `shutdown`. A failed
/// start is an error; a failed reload (say, the chain rewritten before the key) is logged,
/// keeps the previous credentials and is retried at the next poll.
pub fn watch_credentials_dir(
    runtime: &Arc<super::Runtime>,
    dir: &Path,
    shutdown: CancellationToken,
) -> Result<(), TlsError> {
    let files = ["cert.pem", "key.pem", "ca.pem"].map(|f| dir.join(f));
    let stamp = |files: &[PathBuf; 3]| {
        files
            .iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect::<Vec<_>>()
    };
    let load = |files: &[PathBuf; 3]| -> Result<Credentials, TlsError> {
        Ok(Credentials {
            chain_pem: read(&files[0])?,
            key_pem: read(&files[1])?,
            trust_bundle_pem: read(&files[2])?,
        })
    };
    let mut seen = stamp(&files);
    runtime.set_credentials(load(&files)?)?;
    let rt = Arc::downgrade(runtime);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(FILE_POLL) => {}
            }
            let Some(rt) = rt.upgrade() else { return };
            let now = stamp(&files);
            if now == seen {
                continue;
            }
            match load(&files).and_then(|c| rt.set_credentials(c)) {
                Ok(()) => seen = now,
                Err(e) => {
                    tracing::warn!(error = %e, "credentials directory not reloaded; keeping the previous credentials")
                }
            }
        }
    });
    Ok(())
}
