//! `compile(&snapshot, &identity, &endpoints, version) -> ProxyConfig`: a pure function from
//! a mesh's stored resources to what one proxy needs. No I/O of any kind; the output is
//! deterministic.

mod config;
mod discovery;
mod resilience;
mod tls;

use std::collections::BTreeMap;

pub use config::*;
pub use discovery::{
    attribute_map, check_attribute, parse_attribute, AttributeError, DnsDiscovery, Endpoints,
    Registered, DEFAULT_CLOUD_MAP_IP_PREFERENCE, DEFAULT_DNS_IP_PREFERENCE,
};
pub use resilience::{DEFAULT_MAX_PENDING_REQUESTS, MAX_EJECTION_MS};

use crate::model::spec::{ClientPolicy, ClientPolicyTls};
use crate::model::spec::{
    DefaultGatewayRouteRewrite, GatewayRouteSpec, GatewayRouteType, GrpcGatewayRouteMatch,
    GrpcRetryEvent, GrpcRouteMetadata, HttpGatewayRouteMatch, HttpGatewayRoutePrefixRewrite,
    HttpGatewayRouteRewrite, HttpPathMatch, HttpRetryEvent, HttpRouteHeader, HttpRouteMatch,
    ListenerTimeout, PortProtocol, RouteSpec, RouteType, VirtualGatewaySpec, VirtualNodeSpec,
    VirtualRouterSpec, VirtualServiceProvider, VirtualServiceSpec,
};
use crate::model::{Identity, ProxyKind, ResourceId, ResourceKind, ResourceName, Spec};

/// One mesh's resources, typed.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub mesh: String,
    /// The mesh's own spec (its egress filter).
    pub mesh_spec: crate::model::spec::MeshSpec,
    pub nodes: BTreeMap<String, VirtualNodeSpec>,
    pub routers: BTreeMap<String, VirtualRouterSpec>,
    /// Router name -> (route name, spec).
    pub routes: BTreeMap<String, Vec<(String, RouteSpec)>>,
    pub services: BTreeMap<String, VirtualServiceSpec>,
    pub gateways: BTreeMap<String, VirtualGatewaySpec>,
    /// Gateway name -> (gateway route name, spec).
    pub gateway_routes: BTreeMap<String, Vec<(String, GatewayRouteSpec)>>,
}

impl Snapshot {
    pub fn new(
        mesh: &ResourceName,
        resources: impl IntoIterator<Item = (ResourceId, Spec)>,
    ) -> Snapshot {
        let mut s = Snapshot {
            mesh: mesh.to_string(),
            ..Snapshot::default()
        };
        for (id, spec) in resources {
            let name = id.name.to_string();
            let parent = id
                .parent
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            match spec {
                Spec::VirtualNode(v) => {
                    s.nodes.insert(name, v);
                }
                Spec::VirtualRouter(v) => {
                    s.routers.insert(name, v);
                }
                Spec::Route(v) => s.routes.entry(parent).or_default().push((name, v)),
                Spec::VirtualService(v) => {
                    s.services.insert(name, v);
                }
                Spec::VirtualGateway(v) => {
                    s.gateways.insert(name, v);
                }
                Spec::GatewayRoute(v) => {
                    s.gateway_routes.entry(parent).or_default().push((name, v))
                }
                Spec::Mesh(m) => s.mesh_spec = m,
            }
        }
        for list in s.routes.values_mut() {
            list.sort_by(|a, b| a.0.cmp(&b.0));
        }
        for list in s.gateway_routes.values_mut() {
            list.sort_by(|a, b| a.0.cmp(&b.0));
        }
        s
    }
}

