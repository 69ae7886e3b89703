//! The virtual service's, virtual gateway's and gateway route's specs.

use serde::{Deserialize, Serialize};

use super::*;

// === VirtualServiceSpec ===

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualServiceSpec {
    /// A virtual service may have no provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<VirtualServiceProvider>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum VirtualServiceProvider {
    VirtualNode(VirtualNodeServiceProvider),
    VirtualRouter(VirtualRouterServiceProvider),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualNodeServiceProvider {
    pub virtual_node_name: ResourceName,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualRouterServiceProvider {
    pub virtual_router_name: ResourceName,
}

// === VirtualGatewaySpec ===

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualGatewaySpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_defaults: Option<BackendDefaults>,
    pub listeners: Vec<VirtualGatewayListener>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualGatewayListener {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<VirtualGatewayConnectionPool>,
    /// Its protocol is never `tcp` (the model refuses it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckPolicy>,
    pub port_mapping: VirtualGatewayPortMapping,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum VirtualGatewayConnectionPool {
    Grpc(GrpcConnectionPool),
    Http(HttpConnectionPool),
    Http2(Http2ConnectionPool),
}

impl VirtualGatewayConnectionPool {
    pub fn protocol(&self) -> GatewayPortProtocol {
        match self {
            Self::Grpc(_) => GatewayPortProtocol::Grpc,
            Self::Http(_) => GatewayPortProtocol::Http,
            Self::Http2(_) => GatewayPortProtocol::Http2,
        }
    }
}

// === GatewayRouteSpec ===

/// A gateway route: exactly one route type (no tcp) and a priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawGatewayRouteSpec", into = "RawGatewayRouteSpec")]
pub struct GatewayRouteSpec {
    /// 0..1000, 0 is the highest.
    pub priority: Option<u32>,
    pub route: GatewayRouteType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayRouteType {
    Http(HttpGatewayRoute),
    Http2(HttpGatewayRoute),
    Grpc(GrpcGatewayRoute),
}

impl GatewayRouteType {
    pub fn protocol(&self) -> GatewayPortProtocol {
        match self {
            Self::Http(_) => GatewayPortProtocol::Http,
            Self::Http2(_) => GatewayPortProtocol::Http2,
            Self::Grpc(_) => GatewayPortProtocol::Grpc,
        }
    }

    pub fn member(&self) -> &'static str {
        match self {
            Self::Http(_) => "httpRoute",
            Self::Http2(_) => "http2Route",
            Self::Grpc(_) => "grpcRoute",
        }
    }
}

impl GatewayRouteSpec {
    pub fn target(&self) -> &GatewayRouteTarget {
        match &self.route {
            GatewayRouteType::Http(r) | GatewayRouteType::Http2(r) => &r.action.target,
            GatewayRouteType::Grpc(r) => &r.action.target,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawGatewayRouteSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_route: Option<GrpcGatewayRoute>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http2_route: Option<HttpGatewayRoute>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_route: Option<HttpGatewayRoute>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u32>,
}

/// Why a gateway route spec's JSON is not one gateway route.
#[derive(Debug, thiserror::Error)]
pub enum GatewayRouteSpecError {
    /// None, or more than one, of the route kinds is present.
    #[error("exactly one of httpRoute, http2Route, grpcRoute must be set")]
    NotOneRouteKind,
}

impl TryFrom<RawGatewayRouteSpec> for GatewayRouteSpec {
    type Error = GatewayRouteSpecError;

    fn try_from(raw: RawGatewayRouteSpec) -> Result<Self, GatewayRouteSpecError> {
        let route = match (raw.http_route, raw.http2_route, raw.grpc_route) {
            (Some(r), None, None) => GatewayRouteType::Http(r),
            (None, Some(r), None) => GatewayRouteType::Http2(r),
            (None, None, Some(r)) => GatewayRouteType::Grpc(r),
            _ => return Err(GatewayRouteSpecError::NotOneRouteKind),
        };
        Ok(Self {
            priority: raw.priority,
            route,
        })
    }
}

impl From<GatewayRouteSpec> for RawGatewayRouteSpec {
    fn from(spec: GatewayRouteSpec) -> Self {
        let mut raw = RawGatewayRouteSpec {
            grpc_route: None,
            http2_route: None,
            http_route: None,
            priority: spec.priority,
        };
        match spec.route {
            GatewayRouteType::Http(r) => raw.http_route = Some(r),
            GatewayRouteType::Http2(r) => raw.http2_route = Some(r),
            GatewayRouteType::Grpc(r) => raw.grpc_route = Some(r),
        }
        raw
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGatewayRoute {
    pub action: HttpGatewayRouteAction,
    pub r#match: HttpGatewayRouteMatch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGatewayRouteAction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpGatewayRouteRewrite>,
    pub target: GatewayRouteTarget,
}

/// Unset parts keep App Mesh's defaults: the host becomes the target virtual service's name
/// and a matched prefix becomes `/`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGatewayRouteRewrite {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<GatewayRouteHostnameRewrite>,
    /// Only with a `path` match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpGatewayRoutePathRewrite>,
    /// Only with a `prefix` match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<HttpGatewayRoutePrefixRewrite>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayRouteHostnameRewrite {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_target_hostname: Option<DefaultGatewayRouteRewrite>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGatewayRoutePathRewrite {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGatewayRoutePrefixRewrite {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_prefix: Option<DefaultGatewayRouteRewrite>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DefaultGatewayRouteRewrite {
    Enabled,
    Disabled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayRouteTarget {
    /// The provider's listener port; needed when the provider has several listeners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub virtual_service: GatewayRouteVirtualService,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayRouteVirtualService {
    pub virtual_service_name: ResourceName,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGatewayRouteMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<HttpRouteHeader>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<GatewayRouteHostnameMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_parameters: Option<Vec<HttpQueryParameter>>,
}

/// Exactly one of `exact` and `suffix` (checked by `Spec::parse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayRouteHostnameMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcGatewayRoute {
    pub action: GrpcGatewayRouteAction,
    pub r#match: GrpcGatewayRouteMatch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcGatewayRouteAction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<GrpcGatewayRouteRewrite>,
    pub target: GatewayRouteTarget,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcGatewayRouteRewrite {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<GatewayRouteHostnameRewrite>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcGatewayRouteMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<GatewayRouteHostnameMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Vec<GrpcRouteMetadata>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}
