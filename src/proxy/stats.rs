//! The proxy's Prometheus metrics: one registry of request, TCP, TLS, health, outlier and
//! overflow families. Response counters and latency histograms are made once per route and
//! cluster when a config is applied, so the request path only increments atomics; rarer
//! events (TLS handshakes, local errors, ejections) look their labels up when they happen.

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

/// A listener, named as Envoy names it in App Mesh (`0.0.0.0_9080`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

/// `peer`: the SPIFFE id (first URI SAN) or first DNS SAN of the other side, `none` when it
/// sent no certificate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerPeerLabels {
    pub listener: String,
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerReasonLabels {
    pub listener: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterPeerLabels {
    pub cluster: String,
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterReasonLabels {
    pub cluster: String,
    pub reason: String,
}

/// `target`: the cluster, or an inbound listener's local app; `limit`: the limit that was
/// full (`max_in_flight`, `max_pending`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OverflowLabels {
    pub target: String,
    pub limit: String,
}

/// `direction`: `in` is bytes from the downstream towards the cluster, `out` the answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TcpBytesLabels {
    pub cluster: String,
    pub direction: String,
}

pub struct Stats {
    pub registry: Registry,
    /// Raw TCP connections proxied, per cluster (an inbound listener's is `cds_ingress_…`).
    pub tcp_connections: Family<ClusterLabels, Counter>,
    pub tcp_active: Family<ClusterLabels, Gauge>,
    pub tcp_bytes: Family<TcpBytesLabels, Counter>,
    pub responses: Family<RouteLabels, Counter>,
    pub latency: Family<ClusterLabels, Histogram>,
    pub healthy: Family<EndpointLabels, Gauge>,
    pub local_errors: Family<ErrorLabels, Counter>,
    pub active_connections: Gauge,
    pub retries: Counter,
    /// Requests a sidecar's egress passed through to an undeclared destination (ALLOW_ALL).
    pub egress_passthrough: Counter,
    /// Intercepted connections a sidecar's egress passed through to their original
    /// destination (ALLOW_ALL, not HTTP).
    pub egress_passthrough_tcp: Counter,
    pub listener_tls_handshakes: Family<ListenerPeerLabels, Counter>,
    pub listener_tls_failures: Family<ListenerReasonLabels, Counter>,
    pub listener_tls_resumed: Family<ListenerLabels, Counter>,
    pub listener_plaintext: Family<ListenerLabels, Counter>,
    pub upstream_tls_handshakes: Family<ClusterPeerLabels, Counter>,
    pub upstream_tls_failures: Family<ClusterReasonLabels, Counter>,
    pub upstream_tls_resumed: Family<ClusterLabels, Counter>,
    /// Unix time the proxy's own leaf expires; 0 before credentials are set.
    pub credentials_expiry: Gauge,
    /// Requests refused by a `connectionPool` limit (Envoy's `upstream_rq_pending_overflow`).
    pub overflows: Family<OverflowLabels, Counter>,
    /// Endpoints ejected by outlier detection (Envoy's `outlier_detection.ejections_enforced_total`).
    pub outlier_ejections: Family<ClusterLabels, Counter>,
    /// Endpoints out of rotation by outlier detection now (Envoy's `ejections_active`).
    pub outlier_ejected: Family<ClusterLabels, Gauge>,
    /// Open connections closed because their peer's identity was revoked after they opened.
    pub revoked_connections_closed: Counter,
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
        let egress_passthrough = Counter::default();
        let egress_passthrough_tcp = Counter::default();
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
        registry.register(
            "egress_passthrough_requests",
            "Requests to destinations that are none of the node's backends, passed through because the mesh's egressFilter is ALLOW_ALL (Envoy's PassthroughCluster)",
            egress_passthrough.clone(),
        );
        registry.register(
            "egress_passthrough_connections",
            "Intercepted connections (not HTTP) to destinations that are none of the node's backends, passed through to their original destination because the mesh's egressFilter is ALLOW_ALL",
            egress_passthrough_tcp.clone(),
        );
        let listener_tls_handshakes = Family::<ListenerPeerLabels, Counter>::default();
        let listener_tls_failures = Family::<ListenerReasonLabels, Counter>::default();
        let listener_tls_resumed = Family::<ListenerLabels, Counter>::default();
        let listener_plaintext = Family::<ListenerLabels, Counter>::default();
        let upstream_tls_handshakes = Family::<ClusterPeerLabels, Counter>::default();
        let upstream_tls_failures = Family::<ClusterReasonLabels, Counter>::default();
        let upstream_tls_resumed = Family::<ClusterLabels, Counter>::default();
        let credentials_expiry = Gauge::default();
        registry.register(
            "listener_tls_handshakes",
            "TLS handshakes a listener completed, by peer identity (Envoy's listener ssl.handshake)",
            listener_tls_handshakes.clone(),
        );
        registry.register(
            "listener_tls_failures",
            "TLS connections a listener refused, by reason",
            listener_tls_failures.clone(),
        );
        registry.register(
            "listener_tls_resumed",
            "Listener TLS handshakes that resumed a session",
            listener_tls_resumed.clone(),
        );
        registry.register(
            "listener_plaintext_connections",
            "Plain-text connections a PERMISSIVE listener took",
            listener_plaintext.clone(),
        );
        registry.register(
            "upstream_tls_handshakes",
            "TLS handshakes to a cluster's endpoints, by peer identity (Envoy's cluster ssl.handshake)",
            upstream_tls_handshakes.clone(),
        );
        registry.register(
            "upstream_tls_failures",
            "Failed TLS handshakes to a cluster's endpoints, by reason",
            upstream_tls_failures.clone(),
        );
        registry.register(
            "upstream_tls_resumed",
            "Upstream TLS handshakes that resumed a session",
            upstream_tls_resumed.clone(),
        );
        registry.register(
            "credentials_expiry_unix_seconds",
            "When the proxy's own certificate expires; 0 before it has one",
            credentials_expiry.clone(),
        );
        let overflows = Family::<OverflowLabels, Counter>::default();
        let outlier_ejections = Family::<ClusterLabels, Counter>::default();
        let outlier_ejected = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "overflows",
            "Requests refused with 503 because a connectionPool limit was full",
            overflows.clone(),
        );
        registry.register(
            "outlier_ejections",
            "Endpoints ejected by outlier detection",
            outlier_ejections.clone(),
        );
        registry.register(
            "outlier_ejected_endpoints",
            "Endpoints out of rotation by outlier detection now",
            outlier_ejected.clone(),
        );
        let revoked_connections_closed = Counter::default();
        registry.register(
            "revoked_connections_closed",
            "Open connections closed because the control plane revoked their peer's identity",
            revoked_connections_closed.clone(),
        );
        let tcp_connections = Family::<ClusterLabels, Counter>::default();
        let tcp_active = Family::<ClusterLabels, Gauge>::default();
        let tcp_bytes = Family::<TcpBytesLabels, Counter>::default();
        registry.register(
            "tcp_connections",
            "Raw TCP connections proxied to a cluster (Envoy's upstream_cx_total)",
            tcp_connections.clone(),
        );
        registry.register(
            "tcp_active_connections",
            "Raw TCP connections open to a cluster now",
            tcp_active.clone(),
        );
        registry.register(
            "tcp_bytes",
            "Bytes spliced over raw TCP, per cluster; in: towards the cluster, out: back",
            tcp_bytes.clone(),
        );
        Stats {
            revoked_connections_closed,
            tcp_connections,
            tcp_active,
            tcp_bytes,
            overflows,
            outlier_ejections,
            outlier_ejected,
            listener_tls_handshakes,
            listener_tls_failures,
            listener_tls_resumed,
            listener_plaintext,
            upstream_tls_handshakes,
            upstream_tls_failures,
            upstream_tls_resumed,
            credentials_expiry,
            registry,
            responses,
            latency,
            healthy,
            local_errors,
            active_connections,
            retries,
            egress_passthrough,
            egress_passthrough_tcp,
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
