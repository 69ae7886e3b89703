//! Clusters at run time: their endpoints with health, round-robin choice among the healthy
//! ones, and the pooled HTTP clients that reach them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

pub struct Endpoint {
    pub address: String,
    /// Passes its active health check (or has none).
    healthy: AtomicBool,
    /// Taken out by outlier detection; the health check does not bring it back.
    ejected: AtomicBool,
    /// 5xx answers and connection failures in a row, for outlier detection.
    pub(super) consecutive_errors: AtomicU64,
    pub(super) ejection: Mutex<Ejection>,
}

impl Endpoint {
    pub fn new(address: String) -> Endpoint {
        Endpoint {
            address,
            healthy: AtomicBool::new(true),
            ejected: AtomicBool::new(false),
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

    /// Healthy and not ejected: worth sending a request to.
    pub fn is_available(&self) -> bool {
        self.is_healthy() && !self.is_ejected()
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }
}

/// One cluster's live state. Kept across config swaps while its config is unchanged, so
/// health and pooled connections survive an unrelated change.
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
}

impl Cluster {
    pub(crate) fn new(
        name: &str,
        config: &ClusterConfig,
        tls: Option<UpstreamTls>,
        stats: &Stats,
    ) -> Cluster {
        Cluster {
            name: name.to_owned(),
            config: config.clone(),
            // Endpoints start healthy, as Envoy's do before the first check: a new proxy
            // serves at once, and the first failed checks take a dead endpoint out.
            endpoints: config
                .endpoints
                .iter()
                .map(|a| Arc::new(Endpoint::new(a.clone())))
                .collect(),
            next: AtomicUsize::new(0),
            limiter: config.connection_pool.map(|p| Limiter::new(name, p, stats)),
            outlier: config
                .outlier_detection
                .map(|o| Outlier::new(name, o, stats)),
            tls_client: tls.map(|t| client(config.protocol, Some(Arc::new(t)))),
        }
    }

    /// The client that reaches this cluster: its TLS client, or the shared plain one.
    pub fn client<'a>(&'a self, shared: &'a Clients) -> &'a Client<Connector, Body> {
        match &self.tls_client {
            Some(c) => c,
            None => shared.for_protocol(self.config.protocol),
        }
    }

    pub fn has_healthy(&self) -> bool {
        self.endpoints.iter().any(|e| e.is_available())
    }

    /// Feeds outlier detection with one answer of `ep`.
    pub fn record(&self, ep: &Endpoint, server_error: bool) {
        if let Some(o) = &self.outlier {
            o.record(&self.endpoints, ep, server_error);
        }
    }

    /// The next available (healthy, not ejected) endpoint, round robin; `skip` avoids the one that just failed.
    pub fn pick(&self, skip: Option<&str>) -> Option<&Arc<Endpoint>> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut fallback = None;
        for i in 0..n {
            let ep = &self.endpoints[(start + i) % n];
            if !ep.is_available() {
                continue;
            }
            if skip == Some(ep.address.as_str()) {
                fallback.get_or_insert(ep);
                continue;
            }
            return Some(ep);
        }
        fallback
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
