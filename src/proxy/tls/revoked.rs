//! The identities the control plane has revoked, as one proxy knows them: read by every
//! verifier on every handshake, and watched by every open connection whose peer could be
//! revoked later, so a revocation closes what a revoked proxy already has open as well as
//! refusing what it opens next.

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::CertificateDer;
use tokio::sync::watch;

use super::verify::peer_names;

/// The revoked set, swapped whole with each config.
#[derive(Debug)]
pub(crate) struct Revocations {
    set: ArcSwap<HashSet<String>>,
    /// Bumped on every change of the set; open connections wait on it.
    changed: watch::Sender<u64>,
}

impl Default for Revocations {
    fn default() -> Revocations {
        Revocations {
            set: ArcSwap::default(),
            changed: watch::Sender::new(0),
        }
    }
}

impl Revocations {
    /// Takes the config's list; wakes open connections only when it differs.
    pub fn replace(&self, identities: &[String]) {
        let new: HashSet<String> = identities.iter().cloned().collect();
        if **self.set.load() == new {
            return;
        }
        self.set.store(Arc::new(new));
        self.changed.send_modify(|n| *n += 1);
    }

    /// Whether a certificate whose SANs are `names` belongs to a revoked identity.
    pub fn names_revoked(&self, names: &[String]) -> bool {
        let set = self.set.load();
        !set.is_empty()
            && names
                .iter()
                .filter_map(|n| identity_of(n))
                .any(|id| set.contains(id))
    }

    /// The mesh identity (`mesh/M/virtualNode/N`) a peer's certificate chain names, when it
    /// names one: only those can be revoked.
    pub fn identity(chain: Option<&[CertificateDer<'_>]>) -> Option<String> {
        let leaf = chain?.first()?;
        peer_names(leaf)
            .iter()
            .find_map(|n| identity_of(n).map(str::to_owned))
    }

    /// Resolves once `identity` is revoked (at once if it already is). A connection selects
    /// on this beside its own work and closes when it resolves.
    pub async fn until_revoked(self: Arc<Self>, identity: String) {
        let mut changes = self.changed.subscribe();
        loop {
            if self.set.load().contains(&identity) {
                return;
            }
            if changes.changed().await.is_err() {
                // The store went away with the proxy: never revoked from here on.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// `spiffe://TRUST_DOMAIN/mesh/M/virtualNode/N` -> `mesh/M/virtualNode/N`.
fn identity_of(san: &str) -> Option<&str> {
    san.strip_prefix("spiffe://")?
        .split_once('/')
        .map(|(_, path)| path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_certificate_naming_a_revoked_spiffe_id_is_revoked() {
        let r = Revocations::default();
        r.replace(&["mesh/m/virtualNode/a".to_owned()]);
        assert!(r.names_revoked(&["spiffe://td/mesh/m/virtualNode/a".into()]));
        assert!(!r.names_revoked(&["spiffe://td/mesh/m/virtualNode/b".into()]));
        // A DNS name that happens to read like an identity is not one.
        assert!(!r.names_revoked(&["mesh/m/virtualNode/a".into()]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_connection_wakes_when_its_peer_is_revoked() {
        let r = Arc::new(Revocations::default());
        let wait = tokio::spawn(r.clone().until_revoked("mesh/m/virtualNode/a".into()));
        r.replace(&["mesh/m/virtualNode/other".into()]);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!wait.is_finished(), "another identity's revocation woke it");
        r.replace(&[
            "mesh/m/virtualNode/other".into(),
            "mesh/m/virtualNode/a".into(),
        ]);
        tokio::time::timeout(Duration::from_secs(1), wait)
            .await
            .expect("woken by its own revocation")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_identity_revoked_before_the_wait_resolves_at_once() {
        let r = Arc::new(Revocations::default());
        r.replace(&["mesh/m/virtualNode/a".into()]);
        tokio::time::timeout(
            Duration::from_millis(1),
            r.until_revoked("mesh/m/virtualNode/a".into()),
        )
        .await
        .expect("already revoked");
    }
}
