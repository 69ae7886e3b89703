//! Clusters at run time: their endpoints with health, round-robin choice among the healthy
//! ones, and the pooled HTTP clients that reach them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::error::Body;
use super::tls::{Connector, UpstreamTls};
use crate::compile::ClusterConfig;
use crate::model::spec::PortProtocol;

/// Idle upstream connections are kept this long for reuse.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Time to open a TCP connection to an endpoint before it counts as a connection failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Endpoint {
    pub address: String,
    healthy: AtomicBool,
}

impl Endpoint {
    pub fn new(address: String) -> Endpoint {
        Endpoint {
            address,
            healthy: AtomicBool::new(true),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
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
    /// For a cluster under a TLS client policy: its own client, whose one rustls config
    /// (and session cache) every connection to the cluster shares.
    tls_client: Option<Client<Connector, Body>>,
}

impl Cluster {
    pub(crate) fn new(name: &str, config: &ClusterConfig, tls: Option<UpstreamTls>) -> Cluster {
        Cluster {
            name: name.to_owned(),
            config: config.clone(),
            // Endpoints start healthy, as Envoy's do before the first check: a new proxy
            // serves at once, and the first failed checks take a dead endpoint out.
            endpoints: config
                .endpoints
                .iter()
                .map(|a| {
                    Arc::new(Endpoint {
                        address: a.clone(),
                        healthy: AtomicBool::new(true),
                    })
                })
                .collect(),
            next: AtomicUsize::new(0),
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
        self.endpoints.iter().any(|e| e.is_healthy())
    }

    /// The next healthy endpoint, round robin; `skip` avoids the one that just failed.
    pub fn pick(&self, skip: Option<&str>) -> Option<&Arc<Endpoint>> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut fallback = None;
        for i in 0..n {
            let ep = &self.endpoints[(start + i) % n];
            if !ep.is_healthy() {
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
