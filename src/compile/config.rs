//! `ProxyConfig`: everything one proxy runs, and nothing it could look up elsewhere. Plain
//! data (serde), deterministic (sorted maps and lists), so "push only if it changed" is `==`
//! and the same value is the file a proxy runs from and the JSON `/config` shows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::spec::{
    EgressFilterType, FileAccessLog, HealthCheckPolicy, HttpGatewayRouteMatch,
    HttpGatewayRouteRewrite, HttpRouteMatch, ListenerTlsMode, PortProtocol,
};
use crate::model::Identity;

/// App Mesh's per-request timeout when a route or listener sets none.
pub const DEFAULT_PER_REQUEST_TIMEOUT_MS: u64 = 15_000;
/// App Mesh's idle timeout when a listener sets none.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 300_000;
/// App Mesh's retries when a route sets no policy: 2 on 503 and connection failures.
pub const DEFAULT_MAX_RETRIES: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    pub identity: Identity,
    /// The store version it was compiled from; 0 for a hand-made file.
    pub version: u64,
    pub listeners: Vec<ListenerConfig>,
    /// Virtual service name -> its routes, in match order.
    pub services: BTreeMap<String, ServiceConfig>,
    /// Cluster name -> the endpoints of one virtual node's listener.
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// The node's or gateway's `logging.accessLog.file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<FileAccessLog>,
    /// Virtual service name -> its `tcpRoute`s, for backends reached over raw TCP. Apart
    /// from `services` because raw TCP has nothing to match but the port: a sidecar serves
    /// them on its `--egress-tcp` ports, never on the HTTP egress listener.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tcp_routes: BTreeMap<String, Vec<TcpRouteConfig>>,
    /// The mesh's `egressFilter`: what a sidecar's egress does with a destination that is
    /// none of its backends (ALLOW_ALL passes it through, DROP_ALL refuses it).
    #[serde(default, skip_serializing_if = "EgressFilterType::is_drop_all")]
    pub egress_filter: EgressFilterType,
    /// Revoked identities (`mesh/M/virtualNode/N`), from the control plane's CA: a peer
    /// presenting a certificate with one as its SPIFFE id is refused in the TLS handshake,
    /// however long its leaf has left. Set by the control plane, not by `compile`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_peers: Vec<String>,
}

/// One `tcpRoute` (or the implicit route of a node-provided service whose listener is tcp).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpRouteConfig {
    /// `virtualRouter/route`, or `virtualNode/<node>`.
    pub name: String,
    /// The route's `match.port`: with several router listeners, the one it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Picked by weight once per connection.
    pub targets: Vec<WeightedCluster>,
    /// A connection with no bytes either way for this long is closed (`timeout.idle`).
    pub idle_timeout_ms: u64,
    /// Further connect attempts, to another endpoint, when one cannot be reached. A TCP
    /// connection is retried only before its first byte, so nothing is ever sent twice.
    pub connect_retries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerConfig {
    pub port: u16,
    pub protocol: PortProtocol,
    /// A node listener's `timeout.perRequest` for requests to the local app; 0 disables it.
    pub per_request_timeout_ms: u64,
    /// A node listener's `timeout.idle` (stream idle for HTTP kinds, connection idle for
    /// tcp); 0 disables it.
    pub idle_timeout_ms: u64,
    pub role: ListenerRole,
    /// TLS the listener terminates; none is plain text (App Mesh's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTlsConfig>,
    /// The listener's `connectionPool`. On a virtual node listener it bounds the sidecar's
    /// requests to the local app; on a virtual gateway listener it is copied onto every
    /// cluster the listener's routes reach (see `ClusterConfig::connection_pool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolConfig>,
}

/// App Mesh's `connectionPool`, as the concurrency limits the proxy enforces. Overflow is an
/// immediate 503: requests never queue beyond `max_pending`, and a queued one waits no longer
/// than its own per-request timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPoolConfig {
    /// Upstream requests in flight at once: `http`/`tcp` `maxConnections` (an HTTP/1.1
    /// connection carries one request at a time, so this is the connections in use) or
    /// `http2`/`grpc` `maxRequests`.
    pub max_in_flight: u32,
    /// `http` `maxPendingRequests`: requests that may wait for one of those (App Mesh's
    /// default, 2147483647, when unset). 0 for `http2`, `grpc` and `tcp`: no waiting at all.
    pub max_pending: u32,
}

/// App Mesh's `outlierDetection` of a virtual node listener (Envoy's consecutive 5xx): after
/// `max_server_errors` 5xx answers or connection failures in a row, an endpoint leaves the
/// rotation for `base_ejection_ms` times the number of times it has been ejected; a sweep
/// every `interval_ms` brings back those whose time is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierConfig {
    pub max_server_errors: u64,
    pub interval_ms: u64,
    pub base_ejection_ms: u64,
    /// 0..=100 percent of the cluster's endpoints that may be out at once; one always may.
    pub max_ejection_percent: u32,
}

