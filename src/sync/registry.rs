//! Who is connected: every proxy session, the endpoints sidecars advertise, and the config
//! each identity should run. Sessions of one identity (replicas) share one compiled config,
//! published through a `watch` channel, so a change is compiled once however many replicas
//! there are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{watch, Notify};

use crate::compile::{Endpoints, Registered};
use crate::model::{Identity, ProxyKind};

/// How long a vanished sidecar's endpoint stays, in case it is only reconnecting.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

pub type SessionId = u64;

/// The config one identity should run, ready to send.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub version: u64,
    /// The encoded `Config` frame; `None` until the first compile succeeds.
    pub frame: Option<Arc<Vec<u8>>>,
    /// The config's JSON with version 0: what "changed" is decided on.
    pub content: Arc<String>,
    /// Why the latest compile failed, if it did (the previous config stays published).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Nack {
    pub version: u64,
    pub error: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetStats {
    pub requests: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProxyStats {
    pub targets: BTreeMap<String, TargetStats>,
}

/// One connected proxy, as `list-proxies` and the admin page show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyStatus {
    pub identity: String,
    /// The address the session comes from.
    pub address: String,
    /// Where peers reach it (sidecars), if it advertises.
    pub advertise: Option<String>,
    /// The Cloud Map attributes it reports (`--attribute k=v`), matched by its node's
    /// `awsCloudMap.attributes`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    pub healthy: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub connected_at: OffsetDateTime,
    pub config_version_sent: Option<u64>,
    pub config_version_acked: Option<u64>,
    pub last_nack: Option<Nack>,
    /// Why the control plane cannot compile this identity's config, if it cannot.
    pub config_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub certificate_expires_at: Option<OffsetDateTime>,
    pub stats: ProxyStats,
}

struct Session {
    status: ProxyStatus,
    identity: Identity,
}

struct Departed {
    identity: Identity,
    endpoint: Registered,
    until: Instant,
}

#[derive(Default)]
struct Inner {
    next_id: SessionId,
    sessions: BTreeMap<SessionId, Session>,
    departed: Vec<Departed>,
    desired: HashMap<Identity, watch::Sender<Desired>>,
    /// (mesh, virtual node) of every node a sidecar has registered for since the control
    /// plane started: their endpoints come from the registry alone, never DNS again.
    registered: BTreeSet<(String, String)>,
}

pub struct Registry {
    inner: Mutex<Inner>,
    /// Wakes the push loop: an identity appeared, or an endpoint came, went or changed health.
    pub changed: Notify,
    grace: Duration,
}

