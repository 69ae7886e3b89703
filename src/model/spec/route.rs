//! The virtual router's and the route's specs.

use serde::{Deserialize, Serialize};

use super::*;

// === VirtualRouterSpec ===

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualRouterSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listeners: Option<Vec<VirtualRouterListener>>,
}

impl VirtualRouterSpec {
    pub fn listeners(&self) -> &[VirtualRouterListener] {
        self.listeners.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualRouterListener {
    pub port_mapping: PortMapping,
}

// === RouteSpec ===

/// A route: exactly one route type (App Mesh's "Specify one route type") and a priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRouteSpec", into = "RawRouteSpec")]
pub struct RouteSpec {
    /// 0..1000, 0 is the highest.
    pub priority: Option<u32>,
    pub route: RouteType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteType {
    Http(HttpRoute),
    Http2(HttpRoute),
    Grpc(GrpcRoute),
    Tcp(TcpRoute),
}

impl RouteType {
    /// The listener protocol this route serves.
    pub fn protocol(&self) -> PortProtocol {
        match self {
            Self::Http(_) => PortProtocol::Http,
            Self::Http2(_) => PortProtocol::Http2,
            Self::Grpc(_) => PortProtocol::Grpc,
            Self::Tcp(_) => PortProtocol::Tcp,
        }
    }

    /// The route's JSON member (`httpRoute`).
    pub fn member(&self) -> &'static str {
        match self {
            Self::Http(_) => "httpRoute",
            Self::Http2(_) => "http2Route",
            Self::Grpc(_) => "grpcRoute",
            Self::Tcp(_) => "tcpRoute",
        }
    }
}

impl RouteSpec {
    pub fn weighted_targets(&self) -> &[WeightedTarget] {
        match &self.route {
            RouteType::Http(r) | RouteType::Http2(r) => &r.action.weighted_targets,
            RouteType::Grpc(r) => &r.action.weighted_targets,
            RouteType::Tcp(r) => &r.action.weighted_targets,
        }
    }
}

/// RouteSpec as on the wire, before "exactly one route type" is checked.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRouteSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_route: Option<GrpcRoute>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http2_route: Option<HttpRoute>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_route: Option<HttpRoute>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_route: Option<TcpRoute>,
}

/// Why a route spec's JSON is not one route.
#[derive(Debug, thiserror::Error)]
pub enum RouteSpecError {
    /// None, or more than one, of the route kinds is present.
    #[error("exactly one of httpRoute, http2Route, grpcRoute, tcpRoute must be set")]
    NotOneRouteKind,
}

impl TryFrom<RawRouteSpec> for RouteSpec {
    type Error = RouteSpecError;

    fn try_from(raw: RawRouteSpec) -> Result<Self, RouteSpecError> {
        let route = match (
            raw.http_route,
            raw.http2_route,
            raw.grpc_route,
            raw.tcp_route,
        ) {
            (Some(r), None, None, None) => RouteType::Http(r),
            (None, Some(r), None, None) => RouteType::Http2(r),
            (None, None, Some(r), None) => RouteType::Grpc(r),
            (None, None, None, Some(r)) => RouteType::Tcp(r),
            _ => return Err(RouteSpecError::NotOneRouteKind),
        };
        Ok(Self {
            priority: raw.priority,
            route,
        })
    }
}

impl From<RouteSpec> for RawRouteSpec {
    fn from(spec: RouteSpec) -> Self {
        let mut raw = RawRouteSpec {
            grpc_route: None,
            http2_route: None,
            http_route: None,
            priority: spec.priority,
            tcp_route: None,
        };
        match spec.route {
            RouteType::Http(r) => raw.http_route = Some(r),
            RouteType::Http2(r) => raw.http2_route = Some(r),
            RouteType::Grpc(r) => raw.grpc_route = Some(r),
            RouteType::Tcp(r) => raw.tcp_route = Some(r),
        }
        raw
    }
}

/// An `httpRoute` or `http2Route`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    pub action: RouteAction,
    pub r#match: HttpRouteMatch,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<HttpRetryPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HttpTimeout>,
}

/// The action of every route type: weighted targets (1..10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteAction {
    pub weighted_targets: Vec<WeightedTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedTarget {
    /// The target node's listener port; needed when the node has several listeners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub virtual_node: ResourceName,
    /// 0..100, relative to the route's other targets.
    pub weight: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<HttpRouteHeader>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Starts with `/`; `/` matches every path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_parameters: Option<Vec<HttpQueryParameter>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<HttpScheme>,
}

/// A header match (HTTP routes and gateway routes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteHeader {
    /// Match when the header does NOT match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invert: Option<bool>,
    /// Unset: the header must be present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#match: Option<HeaderMatchMethod>,
    pub name: String,
}

/// How a header or gRPC metadata value is matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HeaderMatchMethod {
    Exact(String),
    Prefix(String),
    Range(MatchRange),
    Regex(String),
    Suffix(String),
}

/// An integer range, `start` inclusive and `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchRange {
    pub end: i64,
    pub start: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
            Self::Options => "OPTIONS",
            Self::Trace => "TRACE",
            Self::Patch => "PATCH",
        }
    }
}

/// Exactly one of `exact` and `regex` (checked by `Spec::parse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpPathMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpQueryParameter {
    /// Unset: the parameter must be present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#match: Option<QueryParameterMatch>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryParameterMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpScheme {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetryPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_retry_events: Option<Vec<HttpRetryEvent>>,
    pub max_retries: u64,
    pub per_retry_timeout: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_retry_events: Option<Vec<TcpRetryEvent>>,
}

/// What makes an HTTP request retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HttpRetryEvent {
    /// 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511.
    ServerError,
    /// 502, 503, 504.
    GatewayError,
    /// 409.
    ClientError,
    /// A refused stream.
    StreamError,
}

impl HttpRetryEvent {
    pub const WIRE: [&'static str; 4] = [
        "server-error",
        "gateway-error",
        "client-error",
        "stream-error",
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TcpRetryEvent {
    ConnectionError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrpcRetryEvent {
    Cancelled,
    DeadlineExceeded,
    Internal,
    ResourceExhausted,
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRoute {
    pub action: RouteAction,
    pub r#match: GrpcRouteMatch,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<GrpcRetryPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GrpcTimeout>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRouteMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Vec<GrpcRouteMetadata>>,
    /// Requires `service_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

/// A gRPC metadata match (routes and gateway routes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRouteMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invert: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#match: Option<HeaderMatchMethod>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRetryPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_retry_events: Option<Vec<GrpcRetryEvent>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_retry_events: Option<Vec<HttpRetryEvent>>,
    pub max_retries: u64,
    pub per_retry_timeout: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_retry_events: Option<Vec<TcpRetryEvent>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    pub action: RouteAction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#match: Option<TcpRouteMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TcpTimeout>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRouteMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}