pub fn compile(
    snapshot: &Snapshot,
    identity: &Identity,
    endpoints: &Endpoints,
    version: u64,
) -> Result<ProxyConfig, ConfigError> {
    if identity.mesh.as_str() != snapshot.mesh {
        return Err(ConfigError::Missing(format!(
            "mesh {} (this snapshot is of mesh {})",
            identity.mesh, snapshot.mesh
        )));
    }
    let mut b = Builder {
        snapshot,
        endpoints,
        services: BTreeMap::new(),
        clusters: BTreeMap::new(),
        tcp_routes: BTreeMap::new(),
    };
    let (listeners, logging) = match identity.kind {
        ProxyKind::VirtualGateway => {
            let name = identity.name.as_str();
            (
                b.gateway_listeners(name)?,
                snapshot.gateways.get(name).and_then(|g| g.logging.clone()),
            )
        }
        ProxyKind::VirtualNode => {
            let name = identity.name.as_str();
            (
                b.node(name)?,
                snapshot.nodes.get(name).and_then(|n| n.logging.clone()),
            )
        }
    };
    let mut config =
        ProxyConfig::new(identity.clone(), version, listeners, b.services, b.clusters)?;
    config.access_log = logging
        .and_then(|l| l.access_log)
        .map(|crate::model::spec::AccessLog::File(f)| f);
    config.tcp_routes = b.tcp_routes;
    config.egress_filter = snapshot.mesh_spec.egress_filter_type();
    config.check()?;
    Ok(config)
}

struct Builder<'a> {
    snapshot: &'a Snapshot,
    endpoints: &'a Endpoints,
    services: BTreeMap<String, ServiceConfig>,
    clusters: BTreeMap<String, ClusterConfig>,
    tcp_routes: BTreeMap<String, Vec<TcpRouteConfig>>,
}

