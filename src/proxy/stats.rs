//! The proxy's Prometheus metrics. Handles are made once per route and cluster when a config
//! is applied, so the request path only increments atomics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub cluster: String,
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub cluster: String,
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: String,
}

pub struct Stats {
    pub registry: Registry,
    pub responses: Family<RouteLabels, Counter>,
    pub latency: Family<ClusterLabels, Histogram>,
    pub healthy: Family<EndpointLabels, Gauge>,
    pub local_errors: Family<ErrorLabels, Counter>,
    pub active_connections: Gauge,
    pub retries: Counter,
}

impl Stats {
    pub fn new() -> Stats {
        let mut registry = Registry::with_prefix("appliance");
        let responses = Family::<RouteLabels, Counter>::default();
        let latency = Family::<ClusterLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let healthy = Family::<EndpointLabels, Gauge>::default();
        let local_errors = Family::<ErrorLabels, Counter>::default();
        let active_connections = Gauge::default();
        let retries = Counter::default();
        registry.register(
            "responses",
            "Responses by route, target cluster and status class",
            responses.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time to the upstream's response headers, per cluster",
            latency.clone(),
        );
        registry.register(
            "endpoint_healthy",
            "1 when the endpoint passes its health check",
            healthy.clone(),
        );
        registry.register(
            "local_errors",
            "Requests the proxy answered itself, by reason",
            local_errors.clone(),
        );
        registry.register(
            "active_connections",
            "Open downstream connections",
            active_connections.clone(),
        );
        registry.register("retries", "Upstream requests retried", retries.clone());
        Stats {
            registry,
            responses,
            latency,
            healthy,
            local_errors,
            active_connections,
            retries,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

pub fn class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
