//! Clusters at run time: their endpoints with health, round-robin choice among the healthy
//! ones, and the pooled HTTP clients that reach them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::error::Body;
use super::outlier::{Ejection, Outlier};
use super::pool::Limiter;
use super::stats::Stats;
use super::tls::{Connector, UpstreamTls};
use crate::compile::ClusterConfig;
use crate::model::spec::PortProtocol;

/// Idle upstream connections are kept this long for reuse.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Time to open a TCP connection to an endpoint before it counts as a connection failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// After a refused or reset connection an endpoint is out for new requests this long
/// (doubling with each failure in a row, up to `LOCAL_OUT_MAX`), or until its next passing
/// active check, whichever is first. Short, because without a check nothing else would
/// bring a restarted endpoint back; it doubles so that a dead one costs one retried try
/// per period, not one per request.
pub const LOCAL_OUT_BASE: Duration = Duration::from_secs(1);
pub const LOCAL_OUT_MAX: Duration = Duration::from_secs(10);

pub struct Endpoint {
    pub address: String,
    /// Passes its active health check (or the cluster has none).
    healthy: AtomicBool,
    /// Has passed an active check at least once: the first pass brings a new endpoint in
    /// at once, as Envoy's new hosts do, whatever the healthy threshold.
    passed: AtomicBool,
    /// Taken out by outlier detection; the health check does not bring it back.
    ejected: AtomicBool,
    /// Out after a local-origin failure (refused or reset connection) until this many
    /// milliseconds after `born`; 0 when in.
    out_until_ms: AtomicU64,
    /// Local-origin failures in a row, for the doubling back-off.
    strikes: AtomicU64,
    born: Instant,
    /// 5xx answers and connection failures in a row, for outlier detection.
    pub(super) consecutive_errors: AtomicU64,
    pub(super) ejection: Mutex<Ejection>,
}

impl Endpoint {
    /// A new endpoint; `checked` (its cluster has an active health check) keeps it out of
    /// rotation until its first passing check.
    pub fn new(address: String, checked: bool) -> Endpoint {
        Endpoint {
            address,
            healthy: AtomicBool::new(!checked),
            passed: AtomicBool::new(false),
            ejected: AtomicBool::new(false),
            out_until_ms: AtomicU64::new(0),
            strikes: AtomicU64::new(0),
            born: Instant::now(),
            consecutive_errors: AtomicU64::new(0),
            ejection: Mutex::new(Ejection::default()),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    pub(super) fn set_ejected(&self, ejected: bool) {
        self.ejected.store(ejected, Ordering::Relaxed);
    }

    /// Healthy, not ejected, not out after a refused connection: worth a request.
    pub fn is_available(&self) -> bool {
        self.is_healthy() && !self.is_ejected() && !self.is_out(Instant::now())
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Whether an active check has ever passed.
    pub fn has_passed(&self) -> bool {
        self.passed.load(Ordering::Relaxed)
    }

    /// A passing active check: in at once if this is the first, and back from a
    /// local-origin back-off.
    pub fn check_passed(&self) {
        self.passed.store(true, Ordering::Relaxed);
        self.out_until_ms.store(0, Ordering::Relaxed);
        self.strikes.store(0, Ordering::Relaxed);
    }

    fn ms_since_born(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.born).as_millis()).unwrap_or(u64::MAX)
    }

    /// Out after a local-origin failure at `now`.
    pub fn is_out(&self, now: Instant) -> bool {
        let until = self.out_until_ms.load(Ordering::Relaxed);
        until != 0 && self.ms_since_born(now) < until
    }

    /// A refused or reset connection at `now`: out for new requests for the back-off. A
    /// failure while the endpoint is already out is a request that picked it before it went
    /// out (several in flight hit one dead endpoint at once): the same outage, not another
    /// strike, so the back-off doubles once per period, not once per concurrent request.
    pub fn local_failure(&self, now: Instant) {
        let current = self.out_until_ms.load(Ordering::Relaxed);
        if current != 0 && self.ms_since_born(now) < current {
            return;
        }
        let strikes = self.strikes.load(Ordering::Relaxed);
        let base = u64::try_from(LOCAL_OUT_BASE.as_millis()).unwrap_or(u64::MAX);
        let max = u64::try_from(LOCAL_OUT_MAX.as_millis()).unwrap_or(u64::MAX);
        let wait = base
            .saturating_mul(
                1u64.checked_shl(u32::try_from(strikes.min(16)).unwrap_or(16))
                    .unwrap_or(u64::MAX),
            )
            .min(max);
        // +1 so that "out until 0 ms after birth" still reads as out.
        let until = self.ms_since_born(now).saturating_add(wait).max(1);
        // Only the first of several concurrent failures takes the strike.
        if self
            .out_until_ms
            .compare_exchange(current, until, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.strikes.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(endpoint = %self.address, out_ms = wait, "endpoint refused or reset a connection; out of rotation for new requests");
    }

    /// An answer from the endpoint: its local-origin strikes start again.
    pub fn local_success(&self) {
        if self.strikes.load(Ordering::Relaxed) != 0 {
            self.strikes.store(0, Ordering::Relaxed);
        }
    }
}

/// Whether a cluster can take a request, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usable {
    /// At least one endpoint is available.
    Healthy,
    /// Panic: no endpoint passes its active check, so requests go to every endpoint that
    /// has not refused a connection (Envoy's panic mode, at 0 % rather than 50 %).
    Panic,
    /// Nothing to send to: no endpoints, or all of them refused connections.
    No,
}

/// One cluster's live state. Kept across config swaps while its config is unchanged, so
/// health and pooled connections survive an unrelated change; when only its endpoints
/// change, the endpoints that stay keep their health.
pub struct Cluster {
    pub name: String,
    pub config: ClusterConfig,
    pub endpoints: Vec<Arc<Endpoint>>,
    next: AtomicUsize,
    /// The cluster's `connectionPool` limits, if it has any.
    pub limiter: Option<Limiter>,
    /// Its node listener's `outlierDetection`, if it has one.
    pub outlier: Option<Outlier>,
    /// For a cluster under a TLS client policy: its own client, whose one rustls config
    /// (and session cache) every connection to the cluster shares.
    tls_client: Option<Client<Connector, Body>>,
    /// The same TLS, for raw TCP splices (which have no HTTP client).
    pub(crate) tls: Option<Arc<UpstreamTls>>,
}

impl Cluster {
    #[cfg(test)]
    pub(crate) fn new(
        name: &str,
        config: &ClusterConfig,
        tls: Option<UpstreamTls>,
        stats: &Stats,
        old: Option<&Cluster>,
    ) -> Cluster {
        Cluster::with_endpoints(name, config, &config.endpoints, tls, stats, old)
    }