fn ms(d: Option<&crate::model::spec::Duration>) -> Option<u64> {
    d.and_then(|d| d.to_std())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Sort key that puts explicit priorities first (0 highest) and, among equals, the more
/// specific match first: an exact path, then a regex, then the longest prefix.
fn order_key(
    priority: Option<u32>,
    prefix: Option<&str>,
    exact: bool,
    regex: bool,
) -> (u32, u8, usize) {
    let kind = if exact {
        0
    } else if regex {
        1
    } else {
        2
    };
    (
        priority.unwrap_or(u32::MAX),
        kind,
        usize::MAX - prefix.map(str::len).unwrap_or(0),
    )
}

impl Builder<'_> {
    fn gateway_listeners(&mut self, name: &str) -> Result<Vec<ListenerConfig>, ConfigError> {
        let gw = self
            .snapshot
            .gateways
            .get(name)
            .ok_or_else(|| ConfigError::Missing(format!("virtual gateway {name}")))?;
        let empty = Vec::new();
        let grs = self.snapshot.gateway_routes.get(name).unwrap_or(&empty);
        // A gateway has no per-backend policies: its defaults cover every target.
        let policy = policy_tls(
            gw.backend_defaults
                .as_ref()
                .and_then(|d| d.client_policy.as_ref()),
        );
        let mut listeners = Vec::new();
        for l in &gw.listeners {
            let (port, protocol) = (
                l.port_mapping.port,
                PortProtocol::from(l.port_mapping.protocol),
            );
            let mut routes = Vec::new();
            for (gr_name, gr) in grs {
                if PortProtocol::from(gr.route.protocol()) != protocol {
                    continue;
                }
                let (m, rewrite, target) = match &gr.route {
                    GatewayRouteType::Http(r) | GatewayRouteType::Http2(r) => (
                        r.r#match.clone(),
                        r.action.rewrite.clone(),
                        &r.action.target,
                    ),
                    GatewayRouteType::Grpc(r) => (
                        grpc_gateway_match(&r.r#match),
                        // A gRPC path names the method: it is never rewritten.
                        Some(HttpGatewayRouteRewrite {
                            hostname: r.action.rewrite.as_ref().and_then(|w| w.hostname.clone()),
                            path: None,
                            prefix: Some(HttpGatewayRoutePrefixRewrite {
                                default_prefix: Some(DefaultGatewayRouteRewrite::Disabled),
                                value: None,
                            }),
                        }),
                        &r.action.target,
                    ),
                };
                if m.port.is_some_and(|p| p != port) {
                    continue;
                }
                let service = target.virtual_service.virtual_service_name.to_string();
                self.service(&service, target.port, Some(protocol), policy)?;
                let path = m.path.as_ref();
                let key = order_key(
                    gr.priority,
                    m.prefix.as_deref(),
                    path.is_some_and(|p| p.exact.is_some()),
                    path.is_some_and(|p| p.regex.is_some()),
                );
                routes.push((
                    key,
                    gr_name.clone(),
                    GatewayRouteConfig {
                        name: gr_name.clone(),
                        r#match: m,
                        rewrite,
                        service,
                    },
                ));
            }
            routes.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            let pool = l.connection_pool.as_ref().map(resilience::gateway_pool);
            if let Some(pool) = pool {
                self.limit_clusters(routes.iter().map(|(_, _, r)| r.service.as_str()), pool);
            }
            listeners.push(ListenerConfig {
                port,
                protocol,
                per_request_timeout_ms: DEFAULT_PER_REQUEST_TIMEOUT_MS,
                idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
                role: ListenerRole::Gateway {
                    routes: routes.into_iter().map(|(_, _, r)| r).collect(),
                    health_check: l.health_check.clone(),
                },
                tls: l.tls.as_ref().map(tls::listener),
                connection_pool: pool,
            });
        }
        Ok(listeners)
    }

    fn node(&mut self, name: &str) -> Result<Vec<ListenerConfig>, ConfigError> {
        let node = self
            .snapshot
            .nodes
            .get(name)
            .ok_or_else(|| ConfigError::Missing(format!("virtual node {name}")))?;
        let defaults = node
            .backend_defaults
            .as_ref()
            .and_then(|d| d.client_policy.as_ref());
        for crate::model::spec::Backend::VirtualService(b) in node.backends.iter().flatten() {
            // A backend's own policy replaces the defaults as a whole, as in App Mesh.
            let policy = policy_tls(b.client_policy.as_ref().or(defaults));
            self.service(b.virtual_service_name.as_str(), None, None, policy)?;
        }
        Ok(node
            .listeners()
            .iter()
            .map(|l| {
                let (per_request, idle) = listener_timeouts(l);
                ListenerConfig {
                    port: l.port_mapping.port,
                    protocol: l.port_mapping.protocol,
                    per_request_timeout_ms: per_request,
                    idle_timeout_ms: idle,
                    role: ListenerRole::Inbound {
                        health_check: l.health_check.clone(),
                    },
                    tls: l.tls.as_ref().map(tls::listener),
                    connection_pool: l.connection_pool.as_ref().map(resilience::node_pool),
                }
            })
            .collect())
    }

    /// Puts a gateway listener's pool on every cluster its routes' services reach: the
    /// gateway's requests to each of them are limited as the listener says.
    fn limit_clusters<'s>(
        &mut self,
        services: impl Iterator<Item = &'s str>,
        pool: ConnectionPoolConfig,
    ) {
        for service in services {
            let Some(s) = self.services.get(service) else {
                continue;
            };
            for t in s.routes.iter().flat_map(|r| &r.targets) {
                if let Some(c) = self.clusters.get_mut(&t.cluster) {
                    c.connection_pool = Some(resilience::tightest(c.connection_pool, pool));
                }
            }
        }
    }

    /// Resolves a virtual service to its routes and their clusters. A service the mesh does
    /// not define (a backend named before it exists) gets no routes: requests to it are 503.
    fn service(
        &mut self,
        name: &str,
        port: Option<u16>,
        protocol: Option<PortProtocol>,
        policy: Option<&ClientPolicyTls>,
    ) -> Result<(), ConfigError> {
        if self.services.contains_key(name) {
            return Ok(());
        }
        let mut routes = Vec::new();
        match self
            .snapshot
            .services
            .get(name)
            .and_then(|s| s.provider.as_ref())
        {
            Some(VirtualServiceProvider::VirtualNode(p)) => {
                let node = p.virtual_node_name.to_string();
                let cluster = self.cluster(&node, port, policy)?;
                // No router, so no route timeout: the provider's listener timeout applies,
                // as App Mesh gives a node-provided service (its default when unset).
                let (per_request, idle) = self
                    .clusters
                    .get(&cluster)
                    .and_then(|c| {
                        let n = self.snapshot.nodes.get(&node)?;
                        n.listeners().iter().find(|l| l.port_mapping.port == c.port)
                    })
                    .map_or(
                        (DEFAULT_PER_REQUEST_TIMEOUT_MS, DEFAULT_IDLE_TIMEOUT_MS),
                        listener_timeouts,
                    );
                routes.push(RouteConfig {
                    name: format!("virtualNode/{node}"),
                    r#match: HttpRouteMatch {
                        prefix: Some("/".into()),
                        ..HttpRouteMatch::default()
                    },
                    targets: vec![WeightedCluster {
                        cluster: cluster.clone(),
                        weight: 1,
                    }],
                    per_request_timeout_ms: per_request,
                    idle_timeout_ms: idle,
                    retry: RetryConfig::app_mesh_default(),
                });
                // A tcp listener is reached over raw TCP too (a sidecar's --egress-tcp).
                let tcp = self
                    .clusters
                    .get(&cluster)
                    .is_some_and(|c| c.protocol == PortProtocol::Tcp);
                if protocol.is_none() && tcp {
                    self.tcp_routes.insert(
                        name.to_owned(),
                        vec![TcpRouteConfig {
                            name: format!("virtualNode/{node}"),
                            port: None,
                            targets: vec![WeightedCluster { cluster, weight: 1 }],
                            idle_timeout_ms: idle,
                            connect_retries: DEFAULT_MAX_RETRIES,
                        }],
                    );
                }
            }
            Some(VirtualServiceProvider::VirtualRouter(p)) => {
                let router = p.virtual_router_name.to_string();
                let empty = Vec::new();
                let mut keyed = Vec::new();
                let mut tcp = Vec::new();
                for (route_name, route) in self.snapshot.routes.get(&router).unwrap_or(&empty) {
                    // Only a sidecar's egress (no listener protocol) carries raw TCP.
                    if let (None, RouteType::Tcp(r)) = (protocol, &route.route) {
                        let mut targets = Vec::new();
                        for t in route.weighted_targets() {
                            let cluster = self.cluster(t.virtual_node.as_str(), t.port, policy)?;
                            targets.push(WeightedCluster {
                                cluster,
                                weight: t.weight,
                            });
                        }
                        tcp.push((
                            (route.priority.unwrap_or(u32::MAX), route_name.clone()),
                            TcpRouteConfig {
                                name: format!("{router}/{route_name}"),
                                port: r.r#match.as_ref().and_then(|m| m.port),
                                targets,
                                idle_timeout_ms: r
                                    .timeout
                                    .as_ref()
                                    .and_then(|t| ms(t.idle.as_ref()))
                                    .unwrap_or(DEFAULT_IDLE_TIMEOUT_MS),
                                // tcpRoute has no retryPolicy: App Mesh's default applies.
                                connect_retries: DEFAULT_MAX_RETRIES,
                            },
                        ));
                        continue;
                    }
                    if !serves(protocol, route.route.protocol()) {
                        continue;
                    }
                    let Some(parts) = route_parts(&route.route) else {
                        continue; // tcp routes: only a sidecar's egress carries them, above
                    };
                    if let (Some(want), Some(have)) = (port, parts.port) {
                        if want != have {
                            continue;
                        }
                    }
                    let mut targets = Vec::new();
                    for t in route.weighted_targets() {
                        let cluster = self.cluster(t.virtual_node.as_str(), t.port, policy)?;
                        targets.push(WeightedCluster {
                            cluster,
                            weight: t.weight,
                        });
                    }
                    let path = parts.r#match.path.as_ref();
                    let key = order_key(
                        route.priority,
                        parts.r#match.prefix.as_deref(),
                        path.is_some_and(|p| p.exact.is_some()),
                        path.is_some_and(|p| p.regex.is_some()),
                    );
                    keyed.push((
                        key,
                        route_name.clone(),
                        RouteConfig {
                            name: format!("{router}/{route_name}"),
                            r#match: parts.r#match,
                            targets,
                            per_request_timeout_ms: parts
                                .per_request_ms
                                .unwrap_or(DEFAULT_PER_REQUEST_TIMEOUT_MS),
                            idle_timeout_ms: parts.idle_ms.unwrap_or(DEFAULT_IDLE_TIMEOUT_MS),
                            retry: parts.retry,
                        },
                    ));
                }
                keyed.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                routes = keyed.into_iter().map(|(_, _, r)| r).collect();
                if !tcp.is_empty() {
                    tcp.sort_by(|a, b| a.0.cmp(&b.0));
                    self.tcp_routes
                        .insert(name.to_owned(), tcp.into_iter().map(|(_, r)| r).collect());
                }
            }
            None => {}
        }
        self.services
            .insert(name.to_owned(), ServiceConfig { routes });
        Ok(())
    }

    /// The cluster for one listener of a virtual node: `cds_egress_<mesh>_<node>_<proto>_<port>`,
    /// App Mesh's Envoy cluster name. The client policy that reaches it through this service
    /// decides its TLS; should two services reach the same listener under different TLS, the
    /// later one gets `_tls<n>` appended, so each cluster has one TLS setting (and one pool).
    fn cluster(
        &mut self,
        node_name: &str,
        port: Option<u16>,
        policy: Option<&ClientPolicyTls>,
    ) -> Result<String, ConfigError> {
        let Some(node) = self.snapshot.nodes.get(node_name) else {
            return Ok(self.unavailable(node_name, port, "does not exist"));
        };
        let listener = match port {
            Some(p) => node.listeners().iter().find(|l| l.port_mapping.port == p),
            None => node.listeners().first(),
        };
        let Some(listener) = listener else {
            let why = match port {
                Some(p) => format!("has no listener on port {p}"),
                None => "has no listener".to_owned(),
            };
            return Ok(self.unavailable(node_name, port, &why));
        };
        let (port, protocol) = (listener.port_mapping.port, listener.port_mapping.protocol);
        let expected = discovery::expected_name(
            &self.snapshot.mesh,
            node_name,
            node.service_discovery.as_ref(),
        );
        let tls = match policy.filter(|p| p.enforces() && p.applies_to_port(port)) {
            Some(p) => Some(tls::client(p, expected)),
            None => listener
                .tls
                .as_ref()
                .and_then(|t| tls::negotiated(t, expected)),
        };
        let base = format!(
            "cds_egress_{}_{node_name}_{}_{port}",
            self.snapshot.mesh,
            protocol.as_str()
        );
        let mut name = base.clone();
        let mut n = 1;
        while self.clusters.get(&name).is_some_and(|c| c.tls != tls) {
            n += 1;
            name = format!("{base}_tls{n}");
        }
        if !self.clusters.contains_key(&name) {
            let (endpoints, dns) = discovery::endpoints(
                &self.snapshot.mesh_spec,
                node.service_discovery.as_ref(),
                self.endpoints.get(node_name).map(Vec::as_slice),
                port,
            );
            self.clusters.insert(
                name.clone(),
                ClusterConfig {
                    node: node_name.to_owned(),
                    port,
                    protocol,
                    endpoints,
                    dns,
                    health_check: listener.health_check.clone(),
                    tls,
                    outlier_detection: listener.outlier_detection.as_ref().map(resilience::outlier),
                    connection_pool: None,
                    unavailable: None,
                },
            );
        }
        Ok(name)
    }

    /// A cluster with no endpoints for a target node that does not exist or has no such
    /// listener: one bad reference costs its own requests (503 naming it), not the config.
    fn unavailable(&mut self, node_name: &str, port: Option<u16>, why: &str) -> String {
        let name = format!(
            "cds_egress_{}_{node_name}_unavailable{}",
            self.snapshot.mesh,
            port.map(|p| format!("_{p}")).unwrap_or_default()
        );
        self.clusters
            .entry(name.clone())
            .or_insert_with(|| ClusterConfig {
                node: node_name.to_owned(),
                port: port.unwrap_or(0),
                protocol: crate::model::spec::PortProtocol::Http,
                endpoints: Vec::new(),
                dns: None,
                health_check: None,
                tls: None,
                outlier_detection: None,
                connection_pool: None,
                unavailable: Some(format!("virtual node {node_name} {why}")),
            });
        name
    }
}