/// A listener's `tls`: what it serves and, for mutual TLS, whom it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTlsConfig {
    /// STRICT: TLS only. PERMISSIVE: TLS and plain text on one port, told apart by the
    /// first byte. DISABLED: plain text only (the certificate is not loaded).
    pub mode: ListenerTlsMode,
    pub certificate: CertificateSource,
    /// Present: clients must present a certificate this validates (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationConfig>,
}

/// Where a certificate and its private key come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CertificateSource {
    /// The proxy's own leaf from the appliance CA, on a key that never left the proxy's host
    /// (what an `acm` certificate ARN or an `sds` secret means here).
    Own,
    /// PEM files on the proxy's host, re-read when they change.
    File { chain: String, key: String },
}

/// Where the roots a peer's certificate must chain to come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TrustSource {
    /// The appliance CA's bundle, delivered with the proxy's own credentials (an `acm`
    /// trust naming the appliance CA, or `sds`).
    Own,
    /// A PEM bundle on the proxy's host, re-read when it changes.
    File { path: String },
}

/// How a peer's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationConfig {
    pub trust: TrustSource,
    /// Exact names, one of which a DNS or URI (SPIFFE) SAN of the peer must equal; empty
    /// means any certificate that chains to the trust is accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alternative_names: Vec<String>,
}

/// TLS a proxy originates to a cluster: the client policy that applies to it (already
/// narrowed by `enforce` and `ports`), or, with none, the TLS App Mesh negotiates anyway
/// because the server's listener is STRICT or PERMISSIVE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTlsConfig {
    /// The client certificate offered when the upstream asks for one (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateSource>,
    pub server: ServerCheck,
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ServerCheck {
    /// The chain must lead to `validation.trust`; then one of its exact SANs must be the
    /// server's, or, when it names none, `expected` (App Mesh: the server's
    /// service-discovery name).
    Verify {
        validation: ValidationConfig,
        expected: PeerName,
    },
    /// App Mesh with no client policy toward a listener serving a `file` certificate: TLS is
    /// negotiated and the certificate is not validated.
    Unverified,
}