    /// A cluster whose endpoints are `addresses`: the config's, or for a DNS cluster the
    /// addresses its name resolved to.
    pub(crate) fn with_endpoints(
        name: &str,
        config: &ClusterConfig,
        addresses: &[String],
        tls: Option<UpstreamTls>,
        stats: &Stats,
        old: Option<&Cluster>,
    ) -> Cluster {
        let tls = tls.map(Arc::new);
        let checked = config.health_check.is_some();
        // An endpoint the previous config had keeps its state (a health check that still
        // applies); a new one in a checked cluster waits for its first passing check, as
        // Envoy's new hosts do. Unchecked endpoints are in at once.
        let kept = |a: &str| {
            old.filter(|o| o.config.health_check == config.health_check)
                .and_then(|o| o.endpoints.iter().find(|e| e.address == a).cloned())
        };
        Cluster {
            name: name.to_owned(),
            config: config.clone(),
            endpoints: addresses
                .iter()
                .map(|a| kept(a).unwrap_or_else(|| Arc::new(Endpoint::new(a.clone(), checked))))
                .collect(),
            next: AtomicUsize::new(0),
            limiter: config.connection_pool.map(|p| Limiter::new(name, p, stats)),
            outlier: config
                .outlier_detection
                .map(|o| Outlier::new(name, o, stats)),
            tls_client: tls.clone().map(|t| client(config.protocol, Some(t))),
            tls,
        }
    }

    /// The client that reaches this cluster: its TLS client, or the shared plain one.
    pub fn client<'a>(&'a self, shared: &'a Clients) -> &'a Client<Connector, Body> {
        match &self.tls_client {
            Some(c) => c,
            None => shared.for_protocol(self.config.protocol),
        }
    }

    /// The endpoints' addresses, in order.
    pub fn addresses(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| e.address.clone()).collect()
    }

    pub fn has_healthy(&self) -> bool {
        self.endpoints.iter().any(|e| e.is_available())
    }