/// A node listener's (perRequest, idle) in ms, App Mesh's defaults filling what it leaves
/// unset, 0 standing for "disabled".
fn listener_timeouts(l: &crate::model::spec::Listener) -> (u64, u64) {
    let (per_request, idle) = match &l.timeout {
        Some(ListenerTimeout::Http(t) | ListenerTimeout::Http2(t)) => {
            (ms(t.per_request.as_ref()), ms(t.idle.as_ref()))
        }
        Some(ListenerTimeout::Grpc(t)) => (ms(t.per_request.as_ref()), ms(t.idle.as_ref())),
        Some(ListenerTimeout::Tcp(t)) => (None, ms(t.idle.as_ref())),
        None => (None, None),
    };
    (
        per_request.unwrap_or(DEFAULT_PER_REQUEST_TIMEOUT_MS),
        idle.unwrap_or(DEFAULT_IDLE_TIMEOUT_MS),
    )
}

/// The TLS part of a client policy, if it has one.
fn policy_tls(policy: Option<&ClientPolicy>) -> Option<&ClientPolicyTls> {
    policy.and_then(|p| p.tls.as_ref())
}

/// Whether a listener of `listener` protocol (`None`: a sidecar's egress, any HTTP kind)
/// carries routes of `route` protocol.
fn serves(listener: Option<PortProtocol>, route: PortProtocol) -> bool {
    match listener {
        None => route != PortProtocol::Tcp,
        Some(PortProtocol::Http2) => matches!(route, PortProtocol::Http2 | PortProtocol::Http),
        Some(l) => l == route,
    }
}