impl Registry {
    pub fn new(grace: Duration) -> Registry {
        Registry {
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
            grace,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a session and hands back its id and the identity's config channel. `advertise`
    /// is where peers reach a sidecar, with the attributes it reports.
    pub fn register(
        &self,
        identity: &Identity,
        address: String,
        advertise: Option<Registered>,
        healthy: bool,
        certificate_expires_at: Option<OffsetDateTime>,
    ) -> (SessionId, watch::Receiver<Desired>) {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        if let Some(a) = &advertise {
            inner.departed.retain(|d| d.endpoint.address != a.address);
            if identity.kind == ProxyKind::VirtualNode {
                inner
                    .registered
                    .insert((identity.mesh.to_string(), identity.name.to_string()));
            }
        }
        let rx = inner
            .desired
            .entry(identity.clone())
            .or_insert_with(|| watch::channel(Desired::default()).0)
            .subscribe();
        inner.sessions.insert(
            id,
            Session {
                identity: identity.clone(),
                status: ProxyStatus {
                    identity: identity.to_string(),
                    address,
                    attributes: advertise
                        .as_ref()
                        .map(|a| a.attributes.clone())
                        .unwrap_or_default(),
                    advertise: advertise.map(|a| a.address),
                    healthy,
                    connected_at: OffsetDateTime::now_utc(),
                    config_version_sent: None,
                    config_version_acked: None,
                    last_nack: None,
                    config_error: None,
                    certificate_expires_at,
                    stats: ProxyStats::default(),
                },
            },
        );
        drop(inner);
        self.changed.notify_one();
        (id, rx)
    }

    /// Removes a session. Its endpoint lingers for the grace period unless the proxy said it
    /// was draining.
    pub fn unregister(&self, id: SessionId, draining: bool) {
        let mut inner = self.lock();
        let Some(s) = inner.sessions.remove(&id) else {
            return;
        };
        if let (Some(advertise), false) = (s.status.advertise.clone(), draining) {
            if s.status.healthy {
                let until = Instant::now() + self.grace;
                inner.departed.push(Departed {
                    identity: s.identity.clone(),
                    endpoint: Registered {
                        address: advertise,
                        attributes: s.status.attributes.clone(),
                    },
                    until,
                });
            }
        }
        let identity = s.identity;
        if !inner.sessions.values().any(|s| s.identity == identity) {
            // Keep the compiled config only while someone runs it.
            inner.desired.remove(&identity);
        }
        drop(inner);
        self.changed.notify_one();
    }

    /// Drops lingering endpoints whose grace has run out; true if any went.
    pub fn sweep(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        let before = inner.departed.len();
        inner.departed.retain(|d| d.until > now);
        let changed = inner.departed.len() != before;
        drop(inner);
        if changed {
            self.changed.notify_one();
        }
        changed
    }

    fn with_session(&self, id: SessionId, f: impl FnOnce(&mut ProxyStatus)) {
        if let Some(s) = self.lock().sessions.get_mut(&id) {
            f(&mut s.status);
        }
    }

    pub fn set_health(&self, id: SessionId, healthy: bool) {
        let mut advertises = false;
        self.with_session(id, |s| {
            advertises = s.advertise.is_some() && s.healthy != healthy;
            s.healthy = healthy;
        });
        if advertises {
            self.changed.notify_one();
        }
    }

    /// The proxy is going away on purpose: its endpoint leaves now.
    pub fn draining(&self, id: SessionId) {
        self.set_health(id, false);
    }

    pub fn sent(&self, id: SessionId, version: u64) {
        self.with_session(id, |s| s.config_version_sent = Some(version));
    }

    pub fn acked(&self, id: SessionId, version: u64) {
        self.with_session(id, |s| s.config_version_acked = Some(version));
    }

    pub fn nacked(&self, id: SessionId, version: u64, error: String) {
        self.with_session(id, |s| {
            s.last_nack = Some(Nack {
                version,
                error,
                at: OffsetDateTime::now_utc(),
            })
        });
    }

    pub fn certificate(&self, id: SessionId, expires_at: OffsetDateTime) {
        self.with_session(id, |s| s.certificate_expires_at = Some(expires_at));
    }

    pub fn stats(&self, id: SessionId, targets: Vec<(String, u64, u64)>) {
        self.with_session(id, |s| {
            s.stats.targets = targets
                .into_iter()
                .map(|(node, requests, errors)| (node, TargetStats { requests, errors }))
                .collect();
        });
    }

    /// Every identity with at least one session.
    pub fn identities(&self) -> Vec<Identity> {
        let mut ids: Vec<Identity> = self.lock().desired.keys().cloned().collect();
        ids.sort_by_key(|i| i.to_string());
        ids
    }

    /// The endpoints of the mesh's virtual nodes that sidecars advertise: healthy sessions,
    /// and departed ones still within their grace. A node a sidecar has ever registered for
    /// keeps the registry as its truth: with its sidecars all unhealthy or gone it gets an
    /// empty list (no traffic), not its DNS name, which may resolve to nothing or to a
    /// host that is not ready. Nodes that never register (external services) are absent,
    /// so `compile` uses their DNS name.
    pub fn endpoints(&self, mesh: &str) -> Endpoints {
        let inner = self.lock();
        let mut out = Endpoints::new();
        for (m, node) in &inner.registered {
            if m == mesh {
                out.entry(node.clone()).or_default();
            }
        }
        let in_mesh = |i: &Identity| i.kind == ProxyKind::VirtualNode && i.mesh.as_str() == mesh;
        for s in inner.sessions.values() {
            let (Some(a), true) = (&s.status.advertise, in_mesh(&s.identity)) else {
                continue;
            };
            let list = out.entry(s.identity.name.to_string()).or_default();
            if s.status.healthy {
                list.push(Registered {
                    address: a.clone(),
                    attributes: s.status.attributes.clone(),
                });
            }
        }
        for d in inner.departed.iter().filter(|d| in_mesh(&d.identity)) {
            out.entry(d.identity.name.to_string())
                .or_default()
                .push(d.endpoint.clone());
        }
        for list in out.values_mut() {
            list.sort();
            list.dedup();
        }
        out
    }

    /// Whether every other proxy runs a config without the endpoint of draining session
    /// `id`: the config its identity should run no longer names the endpoint, and the
    /// proxy has acked that config. Proxies with no config yet do not hold a drain.
    pub fn drain_propagated(&self, id: SessionId) -> bool {
        let inner = self.lock();
        let Some(advertise) = inner
            .sessions
            .get(&id)
            .and_then(|s| s.status.advertise.clone())
        else {
            return true;
        };
        // Endpoints appear in a config's JSON as quoted `host:port` strings; an advertised
        // address without a port stands for every listener port of that host.
        let needle = if advertise.parse::<std::net::SocketAddr>().is_ok() {
            format!("\"{advertise}\"")
        } else {
            format!("\"{advertise}:")
        };
        inner
            .sessions
            .iter()
            .filter(|(other, _)| **other != id)
            .all(|(_, s)| {
                let Some(tx) = inner.desired.get(&s.identity) else {
                    return true;
                };
                let d = tx.borrow();
                d.frame.is_none()
                    || (!d.content.contains(&needle)
                        && s.status
                            .config_version_acked
                            .is_some_and(|v| v >= d.version))
            })
    }

    pub fn desired(&self, identity: &Identity) -> Option<Desired> {
        self.lock()
            .desired
            .get(identity)
            .map(|tx| tx.borrow().clone())
    }

    /// Publishes a new config (or a compile error) for an identity's sessions.
    pub fn publish(&self, identity: &Identity, desired: Desired) {
        let mut inner = self.lock();
        let error = desired.error.clone();
        if let Some(tx) = inner.desired.get(identity) {
            tx.send_replace(desired);
        }
        for s in inner
            .sessions
            .values_mut()
            .filter(|s| &s.identity == identity)
        {
            s.status.config_error = error.clone();
        }
    }

    pub fn list(&self) -> Vec<ProxyStatus> {
        self.lock()
            .sessions
            .values()
            .map(|s| s.status.clone())
            .collect()
    }

    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> Identity {
        Identity::parse(&format!("mesh/m/virtualNode/{n}")).unwrap()
    }

    fn addrs(list: &[Registered]) -> Vec<&str> {
        list.iter().map(|r| r.address.as_str()).collect()
    }

    #[test]
    fn a_sidecars_attributes_stay_with_its_endpoint_while_it_lingers() {
        let r = Registry::new(Duration::from_millis(50));
        let blue = Registered {
            address: "10.0.0.1:80".into(),
            attributes: [("color".to_owned(), "blue".to_owned())].into(),
        };
        let (a, _rx) = r.register(&node("white"), "x".into(), Some(blue.clone()), true, None);
        assert_eq!(r.endpoints("m")["white"], vec![blue.clone()]);
        assert_eq!(r.list()[0].attributes, blue.attributes);
        r.unregister(a, false);
        assert_eq!(
            r.endpoints("m")["white"],
            vec![blue],
            "a departed sidecar keeps them"
        );
    }

    #[test]
    fn healthy_sidecars_are_their_nodes_endpoints() {
        let r = Registry::new(Duration::from_secs(10));
        let (a, _rx) = r.register(
            &node("white"),
            "x".into(),
            Some("10.0.0.1:80".into()),
            true,
            None,
        );
        r.register(
            &node("white"),
            "y".into(),
            Some("10.0.0.2:80".into()),
            true,
            None,
        );
        r.register(
            &node("blue"),
            "z".into(),
            Some("10.0.0.3:80".into()),
            false,
            None,
        );
        let e = r.endpoints("m");
        assert_eq!(addrs(&e["white"]), vec!["10.0.0.1:80", "10.0.0.2:80"]);
        assert!(
            e["blue"].is_empty(),
            "an unhealthy-only node has no endpoints"
        );
        assert!(r.endpoints("other").is_empty());
        r.set_health(a, false);
        assert_eq!(addrs(&r.endpoints("m")["white"]), vec!["10.0.0.2:80"]);
    }

    #[test]
    fn a_departed_endpoint_stays_for_the_grace_then_goes() {
        let r = Registry::new(Duration::from_millis(50));
        let (a, _rx) = r.register(
            &node("white"),
            "x".into(),
            Some("10.0.0.1:80".into()),
            true,
            None,
        );
        r.unregister(a, false);
        assert_eq!(addrs(&r.endpoints("m")["white"]), vec!["10.0.0.1:80"]);
        assert!(r.sweep(Instant::now() + Duration::from_millis(60)));
        assert_eq!(addrs(&r.endpoints("m")["white"]), Vec::<&str>::new());
    }

    #[test]
    fn a_draining_sidecar_leaves_at_once() {
        let r = Registry::new(Duration::from_secs(10));
        let (a, _rx) = r.register(
            &node("white"),
            "x".into(),
            Some("10.0.0.1:80".into()),
            true,
            None,
        );
        r.draining(a);
        r.unregister(a, true);
        assert_eq!(addrs(&r.endpoints("m")["white"]), Vec::<&str>::new());
    }

    #[test]
    fn a_node_whose_sidecars_registered_keeps_an_empty_list_when_they_are_gone() {
        let r = Registry::new(Duration::from_millis(50));
        let (a, _rx) = r.register(
            &node("white"),
            "x".into(),
            Some("10.0.0.1:80".into()),
            true,
            None,
        );
        r.unregister(a, false);
        r.sweep(Instant::now() + Duration::from_millis(60));
        // Present and empty: compile then gives the node no endpoints, not its DNS name.
        assert_eq!(addrs(&r.endpoints("m")["white"]), Vec::<&str>::new());
        // A node no sidecar ever registered for is absent: DNS stays its source.
        assert!(!r.endpoints("m").contains_key("blue"));
        assert!(r.endpoints("other").is_empty());
    }

    fn publish(r: &Registry, who: &Identity, version: u64, content: &str) {
        r.publish(
            who,
            Desired {
                version,
                frame: Some(Arc::new(Vec::new())),
                content: Arc::new(content.to_owned()),
                error: None,
            },
        );
    }

    #[test]
    fn a_drain_is_propagated_once_every_other_proxy_acked_a_config_without_the_endpoint() {
        let r = Registry::new(Duration::from_secs(10));
        let gw = Identity::parse("mesh/m/virtualGateway/gw").unwrap();
        let (s, _rx) = r.register(
            &node("white"),
            "x".into(),
            Some("10.0.0.1:80".into()),
            true,
            None,
        );
        let (g, _grx) = r.register(&gw, "y".into(), None, true, None);
        publish(&r, &gw, 1, r#"{"endpoints":["10.0.0.1:80"]}"#);
        r.acked(g, 1);
        r.draining(s);
        assert!(
            !r.drain_propagated(s),
            "the gateway still runs the endpoint"
        );
        publish(&r, &gw, 2, r#"{"endpoints":[]}"#);
        assert!(!r.drain_propagated(s), "pushed but not acked");
        r.acked(g, 2);
        assert!(r.drain_propagated(s));
    }

    #[test]
    fn replicas_share_one_config_channel() {
        let r = Registry::new(Duration::from_secs(10));
        let (_, mut rx1) = r.register(&node("white"), "x".into(), None, true, None);
        let (_, rx2) = r.register(&node("white"), "y".into(), None, true, None);
        r.publish(
            &node("white"),
            Desired {
                version: 5,
                ..Desired::default()
            },
        );
        assert!(rx1.has_changed().unwrap());
        assert_eq!(rx1.borrow_and_update().version, 5);
        assert_eq!(rx2.borrow().version, 5);
        assert_eq!(r.identities(), vec![node("white")]);
    }
}