    /// Whether a request can go here. Panic applies only when no endpoint passes its
    /// active check: then the checks are more likely wrong than every endpoint dead.
    pub fn usable(&self) -> Usable {
        if self.has_healthy() {
            Usable::Healthy
        } else if self.panic_candidates().next().is_some() {
            Usable::Panic
        } else {
            Usable::No
        }
    }

    /// In panic, the endpoints worth a try: neither out after a refused connection nor
    /// ejected. Empty unless every endpoint fails its active check.
    fn panic_candidates(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        let now = Instant::now();
        let panic = self.config.health_check.is_some()
            && !self.endpoints.is_empty()
            && self.endpoints.iter().all(|e| !e.is_healthy());
        self.endpoints
            .iter()
            .filter(move |e| panic && !e.is_ejected() && !e.is_out(now))
    }

    /// Why no request can go here, for the client's 503.
    pub fn why_unusable(&self) -> String {
        if let Some(why) = &self.config.unavailable {
            return why.clone();
        }
        if self.endpoints.is_empty() {
            return "no endpoints (no sidecar registered and healthy, or none in DNS)".into();
        }
        let now = Instant::now();
        let n = self.endpoints.len();
        let failing = self.endpoints.iter().filter(|e| !e.is_healthy()).count();
        let out = self.endpoints.iter().filter(|e| e.is_out(now)).count();
        let ejected = self.endpoints.iter().filter(|e| e.is_ejected()).count();
        format!(
            "{n} endpoints: {failing} failing their health check, {out} refusing connections, {ejected} ejected"
        )
    }

    /// Feeds outlier detection with one answer of `ep`.
    pub fn record(&self, ep: &Endpoint, server_error: bool) {
        if let Some(o) = &self.outlier {
            o.record(&self.endpoints, ep, server_error);
        }
    }

    /// The next available endpoint, round robin, preferring one not in `tried` (Envoy's
    /// `previous_hosts`); in panic, the next panic candidate.
    pub fn pick(&self, tried: &[String]) -> Option<&Arc<Endpoint>> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut fallback = None;
        for i in 0..n {
            let ep = &self.endpoints[(start + i) % n];
            if !ep.is_available() {
                continue;
            }
            if tried.contains(&ep.address) {
                fallback.get_or_insert(ep);
                continue;
            }
            return Some(ep);
        }
        if fallback.is_some() {
            return fallback;
        }
        let candidates: Vec<&Arc<Endpoint>> = self.panic_candidates().collect();
        let k = candidates.len();
        if k == 0 {
            return None;
        }
        (0..k)
            .map(|i| candidates[(start + i) % k])
            .find(|e| !tried.contains(&e.address))
            .or(Some(candidates[start % k]))
    }

    /// The next endpoint `ok` accepts, round robin (raw TCP: never one that just failed).
    pub fn pick_where(&self, ok: impl Fn(&Endpoint) -> bool) -> Option<&Arc<Endpoint>> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.endpoints[(start + i) % n])
            .find(|e| ok(e))
    }
}

/// A pooled client for one protocol: HTTP/1.1, or HTTP/2 only (prior knowledge in plain
/// text, ALPN `h2` over TLS).
fn client(protocol: PortProtocol, tls: Option<Arc<UpstreamTls>>) -> Client<Connector, Body> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_idle_timeout(POOL_IDLE);
    if matches!(protocol, PortProtocol::Http2 | PortProtocol::Grpc) {
        builder.http2_only(true);
    }
    builder.build(Connector::new(http, tls))
}

/// The plain-text HTTP clients every cluster without TLS shares: HTTP/1.1 and HTTP/2.
#[derive(Clone)]
pub struct Clients {
    pub h1: Client<Connector, Body>,
    pub h2: Client<Connector, Body>,
}

impl Clients {
    pub fn new() -> Clients {
        Clients {
            h1: client(PortProtocol::Http, None),
            h2: client(PortProtocol::Http2, None),
        }
    }

    pub fn for_protocol(&self, p: PortProtocol) -> &Client<Connector, Body> {
        match p {
            PortProtocol::Http2 | PortProtocol::Grpc => &self.h2,
            _ => &self.h1,
        }
    }
}

impl Default for Clients {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::HealthCheckPolicy;