/// What an HTTP-family route contributes, in the proxy's one match language: a gRPC route
/// matches on its path (`/service/method`) and metadata (headers).
struct RouteParts {
    r#match: HttpRouteMatch,
    port: Option<u16>,
    per_request_ms: Option<u64>,
    idle_ms: Option<u64>,
    retry: RetryConfig,
}

fn route_parts(route: &RouteType) -> Option<RouteParts> {
    match route {
        RouteType::Http(r) | RouteType::Http2(r) => Some(RouteParts {
            r#match: r.r#match.clone(),
            port: r.r#match.port,
            per_request_ms: r.timeout.as_ref().and_then(|t| ms(t.per_request.as_ref())),
            idle_ms: r.timeout.as_ref().and_then(|t| ms(t.idle.as_ref())),
            retry: match &r.retry_policy {
                Some(p) => retry_config(
                    p.max_retries,
                    &p.per_retry_timeout,
                    p.http_retry_events.as_deref(),
                    p.tcp_retry_events.as_deref(),
                    None,
                ),
                None => RetryConfig::app_mesh_default(),
            },
        }),
        RouteType::Grpc(r) => {
            let m = &r.r#match;
            let (prefix, path) = match (&m.service_name, &m.method_name) {
                (Some(s), Some(method)) => (
                    None,
                    Some(HttpPathMatch {
                        exact: Some(format!("/{s}/{method}")),
                        regex: None,
                    }),
                ),
                (Some(s), None) => (Some(format!("/{s}/")), None),
                _ => (Some("/".to_owned()), None),
            };
            Some(RouteParts {
                r#match: HttpRouteMatch {
                    prefix,
                    path,
                    headers: metadata_headers(m.metadata.as_deref()),
                    port: m.port,
                    ..HttpRouteMatch::default()
                },
                port: m.port,
                per_request_ms: r.timeout.as_ref().and_then(|t| ms(t.per_request.as_ref())),
                idle_ms: r.timeout.as_ref().and_then(|t| ms(t.idle.as_ref())),
                retry: match &r.retry_policy {
                    Some(p) => retry_config(
                        p.max_retries,
                        &p.per_retry_timeout,
                        p.http_retry_events.as_deref(),
                        p.tcp_retry_events.as_deref(),
                        p.grpc_retry_events.as_deref(),
                    ),
                    None => RetryConfig::app_mesh_default(),
                },
            })
        }
        RouteType::Tcp(_) => None,
    }
}