/// The name a server's certificate must carry when the client policy lists no SANs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PeerName {
    /// A DNS SAN equal to this name, or a wildcard SAN (`*.apps.local`) covering it: the
    /// virtual node's DNS hostname, or `service.namespace` for Cloud Map discovery.
    Dns(String),
    /// A SPIFFE URI SAN whose path is `/mesh/<mesh>/virtualNode/<node>`: a node with no
    /// service discovery (its endpoints come from the registry) has no DNS name to check.
    Node { mesh: String, node: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ListenerRole {
    /// A virtual gateway listener: gateway routes, in match order, and its `healthCheck`,
    /// which the gateway runs against its own listener: while it fails, the admin `/ready`
    /// says so (503), for the load balancer in front of the gateway.
    Gateway {
        routes: Vec<GatewayRouteConfig>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        health_check: Option<HealthCheckPolicy>,
    },
    /// A virtual node listener: traffic for the local app on this port.
    Inbound {
        health_check: Option<HealthCheckPolicy>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRouteConfig {
    pub name: String,
    pub r#match: HttpGatewayRouteMatch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpGatewayRouteRewrite>,
    /// The target virtual service (a key of `services`).
    pub service: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceConfig {
    /// Empty when the service has no provider: requests get 503 with that reason.
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteConfig {
    /// `virtualRouter/route`, or `virtualNode` for a node-provided service.
    pub name: String,
    pub r#match: HttpRouteMatch,
    pub targets: Vec<WeightedCluster>,
    /// `timeout.perRequest`: from the end of the request until the whole response has
    /// arrived (Envoy's route timeout). 0 disables it.
    pub per_request_timeout_ms: u64,
    /// `timeout.idle`: the longest silence within one request's stream (Envoy's route
    /// `idle_timeout`). 0 disables it.
    #[serde(default = "default_idle")]
    pub idle_timeout_ms: u64,
    pub retry: RetryConfig,
}

fn default_idle() -> u64 {
    DEFAULT_IDLE_TIMEOUT_MS
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightedCluster {
    pub cluster: String,
    pub weight: u32,
}

/// A route's retry policy in Envoy's terms (`retry_on` flags), as App Mesh maps its events
/// (envoy-semantics.md section 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfig {
    pub max_retries: u32,
    /// 0 means the request's own timeout bounds each try.
    pub per_retry_timeout_ms: u64,
    /// HTTP statuses that are retried.
    pub statuses: Vec<u16>,
    /// gRPC statuses (`grpc-status` of a trailers-only answer) that are retried.
    #[serde(default)]
    pub grpc_statuses: Vec<u8>,
    /// Envoy's `connect-failure`: the endpoint could not be connected to (refused,
    /// unreachable, connect timeout). TCP `connection-error`, and part of every `reset`.
    pub connection_errors: bool,
    /// Envoy's `reset` (which `5xx` and `gateway-error` include): the connection was reset or
    /// closed before a whole response head, a connect failure, or the per-try timeout fired.
    /// App Mesh's `server-error` and `gateway-error`, and its default policy.
    #[serde(default)]
    pub reset: bool,
    /// Envoy's `refused-stream`: an HTTP/2 REFUSED_STREAM. App Mesh's `stream-error`.
    #[serde(default)]
    pub refused_stream: bool,
}

impl RetryConfig {
    /// App Mesh's default (envoy-defaults.md): two retries on 503, gRPC UNAVAILABLE, connect
    /// failures, refused streams and resets.
    pub fn app_mesh_default() -> RetryConfig {
        RetryConfig {
            max_retries: DEFAULT_MAX_RETRIES,
            per_retry_timeout_ms: 0,
            statuses: vec![503],
            grpc_statuses: vec![14],
            connection_errors: true,
            reset: true,
            refused_stream: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    pub node: String,
    pub port: u16,
    pub protocol: PortProtocol,
    /// `host:port` of each endpoint. With `dns`, the one entry is a DNS name the proxy
    /// resolves (and re-resolves as its answer's TTL runs out) into the endpoints.
    pub endpoints: Vec<String>,
    /// How the DNS name in `endpoints` becomes endpoints: a node with `dns` service
    /// discovery that no sidecar registers for. None: the endpoints are used as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<super::DnsDiscovery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckPolicy>,
    /// TLS to every endpoint (requests and health checks alike); none is plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsConfig>,
    /// The node listener's `outlierDetection`: it governs traffic to this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierConfig>,
    /// Limits on this proxy's requests to the cluster: a virtual gateway listener's
    /// `connectionPool` (the tightest, should two listeners reach the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolConfig>,
    /// Why the cluster has no endpoints at all: the target node does not exist or has no
    /// such listener. Its requests get a 503 saying so, and the rest of the config still
    /// applies (as Envoy serves a cluster with no hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// Why a config cannot be built or loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("route {route} targets cluster {cluster}, which the config does not define")]
    UnknownCluster { route: String, cluster: String },
    #[error(
        "gateway route {route} targets virtual service {service}, which the config does not define"
    )]
    UnknownService { route: String, service: String },
    #[error("{0} does not exist in the mesh")]
    Missing(String),
    #[error("{0}")]
    Invalid(String),
}

impl ProxyConfig {
    /// Builds a config whose every reference resolves, so the proxy's lookups cannot miss.
    pub fn new(
        identity: Identity,
        version: u64,
        listeners: Vec<ListenerConfig>,
        services: BTreeMap<String, ServiceConfig>,
        clusters: BTreeMap<String, ClusterConfig>,
    ) -> Result<ProxyConfig, ConfigError> {
        let config = ProxyConfig {
            identity,
            version,
            listeners,
            services,
            clusters,
            access_log: None,
            tcp_routes: BTreeMap::new(),
            egress_filter: EgressFilterType::DropAll,
            revoked_peers: Vec::new(),
        };
        config.check()?;
        Ok(config)
    }

    /// Checks the invariants `new` promises; also run on configs read from a file.
    pub fn check(&self) -> Result<(), ConfigError> {
        for l in &self.listeners {
            if let ListenerRole::Gateway { routes, .. } = &l.role {
                for r in routes {
                    if !self.services.contains_key(&r.service) {
                        return Err(ConfigError::UnknownService {
                            route: r.name.clone(),
                            service: r.service.clone(),
                        });
                    }
                }
            }
        }
        for (service, s) in &self.services {
            for r in &s.routes {
                if r.targets.is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "route {} of {service} has no targets",
                        r.name
                    )));
                }
                for t in &r.targets {
                    if !self.clusters.contains_key(&t.cluster) {
                        return Err(ConfigError::UnknownCluster {
                            route: r.name.clone(),
                            cluster: t.cluster.clone(),
                        });
                    }
                }
            }
        }
        for (service, routes) in &self.tcp_routes {
            for r in routes {
                if r.targets.is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "tcp route {} of {service} has no targets",
                        r.name
                    )));
                }
                if let Some(t) = r
                    .targets
                    .iter()
                    .find(|t| !self.clusters.contains_key(&t.cluster))
                {
                    return Err(ConfigError::UnknownCluster {
                        route: r.name.clone(),
                        cluster: t.cluster.clone(),
                    });
                }
            }
        }
        let mut ports: Vec<u16> = self.listeners.iter().map(|l| l.port).collect();
        ports.sort_unstable();
        if ports.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError::Invalid("two listeners share a port".into()));
        }
        Ok(())
    }

    /// Parses and checks a config file's JSON.
    pub fn from_json(text: &str) -> Result<ProxyConfig, ConfigError> {
        let config: ProxyConfig = serde_json::from_str(text)
            .map_err(|e| ConfigError::Invalid(format!("not a proxy config: {e}")))?;
        config.check()?;
        Ok(config)
    }
}