    fn cluster(endpoints: &[&str], checked: bool) -> Cluster {
        let config = ClusterConfig {
            node: "white".into(),
            port: 9080,
            protocol: PortProtocol::Http,
            endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
            dns: None,
            health_check: checked.then(|| HealthCheckPolicy {
                healthy_threshold: 2,
                interval_millis: 5_000,
                path: Some("/ping".into()),
                port: None,
                protocol: PortProtocol::Http,
                timeout_millis: 2_000,
                unhealthy_threshold: 2,
            }),
            tls: None,
            outlier_detection: None,
            unavailable: None,
            connection_pool: None,
        };
        Cluster::new("c", &config, None, &Stats::new(), None)
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_connection_takes_the_endpoint_out_until_the_back_off_ends() {
        let c = cluster(&["a:1", "b:1"], false);
        c.endpoints[0].local_failure(Instant::now());
        for _ in 0..4 {
            assert_eq!(c.pick(&[]).unwrap().address, "b:1");
        }
        tokio::time::advance(LOCAL_OUT_BASE).await;
        assert!(c.endpoints[0].is_available());
        // A second failure in a row doubles the back-off.
        c.endpoints[0].local_failure(Instant::now());
        tokio::time::advance(LOCAL_OUT_BASE).await;
        assert!(!c.endpoints[0].is_available());
        tokio::time::advance(LOCAL_OUT_BASE).await;
        assert!(c.endpoints[0].is_available());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_failures_of_one_outage_count_as_one_strike() {
        let c = cluster(&["a:1"], false);
        // Four requests in flight to a endpoint that dies: four refusals at once.
        for _ in 0..4 {
            c.endpoints[0].local_failure(Instant::now());
        }
        tokio::time::advance(LOCAL_OUT_BASE).await;
        assert!(
            c.endpoints[0].is_available(),
            "out for the base back-off only, not doubled per refusal"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_passing_check_ends_the_local_back_off() {
        let c = cluster(&["a:1"], true);
        c.endpoints[0].set_healthy(true);
        c.endpoints[0].local_failure(Instant::now());
        assert_eq!(c.usable(), Usable::No);
        c.endpoints[0].check_passed();
        assert_eq!(c.usable(), Usable::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn every_endpoint_failing_its_check_is_panic_and_all_of_them_get_requests() {
        let c = cluster(&["a:1", "b:1", "c:1"], true);
        // New endpoints in a checked cluster have not passed yet: nothing is healthy.
        assert_eq!(c.usable(), Usable::Panic);
        let picked: std::collections::BTreeSet<String> = (0..6)
            .map(|_| c.pick(&[]).unwrap().address.clone())
            .collect();
        assert_eq!(picked.len(), 3, "panic sends to all: {picked:?}");
        // One refused connection is proof, not a guess: even panic skips it.
        c.endpoints[1].local_failure(Instant::now());
        assert!((0..6).all(|_| c.pick(&[]).unwrap().address != "b:1"));
    }

    #[tokio::test(start_paused = true)]
    async fn one_passing_endpoint_ends_panic_and_takes_all_requests() {
        let c = cluster(&["a:1", "b:1", "c:1"], true);
        c.endpoints[2].set_healthy(true);
        assert_eq!(c.usable(), Usable::Healthy);
        assert!((0..6).all(|_| c.pick(&[]).unwrap().address == "c:1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_prefers_an_endpoint_it_has_not_tried() {
        let c = cluster(&["a:1", "b:1"], false);
        for _ in 0..4 {
            assert_eq!(c.pick(&["a:1".into()]).unwrap().address, "b:1");
        }
        // Only tried ones left: one of them rather than nothing.
        assert!(c.pick(&["a:1".into(), "b:1".into()]).is_some());
    }

    #[test]
    fn a_cluster_with_no_endpoints_is_unusable_and_says_so() {
        let c = cluster(&[], true);
        assert_eq!(c.usable(), Usable::No);
        assert!(c.why_unusable().contains("no endpoints"));
    }

    #[test]
    fn endpoints_that_stay_keep_their_health_when_the_list_changes() {
        let old = cluster(&["a:1", "b:1"], true);
        old.endpoints[0].set_healthy(true);
        let mut cfg = old.config.clone();
        cfg.endpoints = vec!["a:1".into(), "c:1".into()];
        let next = Cluster::new("c", &cfg, None, &Stats::new(), Some(&old));
        assert!(next.endpoints[0].is_healthy(), "a:1 stays healthy");
        assert!(
            !next.endpoints[1].is_healthy(),
            "c:1 waits for its first check"
        );
    }
}