fn metadata_headers(metadata: Option<&[GrpcRouteMetadata]>) -> Option<Vec<HttpRouteHeader>> {
    metadata.map(|m| {
        m.iter()
            .map(|h| HttpRouteHeader {
                name: h.name.clone(),
                invert: h.invert,
                r#match: h.r#match.clone(),
            })
            .collect()
    })
}

fn grpc_gateway_match(m: &GrpcGatewayRouteMatch) -> HttpGatewayRouteMatch {
    HttpGatewayRouteMatch {
        prefix: Some(
            m.service_name
                .as_ref()
                .map(|s| format!("/{s}/"))
                .unwrap_or_else(|| "/".to_owned()),
        ),
        hostname: m.hostname.clone(),
        headers: metadata_headers(m.metadata.as_deref()),
        port: m.port,
        ..HttpGatewayRouteMatch::default()
    }
}

fn retry_config(
    max_retries: u64,
    per_retry_timeout: &crate::model::spec::Duration,
    http: Option<&[HttpRetryEvent]>,
    tcp: Option<&[crate::model::spec::TcpRetryEvent]>,
    grpc: Option<&[GrpcRetryEvent]>,
) -> RetryConfig {
    RetryConfig {
        max_retries: u32::try_from(max_retries).unwrap_or(u32::MAX),
        per_retry_timeout_ms: ms(Some(per_retry_timeout)).unwrap_or(0),
        statuses: http
            .into_iter()
            .flatten()
            .flat_map(|e| statuses(*e))
            .copied()
            .collect(),
        grpc_statuses: grpc.into_iter().flatten().map(|e| grpc_code(*e)).collect(),
        connection_errors: tcp.is_some_and(|v| !v.is_empty()),
        // `server-error` and `gateway-error` are Envoy's status codes plus `reset`
        // (envoy-semantics.md section 4), so they retry resets and connect failures too.
        reset: http.into_iter().flatten().any(|e| {
            matches!(
                e,
                HttpRetryEvent::ServerError | HttpRetryEvent::GatewayError
            )
        }),
        refused_stream: http
            .into_iter()
            .flatten()
            .any(|e| matches!(e, HttpRetryEvent::StreamError)),
    }
}

