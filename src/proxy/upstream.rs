//! Clusters at run time: their endpoints with health, round-robin choice among the healthy
//! ones, and the pooled HTTP clients that reach them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::error::Body;
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
}

impl Cluster {
    pub fn new(name: &str, config: &ClusterConfig) -> Cluster {
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

/// The HTTP clients every cluster shares: HTTP/1.1 and HTTP/2 (prior knowledge).
#[derive(Clone)]
pub struct Clients {
    pub h1: Client<HttpConnector, Body>,
    pub h2: Client<HttpConnector, Body>,
}

impl Clients {
    pub fn new() -> Clients {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let h1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector.clone());
        let h2 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .http2_only(true)
            .build(connector);
        Clients { h1, h2 }
    }

    pub fn for_protocol(&self, p: PortProtocol) -> &Client<HttpConnector, Body> {
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