/// The gRPC status code of an App Mesh gRPC retry event.
fn grpc_code(event: GrpcRetryEvent) -> u8 {
    match event {
        GrpcRetryEvent::Cancelled => 1,
        GrpcRetryEvent::DeadlineExceeded => 4,
        GrpcRetryEvent::ResourceExhausted => 8,
        GrpcRetryEvent::Internal => 13,
        GrpcRetryEvent::Unavailable => 14,
    }
}

/// The statuses an App Mesh HTTP retry event stands for.
fn statuses(event: HttpRetryEvent) -> &'static [u16] {
    match event {
        HttpRetryEvent::ServerError => &[500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511],
        HttpRetryEvent::GatewayError => &[502, 503, 504],
        HttpRetryEvent::ClientError => &[409],
        HttpRetryEvent::StreamError => &[],
    }
}

/// The kinds of resource a proxy's config depends on: a write to any of them may change it.
pub const INPUT_KINDS: [ResourceKind; 6] = [
    ResourceKind::VirtualNode,
    ResourceKind::VirtualRouter,
    ResourceKind::Route,
    ResourceKind::VirtualService,
    ResourceKind::VirtualGateway,
    ResourceKind::GatewayRoute,
];

#[cfg(test)]
mod tests;

/// Fixtures other modules' tests share.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::walkthrough;
}
