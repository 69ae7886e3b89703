//! The seven App Mesh specs as typed data, in App Mesh's JSON shapes: optional members are
//! `Option`s left out when unset, enums carry App Mesh's wire strings, and unions are Rust
//! enums serialised as `{"member": {...}}`. Serialising a parsed spec gives back its JSON.
//!
//! Shapes that App Mesh declares twice with the same wire form (a virtual node's and a virtual
//! gateway's listener TLS, client policy, health check and logging) are one type here. The
//! model validation (`validate.rs`) has already refused what a gateway may not have (a `tcp`
//! health check, an `acm` client certificate), so the shared types never carry it.
//!
//! Use `Spec::parse` to read a spec from a request: it also applies App Mesh's rules that the
//! model does not state (`rules.rs`) and fills App Mesh's defaults.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApiError, ResourceKind, ResourceName};

// === Spec ===

/// A spec of any of the seven kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    Mesh(MeshSpec),
    VirtualNode(VirtualNodeSpec),
    VirtualRouter(VirtualRouterSpec),
    Route(RouteSpec),
    VirtualService(VirtualServiceSpec),
    VirtualGateway(VirtualGatewaySpec),
    GatewayRoute(GatewayRouteSpec),
}

impl Spec {
    /// `value` is the `spec` member of a Create/Update body that already passed
    /// `validate_body` (or `None` when the body had no spec: only CreateMesh/UpdateMesh allow
    /// that). Applies App Mesh's rules beyond the model and fills App Mesh's defaults.
    pub fn parse(kind: ResourceKind, value: Option<&Value>) -> Result<Spec, ApiError> {
        let value = match value.map(strip_nulls) {
            Some(Value::Null) | None if kind == ResourceKind::Mesh => {
                Value::Object(Default::default())
            }
            Some(Value::Null) | None => {
                return Err(ApiError::bad_request(
                    "request body: missing required member spec",
                ))
            }
            Some(v) => v,
        };
        super::rules::check_json(kind, &value)?;
        let mut spec = match kind {
            ResourceKind::Mesh => Spec::Mesh(from_json(value)?),
            ResourceKind::VirtualNode => Spec::VirtualNode(from_json(value)?),
            ResourceKind::VirtualRouter => Spec::VirtualRouter(from_json(value)?),
            ResourceKind::Route => Spec::Route(from_json(value)?),
            ResourceKind::VirtualService => Spec::VirtualService(from_json(value)?),
            ResourceKind::VirtualGateway => Spec::VirtualGateway(from_json(value)?),
            ResourceKind::GatewayRoute => Spec::GatewayRoute(from_json(value)?),
        };
        super::rules::check(&spec)?;
        spec.fill_defaults();
        Ok(spec)
    }

    pub fn kind(&self) -> ResourceKind {
        match self {
            Spec::Mesh(_) => ResourceKind::Mesh,
            Spec::VirtualNode(_) => ResourceKind::VirtualNode,
            Spec::VirtualRouter(_) => ResourceKind::VirtualRouter,
            Spec::Route(_) => ResourceKind::Route,
            Spec::VirtualService(_) => ResourceKind::VirtualService,
            Spec::VirtualGateway(_) => ResourceKind::VirtualGateway,
            Spec::GatewayRoute(_) => ResourceKind::GatewayRoute,
        }
    }

    /// The spec as App Mesh's describe output shows it, with App Mesh's defaults filled (mesh
    /// `egressFilter.type = DROP_ALL`, client policy TLS `enforce = true`).
    pub fn to_json(&self) -> Value {
        let mut filled = self.clone();
        filled.fill_defaults();
        let json = match &filled {
            Spec::Mesh(s) => serde_json::to_value(s),
            Spec::VirtualNode(s) => serde_json::to_value(s),
            Spec::VirtualRouter(s) => serde_json::to_value(s),
            Spec::Route(s) => serde_json::to_value(s),
            Spec::VirtualService(s) => serde_json::to_value(s),
            Spec::VirtualGateway(s) => serde_json::to_value(s),
            Spec::GatewayRoute(s) => serde_json::to_value(s),
        };
        // These types hold only strings, numbers, booleans and string-keyed structs, which
        // serde_json always serialises; an error here would be a bug in a derive.
        json.unwrap_or(Value::Null)
    }

    /// Same-mesh resources this spec must find existing: a route's weighted targets' virtual
    /// nodes, a virtual service's provider, a gateway route's target virtual service. Sorted,
    /// without duplicates.
    ///
    /// A virtual node's backends are not references: App Mesh lets a node name a backend
    /// service that does not exist yet, which is what allows service<->node cycles.
    pub fn references(&self) -> Vec<(ResourceKind, ResourceName)> {
        let mut refs: Vec<(ResourceKind, ResourceName)> = match self {
            Spec::Route(route) => route
                .weighted_targets()
                .iter()
                .map(|t| (ResourceKind::VirtualNode, t.virtual_node.clone()))
                .collect(),
            Spec::VirtualService(vs) => match &vs.provider {
                Some(VirtualServiceProvider::VirtualNode(p)) => {
                    vec![(ResourceKind::VirtualNode, p.virtual_node_name.clone())]
                }
                Some(VirtualServiceProvider::VirtualRouter(p)) => {
                    vec![(ResourceKind::VirtualRouter, p.virtual_router_name.clone())]
                }
                None => vec![],
            },
            Spec::GatewayRoute(gr) => vec![(
                ResourceKind::VirtualService,
                gr.target().virtual_service.virtual_service_name.clone(),
            )],
            Spec::Mesh(_)
            | Spec::VirtualNode(_)
            | Spec::VirtualRouter(_)
            | Spec::VirtualGateway(_) => vec![],
        };
        refs.sort();
        refs.dedup();
        refs
    }

    /// Every ACM ARN the spec names (listener `certificateArn`, trust
    /// `certificateAuthorityArns`), with the field path, in spec order.
    pub fn acm_arns(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match self {
            Spec::VirtualNode(vn) => {
                for (i, l) in vn.listeners.iter().flatten().enumerate() {
                    listener_tls_arns(&format!("spec.listeners[{i}]"), l.tls.as_ref(), &mut out);
                }
                if let Some(d) = &vn.backend_defaults {
                    client_policy_arns("spec.backendDefaults", d.client_policy.as_ref(), &mut out);
                }
                for (i, b) in vn.backends.iter().flatten().enumerate() {
                    let Backend::VirtualService(b) = b;
                    let path = format!("spec.backends[{i}].virtualService");
                    client_policy_arns(&path, b.client_policy.as_ref(), &mut out);
                }
            }
            Spec::VirtualGateway(vg) => {
                for (i, l) in vg.listeners.iter().enumerate() {
                    listener_tls_arns(&format!("spec.listeners[{i}]"), l.tls.as_ref(), &mut out);
                }
                if let Some(d) = &vg.backend_defaults {
                    client_policy_arns("spec.backendDefaults", d.client_policy.as_ref(), &mut out);
                }
            }
            Spec::Mesh(_)
            | Spec::VirtualRouter(_)
            | Spec::Route(_)
            | Spec::VirtualService(_)
            | Spec::GatewayRoute(_) => {}
        }
        out
    }

    fn fill_defaults(&mut self) {
        match self {
            Spec::Mesh(mesh) => {
                mesh.egress_filter.get_or_insert(EgressFilter {
                    r#type: EgressFilterType::DropAll,
                });
            }
            Spec::VirtualNode(vn) => {
                if let Some(d) = &mut vn.backend_defaults {
                    d.fill_defaults();
                }
                for Backend::VirtualService(b) in vn.backends.iter_mut().flatten() {
                    if let Some(tls) = b.client_policy.as_mut().and_then(|p| p.tls.as_mut()) {
                        tls.enforce.get_or_insert(true);
                    }
                }
            }
            Spec::VirtualGateway(vg) => {
                if let Some(d) = &mut vg.backend_defaults {
                    d.fill_defaults();
                }
            }
            Spec::VirtualRouter(_)
            | Spec::Route(_)
            | Spec::VirtualService(_)
            | Spec::GatewayRoute(_) => {}
        }
    }
}

fn listener_tls_arns(path: &str, tls: Option<&ListenerTls>, out: &mut Vec<(String, String)>) {
    if let Some(ListenerTls {
        certificate: ListenerTlsCertificate::Acm(acm),
        ..
    }) = tls
    {
        out.push((
            format!("{path}.tls.certificate.acm.certificateArn"),
            acm.certificate_arn.clone(),
        ));
    }
}

fn client_policy_arns(path: &str, policy: Option<&ClientPolicy>, out: &mut Vec<(String, String)>) {
    let Some(tls) = policy.and_then(|p| p.tls.as_ref()) else {
        return;
    };
    if let TlsValidationContextTrust::Acm(acm) = &tls.validation.trust {
        for (i, arn) in acm.certificate_authority_arns.iter().enumerate() {
            out.push((
                format!(
                    "{path}.clientPolicy.tls.validation.trust.acm.certificateAuthorityArns[{i}]"
                ),
                arn.clone(),
            ));
        }
    }
}

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("spec: {e}")))
}

/// JSON `null` means "absent" in App Mesh's API; drop it at every depth so serde sees the same.
fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

// === shared shapes ===

/// A duration as App Mesh writes it: `{"value": 15, "unit": "s"}`. Both members are optional in
/// the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Duration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<DurationUnit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
}

impl Duration {
    pub fn seconds(value: u64) -> Self {
        Self {
            unit: Some(DurationUnit::S),
            value: Some(value),
        }
    }

    pub fn millis(value: u64) -> Self {
        Self {
            unit: Some(DurationUnit::Ms),
            value: Some(value),
        }
    }

    /// The duration, or `None` when `value` or `unit` is missing (treat as unset). A value of
    /// 0 is `Some(ZERO)`, which App Mesh reads as "disabled" for timeouts.
    pub fn to_std(&self) -> Option<std::time::Duration> {
        match (self.value?, self.unit?) {
            (v, DurationUnit::S) => Some(std::time::Duration::from_secs(v)),
            (v, DurationUnit::Ms) => Some(std::time::Duration::from_millis(v)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurationUnit {
    S,
    Ms,
}

/// A listener's or health check's protocol (`PortProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProtocol {
    Http,
    Http2,
    Grpc,
    Tcp,
}

impl PortProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Http2 => "http2",
            Self::Grpc => "grpc",
            Self::Tcp => "tcp",
        }
    }
}

/// A virtual gateway listener's protocol: no `tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayPortProtocol {
    Http,
    Http2,
    Grpc,
}

impl From<GatewayPortProtocol> for PortProtocol {
    fn from(p: GatewayPortProtocol) -> Self {
        match p {
            GatewayPortProtocol::Http => Self::Http,
            GatewayPortProtocol::Http2 => Self::Http2,
            GatewayPortProtocol::Grpc => Self::Grpc,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMapping {
    pub port: u16,
    pub protocol: PortProtocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualGatewayPortMapping {
    pub port: u16,
    pub protocol: GatewayPortProtocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpPreference {
    #[serde(rename = "IPv6_PREFERRED")]
    Ipv6Preferred,
    #[serde(rename = "IPv4_PREFERRED")]
    Ipv4Preferred,
    #[serde(rename = "IPv4_ONLY")]
    Ipv4Only,
    #[serde(rename = "IPv6_ONLY")]
    Ipv6Only,
}

// === MeshSpec ===

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_filter: Option<EgressFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_discovery: Option<MeshServiceDiscovery>,
}

impl MeshSpec {
    /// The egress filter, `DROP_ALL` when unset.
    pub fn egress_filter_type(&self) -> EgressFilterType {
        self.egress_filter
            .map_or(EgressFilterType::DropAll, |f| f.r#type)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressFilter {
    pub r#type: EgressFilterType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EgressFilterType {
    AllowAll,
    DropAll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshServiceDiscovery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_preference: Option<IpPreference>,
}

// === VirtualNodeSpec ===

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualNodeSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_defaults: Option<BackendDefaults>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<Backend>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listeners: Option<Vec<Listener>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_discovery: Option<ServiceDiscovery>,
}

impl VirtualNodeSpec {
    pub fn listeners(&self) -> &[Listener] {
        self.listeners.as_deref().unwrap_or_default()
    }

    /// The virtual service names of the node's backends.
    pub fn backend_services(&self) -> impl Iterator<Item = &str> {
        self.backends
            .iter()
            .flatten()
            .map(|Backend::VirtualService(b)| b.virtual_service_name.as_str())
    }
}

/// Client policy defaults for all backends (of a virtual node or a virtual gateway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendDefaults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_policy: Option<ClientPolicy>,
}

impl BackendDefaults {
    fn fill_defaults(&mut self) {
        if let Some(tls) = self.client_policy.as_mut().and_then(|p| p.tls.as_mut()) {
            tls.enforce.get_or_insert(true);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientPolicyTls>,
}

/// TLS a client originates to its backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientPolicyTls {
    /// The client certificate offered for mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<ClientTlsCertificate>,
    /// Default true (filled by `Spec::parse`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforce: Option<bool>,
    /// The backend ports TLS applies to; unset or empty means all ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<u16>>,
    pub validation: TlsValidationContext,
}

impl ClientPolicyTls {
    /// Whether TLS is enforced (App Mesh's default is true).
    pub fn enforces(&self) -> bool {
        self.enforce.unwrap_or(true)
    }

    /// Whether this policy covers a backend port: no `ports` (or an empty list) means all.
    pub fn applies_to_port(&self, port: u16) -> bool {
        match self.ports.as_deref() {
            None | Some([]) => true,
            Some(ports) => ports.contains(&port),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ClientTlsCertificate {
    File(TlsFileCertificate),
    Sds(TlsSdsCertificate),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsFileCertificate {
    pub certificate_chain: String,
    pub private_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSdsCertificate {
    pub secret_name: String,
}

/// How a client validates the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsValidationContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_alternative_names: Option<SubjectAlternativeNames>,
    pub trust: TlsValidationContextTrust,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectAlternativeNames {
    pub r#match: SubjectAlternativeNameMatchers,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectAlternativeNameMatchers {
    pub exact: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TlsValidationContextTrust {
    Acm(TlsValidationContextAcmTrust),
    File(TlsValidationContextFileTrust),
    Sds(TlsValidationContextSdsTrust),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsValidationContextAcmTrust {
    pub certificate_authority_arns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsValidationContextFileTrust {
    pub certificate_chain: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsValidationContextSdsTrust {
    pub secret_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Backend {
    VirtualService(VirtualServiceBackend),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualServiceBackend {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_policy: Option<ClientPolicy>,
    pub virtual_service_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<VirtualNodeConnectionPool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    pub port_mapping: PortMapping,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<ListenerTimeout>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum VirtualNodeConnectionPool {
    Grpc(GrpcConnectionPool),
    Http(HttpConnectionPool),
    Http2(Http2ConnectionPool),
    Tcp(TcpConnectionPool),
}

impl VirtualNodeConnectionPool {
    /// The listener protocol this pool is for.
    pub fn protocol(&self) -> PortProtocol {
        match self {
            Self::Grpc(_) => PortProtocol::Grpc,
            Self::Http(_) => PortProtocol::Http,
            Self::Http2(_) => PortProtocol::Http2,
            Self::Tcp(_) => PortProtocol::Tcp,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcConnectionPool {
    pub max_requests: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpConnectionPool {
    pub max_connections: u32,
    /// App Mesh's default is 2147483647.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Http2ConnectionPool {
    pub max_requests: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpConnectionPool {
    pub max_connections: u32,
}

/// A listener's health check of the local app (nodes) or of the gateway itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckPolicy {
    /// 2..10 consecutive successes before healthy.
    pub healthy_threshold: u32,
    /// 5000..300000 ms between checks.
    pub interval_millis: u64,
    /// Used by http and http2 checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Equal to the listener's port when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub protocol: PortProtocol,
    /// 2000..60000 ms to wait for an answer.
    pub timeout_millis: u64,
    /// 2..10 consecutive failures before unhealthy.
    pub unhealthy_threshold: u32,
}

impl HealthCheckPolicy {
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.interval_millis)
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_millis)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    pub base_ejection_duration: Duration,
    pub interval: Duration,
    /// 0..100.
    pub max_ejection_percent: u32,
    pub max_server_errors: u64,
}

/// A listener's timeouts; the variant matches the listener's protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ListenerTimeout {
    Grpc(GrpcTimeout),
    Http(HttpTimeout),
    Http2(HttpTimeout),
    Tcp(TcpTimeout),
}

impl ListenerTimeout {
    pub fn protocol(&self) -> PortProtocol {
        match self {
            Self::Grpc(_) => PortProtocol::Grpc,
            Self::Http(_) => PortProtocol::Http,
            Self::Http2(_) => PortProtocol::Http2,
            Self::Tcp(_) => PortProtocol::Tcp,
        }
    }
}

/// App Mesh's defaults when unset: per request 15 s, idle 300 s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpTimeout {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_request: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcTimeout {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_request: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpTimeout {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<Duration>,
}

/// TLS a listener terminates (virtual node or virtual gateway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTls {
    pub certificate: ListenerTlsCertificate,
    pub mode: ListenerTlsMode,
    /// Client certificate validation (mutual TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<ListenerTlsValidationContext>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ListenerTlsCertificate {
    Acm(ListenerTlsAcmCertificate),
    File(TlsFileCertificate),
    Sds(TlsSdsCertificate),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTlsAcmCertificate {
    pub certificate_arn: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ListenerTlsMode {
    /// TLS only.
    Strict,
    /// TLS and plain text.
    Permissive,
    /// Plain text only.
    Disabled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTlsValidationContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_alternative_names: Option<SubjectAlternativeNames>,
    pub trust: ListenerTlsValidationContextTrust,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ListenerTlsValidationContextTrust {
    File(TlsValidationContextFileTrust),
    Sds(TlsValidationContextSdsTrust),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AccessLog {
    File(FileAccessLog),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileAccessLog {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<LoggingFormat>,
    /// A file path, e.g. `/dev/stdout`.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LoggingFormat {
    Json(Vec<JsonFormatRef>),
    /// An Envoy access log format string.
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonFormatRef {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ServiceDiscovery {
    AwsCloudMap(AwsCloudMapServiceDiscovery),
    Dns(DnsServiceDiscovery),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsCloudMapServiceDiscovery {
    /// Instances must carry all of these.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<AwsCloudMapInstanceAttribute>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_preference: Option<IpPreference>,
    pub namespace_name: String,
    pub service_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsCloudMapInstanceAttribute {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsServiceDiscovery {
    pub hostname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_preference: Option<IpPreference>,
    /// `LOADBALANCER` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_type: Option<DnsResponseType>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DnsResponseType {
    Loadbalancer,
    Endpoints,
}

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

impl TryFrom<RawRouteSpec> for RouteSpec {
    type Error = String;

    fn try_from(raw: RawRouteSpec) -> Result<Self, String> {
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
            _ => {
                return Err(
                    "exactly one of httpRoute, http2Route, grpcRoute, tcpRoute must be set"
                        .to_owned(),
                )
            }
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

impl TryFrom<RawGatewayRouteSpec> for GatewayRouteSpec {
    type Error = String;

    fn try_from(raw: RawGatewayRouteSpec) -> Result<Self, String> {
        let route = match (raw.http_route, raw.http2_route, raw.grpc_route) {
            (Some(r), None, None) => GatewayRouteType::Http(r),
            (None, Some(r), None) => GatewayRouteType::Http2(r),
            (None, None, Some(r)) => GatewayRouteType::Grpc(r),
            _ => {
                return Err(
                    "exactly one of httpRoute, http2Route, grpcRoute must be set".to_owned(),
                )
            }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A walkthrough template's `spec`, with each `$VAR` bound to a JSON string as `jq --arg`
    /// does.
    pub(crate) fn walkthrough_spec(template: &str) -> Value {
        let var = regex::Regex::new(r"\$([A-Z_]+)").expect("literal regex");
        let text = var.replace_all(template, |c: &regex::Captures| match &c[1] {
            "CERTIFICATE_ARN" => {
                "\"arn:aws:acm:us-west-2:123456789012:certificate/abc\"".to_owned()
            }
            "ROOT_CA_ARN" => {
                "\"arn:aws:acm-pca:us-west-2:123456789012:certificate-authority/ca\"".to_owned()
            }
            other => format!("\"{}.default.svc.cluster.local\"", other.to_lowercase()),
        });
        let body: Value = serde_json::from_str(&text).expect("walkthrough template is JSON");
        body["spec"].clone()
    }

    fn round_trips<T: Serialize + serde::de::DeserializeOwned>(json: &Value) {
        let parsed: T = serde_json::from_value(json.clone())
            .unwrap_or_else(|e| panic!("{json} does not parse: {e}"));
        assert_eq!(&serde_json::to_value(&parsed).unwrap(), json);
    }

    fn round_trips_as(kind: ResourceKind, json: &Value) {
        match kind {
            ResourceKind::Mesh => round_trips::<MeshSpec>(json),
            ResourceKind::VirtualNode => round_trips::<VirtualNodeSpec>(json),
            ResourceKind::VirtualRouter => round_trips::<VirtualRouterSpec>(json),
            ResourceKind::Route => round_trips::<RouteSpec>(json),
            ResourceKind::VirtualService => round_trips::<VirtualServiceSpec>(json),
            ResourceKind::VirtualGateway => round_trips::<VirtualGatewaySpec>(json),
            ResourceKind::GatewayRoute => round_trips::<GatewayRouteSpec>(json),
        }
    }

    #[test]
    fn every_walkthrough_spec_round_trips() {
        for (file, _, _, kind, template) in WALKTHROUGH {
            let json = walkthrough_spec(template);
            round_trips_as(kind, &json);
            Spec::parse(kind, Some(&json)).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }

    #[test]
    fn every_kitchen_sink_spec_round_trips_and_parses() {
        for (kind, json) in kitchen_sinks() {
            round_trips_as(kind, &json);
            crate::model::validate_body(&format!("Update{}", kind.title()), &json!({"spec": json}))
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            let spec = Spec::parse(kind, Some(&json)).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(spec.kind(), kind);
        }
    }

    #[test]
    fn to_json_adds_only_app_mesh_defaults_to_walkthrough_specs() {
        for (file, _, _, kind, template) in WALKTHROUGH {
            let mut want = walkthrough_spec(template);
            if kind == ResourceKind::Mesh {
                want["egressFilter"] = json!({"type": "DROP_ALL"});
            }
            if let Some(tls) = want.pointer_mut("/backendDefaults/clientPolicy/tls") {
                tls["enforce"] = json!(true);
            }
            let got = Spec::parse(kind, Some(&walkthrough_spec(template)))
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .to_json();
            assert_eq!(got, want, "{file}");
        }
    }

    #[test]
    fn mesh_without_spec_gets_drop_all_egress() {
        let spec = Spec::parse(ResourceKind::Mesh, None).unwrap();
        assert_eq!(
            spec.to_json(),
            json!({"egressFilter": {"type": "DROP_ALL"}})
        );
        let spec = Spec::parse(ResourceKind::Mesh, Some(&json!({}))).unwrap();
        assert_eq!(
            spec.to_json(),
            json!({"egressFilter": {"type": "DROP_ALL"}})
        );
    }

    #[test]
    fn mesh_keeps_allow_all_egress() {
        let json = json!({"egressFilter": {"type": "ALLOW_ALL"}});
        assert_eq!(
            Spec::parse(ResourceKind::Mesh, Some(&json))
                .unwrap()
                .to_json(),
            json
        );
    }

    #[test]
    fn other_kinds_require_a_spec() {
        assert!(Spec::parse(ResourceKind::VirtualNode, None).is_err());
    }

    #[test]
    fn client_policy_tls_enforce_defaults_to_true() {
        let (_, _, _, _, template) = WALKTHROUGH[18];
        let spec = Spec::parse(
            ResourceKind::VirtualGateway,
            Some(&walkthrough_spec(template)),
        )
        .unwrap();
        let json = spec.to_json();
        assert_eq!(
            json["backendDefaults"]["clientPolicy"]["tls"]["enforce"],
            json!(true)
        );
        assert!(json["backendDefaults"]["clientPolicy"]["tls"]
            .get("ports")
            .is_none());
    }

    #[test]
    fn nulls_count_as_absent_when_parsing() {
        let json = json!({"provider": null});
        let spec = Spec::parse(ResourceKind::VirtualService, Some(&json)).unwrap();
        assert_eq!(spec.to_json(), json!({}));
    }

    #[test]
    fn route_references_its_target_nodes_once_each() {
        let json = json!({"tcpRoute": {"action": {"weightedTargets": [
            {"virtualNode": "b", "weight": 1}, {"virtualNode": "a", "weight": 1},
            {"virtualNode": "b", "weight": 1, "port": 80}]}}});
        let spec = Spec::parse(ResourceKind::Route, Some(&json)).unwrap();
        let names: Vec<(ResourceKind, String)> = spec
            .references()
            .into_iter()
            .map(|(k, n)| (k, n.as_str().to_owned()))
            .collect();
        assert_eq!(
            names,
            vec![
                (ResourceKind::VirtualNode, "a".to_owned()),
                (ResourceKind::VirtualNode, "b".to_owned())
            ]
        );
    }

    #[test]
    fn virtual_service_references_its_provider() {
        let (_, _, _, _, template) = WALKTHROUGH[9];
        let spec = Spec::parse(
            ResourceKind::VirtualService,
            Some(&walkthrough_spec(template)),
        )
        .unwrap();
        let refs = spec.references();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].0, ResourceKind::VirtualRouter);
        assert_eq!(refs[0].1.as_str(), "colorteller-vr-1");
    }

    #[test]
    fn gateway_route_references_its_target_service() {
        let (_, _, _, _, template) = WALKTHROUGH[12];
        let spec = Spec::parse(
            ResourceKind::GatewayRoute,
            Some(&walkthrough_spec(template)),
        )
        .unwrap();
        let refs = spec.references();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].0, ResourceKind::VirtualService);
        assert_eq!(
            refs[0].1.as_str(),
            "virtualservice_name.default.svc.cluster.local"
        );
    }

    #[test]
    fn virtual_node_backends_are_not_references() {
        let json = json!({"backends": [{"virtualService": {"virtualServiceName": "later"}}]});
        let spec = Spec::parse(ResourceKind::VirtualNode, Some(&json)).unwrap();
        assert!(spec.references().is_empty());
    }

    #[test]
    fn acm_arns_are_listed_with_their_paths() {
        let (_, _, _, _, template) = WALKTHROUGH[18];
        let spec = Spec::parse(
            ResourceKind::VirtualGateway,
            Some(&walkthrough_spec(template)),
        )
        .unwrap();
        assert_eq!(
            spec.acm_arns(),
            vec![
                (
                    "spec.listeners[0].tls.certificate.acm.certificateArn".to_owned(),
                    "arn:aws:acm:us-west-2:123456789012:certificate/abc".to_owned()
                ),
                (
                    "spec.backendDefaults.clientPolicy.tls.validation.trust.acm.certificateAuthorityArns[0]"
                        .to_owned(),
                    "arn:aws:acm-pca:us-west-2:123456789012:certificate-authority/ca".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn kitchen_sink_node_lists_backend_acm_arns() {
        let (_, json) = &kitchen_sinks()[1];
        let spec = Spec::parse(ResourceKind::VirtualNode, Some(json)).unwrap();
        let paths: Vec<String> = spec.acm_arns().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            vec![
                "spec.listeners[0].tls.certificate.acm.certificateArn",
                "spec.backendDefaults.clientPolicy.tls.validation.trust.acm.certificateAuthorityArns[0]",
                "spec.backends[0].virtualService.clientPolicy.tls.validation.trust.acm.certificateAuthorityArns[0]",
                "spec.backends[0].virtualService.clientPolicy.tls.validation.trust.acm.certificateAuthorityArns[1]",
            ]
        );
    }

    #[test]
    fn durations_convert_to_std() {
        assert_eq!(
            Duration::seconds(15).to_std(),
            Some(std::time::Duration::from_secs(15))
        );
        assert_eq!(
            Duration::millis(250).to_std(),
            Some(std::time::Duration::from_millis(250))
        );
        assert_eq!(
            Duration {
                unit: None,
                value: Some(1)
            }
            .to_std(),
            None
        );
    }

    #[test]
    fn client_policy_without_ports_applies_to_every_port() {
        let tls: ClientPolicyTls = serde_json::from_value(json!({
            "validation": {"trust": {"file": {"certificateChain": "/ca.pem"}}}}))
        .unwrap();
        assert!(tls.enforces());
        assert!(tls.applies_to_port(9080));
        let tls: ClientPolicyTls = serde_json::from_value(json!({"enforce": false, "ports": [443],
            "validation": {"trust": {"file": {"certificateChain": "/ca.pem"}}}}))
        .unwrap();
        assert!(!tls.enforces());
        assert!(!tls.applies_to_port(9080));
    }

    fn duration() -> Value {
        json!({"value": 15, "unit": "s"})
    }

    fn client_policy(arns: Value) -> Value {
        json!({"tls": {
            "certificate": {"file": {"certificateChain": "/c.pem", "privateKey": "/k.pem"}},
            "enforce": true, "ports": [9080, 443],
            "validation": {
                "subjectAlternativeNames": {"match": {"exact": ["a.local", "b.local"]}},
                "trust": {"acm": {"certificateAuthorityArns": arns}}}}})
    }

    /// One spec per kind that sets every member at least once (unions: each variant somewhere).
    pub(crate) fn kitchen_sinks() -> Vec<(ResourceKind, Value)> {
        let headers = json!([
            {"name": "x-a", "invert": true, "match": {"exact": "a"}},
            {"name": "x-b", "match": {"prefix": "b"}},
            {"name": "x-c", "match": {"suffix": "c"}},
            {"name": "x-d", "match": {"regex": "d+"}},
            {"name": "x-e", "match": {"range": {"start": 1, "end": 5}}},
            {"name": "x-f"}
        ]);
        let query = json!([{"name": "q", "match": {"exact": "1"}}, {"name": "flag"}]);
        let targets = json!([{"virtualNode": "a", "weight": 60, "port": 8080},
            {"virtualNode": "b", "weight": 40}]);
        vec![
            (
                ResourceKind::Mesh,
                json!({"egressFilter": {"type": "ALLOW_ALL"},
                    "serviceDiscovery": {"ipPreference": "IPv6_PREFERRED"}}),
            ),
            (
                ResourceKind::VirtualNode,
                json!({
                    "backendDefaults": {"clientPolicy": client_policy(json!(["arn:ca:1"]))},
                    "backends": [
                        {"virtualService": {"virtualServiceName": "svc-a.local",
                            "clientPolicy": client_policy(json!(["arn:ca:2", "arn:ca:3"]))}},
                        {"virtualService": {"virtualServiceName": "svc-b.local",
                            "clientPolicy": {"tls": {"enforce": false,
                                "certificate": {"sds": {"secretName": "client"}},
                                "validation": {"trust": {"sds": {"secretName": "ca"}}}}}}},
                        {"virtualService": {"virtualServiceName": "svc-c.local",
                            "clientPolicy": {"tls": {"enforce": true,
                                "validation": {"trust": {"file": {"certificateChain": "/ca.pem"}}}}}}}
                    ],
                    "listeners": [
                        {
                            "portMapping": {"port": 9080, "protocol": "http"},
                            "connectionPool": {"http": {"maxConnections": 100, "maxPendingRequests": 10}},
                            "healthCheck": {"healthyThreshold": 2, "unhealthyThreshold": 3,
                                "intervalMillis": 5000, "timeoutMillis": 2000, "protocol": "http",
                                "path": "/ping", "port": 9080},
                            "outlierDetection": {"maxServerErrors": 5, "interval": {"value": 10, "unit": "s"},
                                "baseEjectionDuration": {"value": 30000, "unit": "ms"}, "maxEjectionPercent": 50},
                            "timeout": {"http": {"perRequest": duration(), "idle": {"value": 0, "unit": "s"}}},
                            "tls": {"mode": "STRICT", "certificate": {"acm": {"certificateArn": "arn:cert:1"}},
                                "validation": {"subjectAlternativeNames": {"match": {"exact": ["c.local"]}},
                                    "trust": {"file": {"certificateChain": "/clients.pem"}}}}
                        },
                        {
                            "portMapping": {"port": 9081, "protocol": "http2"},
                            "connectionPool": {"http2": {"maxRequests": 10}},
                            "timeout": {"http2": {"perRequest": duration()}},
                            "tls": {"mode": "PERMISSIVE", "certificate": {"file": {"certificateChain": "/c.pem", "privateKey": "/k.pem"}},
                                "validation": {"trust": {"sds": {"secretName": "clients"}}}}
                        },
                        {
                            "portMapping": {"port": 9082, "protocol": "grpc"},
                            "connectionPool": {"grpc": {"maxRequests": 10}},
                            "healthCheck": {"healthyThreshold": 10, "unhealthyThreshold": 10,
                                "intervalMillis": 300000, "timeoutMillis": 60000, "protocol": "grpc"},
                            "timeout": {"grpc": {"perRequest": duration(), "idle": duration()}},
                            "tls": {"mode": "DISABLED", "certificate": {"sds": {"secretName": "server"}}}
                        },
                        {
                            "portMapping": {"port": 9083, "protocol": "tcp"},
                            "connectionPool": {"tcp": {"maxConnections": 5}},
                            "healthCheck": {"healthyThreshold": 2, "unhealthyThreshold": 2,
                                "intervalMillis": 5000, "timeoutMillis": 2000, "protocol": "tcp"},
                            "timeout": {"tcp": {"idle": duration()}}
                        }
                    ],
                    "logging": {"accessLog": {"file": {"path": "/dev/stdout",
                        "format": {"json": [{"key": "status", "value": "%RESPONSE_CODE%"}]}}}},
                    "serviceDiscovery": {"awsCloudMap": {"namespaceName": "apps.local", "serviceName": "web",
                        "ipPreference": "IPv4_ONLY",
                        "attributes": [{"key": "stage", "value": "canary 1"}]}}
                }),
            ),
            (
                ResourceKind::VirtualNode,
                json!({"serviceDiscovery": {"dns": {"hostname": "web.local", "responseType": "ENDPOINTS",
                        "ipPreference": "IPv4_PREFERRED"}},
                    "logging": {"accessLog": {"file": {"path": "/dev/stdout", "format": {"text": "%START_TIME%\n"}}}}}),
            ),
            (
                ResourceKind::VirtualRouter,
                json!({"listeners": [{"portMapping": {"port": 80, "protocol": "http"}},
                    {"portMapping": {"port": 81, "protocol": "tcp"}}]}),
            ),
            (
                ResourceKind::Route,
                json!({"priority": 10, "httpRoute": {
                    "match": {"prefix": "/api", "method": "POST", "scheme": "https", "port": 80,
                        "headers": headers, "queryParameters": query},
                    "action": {"weightedTargets": targets},
                    "retryPolicy": {"maxRetries": 3, "perRetryTimeout": {"value": 500, "unit": "ms"},
                        "httpRetryEvents": ["server-error", "gateway-error", "client-error", "stream-error"],
                        "tcpRetryEvents": ["connection-error"]},
                    "timeout": {"perRequest": duration(), "idle": duration()}}}),
            ),
            (
                ResourceKind::Route,
                json!({"http2Route": {
                    "match": {"path": {"regex": "/v[0-9]+/.*"}, "method": "GET"},
                    "action": {"weightedTargets": [{"virtualNode": "a", "weight": 100}]}}}),
            ),
            (
                ResourceKind::Route,
                json!({"priority": 0, "grpcRoute": {
                    "match": {"serviceName": "pkg.Svc", "methodName": "Get", "port": 80,
                        "metadata": [{"name": "x-a", "invert": false, "match": {"range": {"start": 0, "end": 10}}},
                            {"name": "x-b", "match": {"exact": "b"}}]},
                    "action": {"weightedTargets": targets},
                    "retryPolicy": {"maxRetries": 1, "perRetryTimeout": duration(),
                        "grpcRetryEvents": ["cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"],
                        "httpRetryEvents": ["server-error"], "tcpRetryEvents": ["connection-error"]},
                    "timeout": {"perRequest": duration(), "idle": duration()}}}),
            ),
            (
                ResourceKind::Route,
                json!({"tcpRoute": {"match": {"port": 81},
                    "action": {"weightedTargets": [{"virtualNode": "a", "weight": 0}]},
                    "timeout": {"idle": duration()}}}),
            ),
            (
                ResourceKind::VirtualService,
                json!({"provider": {"virtualNode": {"virtualNodeName": "web"}}}),
            ),
            (
                ResourceKind::VirtualGateway,
                json!({
                    "backendDefaults": {"clientPolicy": client_policy(json!(["arn:ca:1"]))},
                    "listeners": [
                        {"portMapping": {"port": 443, "protocol": "http"},
                         "connectionPool": {"http": {"maxConnections": 10}},
                         "healthCheck": {"healthyThreshold": 2, "unhealthyThreshold": 2,
                             "intervalMillis": 5000, "timeoutMillis": 2000, "protocol": "http", "path": "/", "port": 443},
                         "tls": {"mode": "STRICT", "certificate": {"file": {"certificateChain": "/c", "privateKey": "/k"}},
                             "validation": {"subjectAlternativeNames": {"match": {"exact": ["client"]}},
                                 "trust": {"file": {"certificateChain": "/ca"}}}}},
                        {"portMapping": {"port": 8443, "protocol": "http2"},
                         "connectionPool": {"http2": {"maxRequests": 10}}},
                        {"portMapping": {"port": 50051, "protocol": "grpc"},
                         "connectionPool": {"grpc": {"maxRequests": 10}},
                         "tls": {"mode": "PERMISSIVE", "certificate": {"sds": {"secretName": "gw"}}}}
                    ],
                    "logging": {"accessLog": {"file": {"path": "/dev/stdout", "format": {"text": "%PROTOCOL%"}}}}
                }),
            ),
            (
                ResourceKind::GatewayRoute,
                json!({"priority": 5, "httpRoute": {
                    "match": {"prefix": "/color", "method": "GET", "port": 443,
                        "hostname": {"exact": "www.example.com"}, "headers": headers, "queryParameters": query},
                    "action": {"target": {"virtualService": {"virtualServiceName": "color.local"}, "port": 80},
                        "rewrite": {"hostname": {"defaultTargetHostname": "DISABLED"},
                            "prefix": {"defaultPrefix": "DISABLED", "value": "/paint/"}}}}}),
            ),
            (
                ResourceKind::GatewayRoute,
                json!({"http2Route": {
                    "match": {"path": {"exact": "/old"}, "hostname": {"suffix": ".example.com"}},
                    "action": {"target": {"virtualService": {"virtualServiceName": "color.local"}},
                        "rewrite": {"path": {"exact": "/new"}, "hostname": {"defaultTargetHostname": "ENABLED"}}}}}),
            ),
            (
                ResourceKind::GatewayRoute,
                json!({"grpcRoute": {
                    "match": {"serviceName": "pkg.Svc", "port": 50051, "hostname": {"exact": "api"},
                        "metadata": [{"name": "x-a", "invert": true, "match": {"suffix": "z"}}]},
                    "action": {"target": {"virtualService": {"virtualServiceName": "api.local"}},
                        "rewrite": {"hostname": {"defaultTargetHostname": "DISABLED"}}}}}),
            ),
        ]
    }

    // --- the walkthrough ---
    /// The walkthrough's `mesh/*.json` jq templates (verbatim text): file, operation, the
    /// create body's name member, and the resource kind.
    pub(crate) const WALKTHROUGH: [(&str, &str, Option<&str>, ResourceKind, &str); 19] = [
        (
            "mesh.json",
            "CreateMesh",
            Some("meshName"),
            ResourceKind::Mesh,
            r#"{
    "spec": {}
}"#,
        ),
        (
            "colorteller-white-vn.json",
            "CreateVirtualNode",
            Some("virtualNodeName"),
            ResourceKind::VirtualNode,
            r#"{
    "spec": {
          "listeners": [
             {
                "healthCheck": {
                   "healthyThreshold": 2,
                   "intervalMillis": 5000,
                   "path": "/ping",
                   "protocol": "http",
                   "timeoutMillis": 2000,
                   "unhealthyThreshold": 2
                },
                "portMapping": {
                   "port": 9080,
                   "protocol": "http"
                }
             }
          ],
          "serviceDiscovery": {
             "dns": {
                "hostname": $DNS_HOSTNAME
             }
          }
    }
}"#,
        ),
        (
            "colorteller-blue-vn.json",
            "CreateVirtualNode",
            Some("virtualNodeName"),
            ResourceKind::VirtualNode,
            r#"{
    "spec": {
          "listeners": [
             {
                "healthCheck": {
                   "healthyThreshold": 2,
                   "intervalMillis": 5000,
                   "path": "/ping",
                   "protocol": "http",
                   "timeoutMillis": 2000,
                   "unhealthyThreshold": 2
                },
                "portMapping": {
                   "port": 9080,
                   "protocol": "http"
                }
             }
          ],
          "serviceDiscovery": {
             "dns": {
                "hostname": $DNS_HOSTNAME
             }
          }
    }
}"#,
        ),
        (
            "colorteller-black-vn.json",
            "CreateVirtualNode",
            Some("virtualNodeName"),
            ResourceKind::VirtualNode,
            r#"{
    "spec": {
          "listeners": [
             {
                "healthCheck": {
                   "healthyThreshold": 2,
                   "intervalMillis": 5000,
                   "path": "/ping",
                   "protocol": "http",
                   "timeoutMillis": 2000,
                   "unhealthyThreshold": 2
                },
                "portMapping": {
                   "port": 9080,
                   "protocol": "http"
                }
             }
          ],
          "serviceDiscovery": {
             "dns": {
                "hostname": $DNS_HOSTNAME
             }
          }
    }
}"#,
        ),
        (
            "colorteller-red-vn.json",
            "CreateVirtualNode",
            Some("virtualNodeName"),
            ResourceKind::VirtualNode,
            r#"{
    "spec": {
          "listeners": [
             {
                "healthCheck": {
                   "healthyThreshold": 2,
                   "intervalMillis": 5000,
                   "path": "/ping",
                   "protocol": "http",
                   "timeoutMillis": 2000,
                   "unhealthyThreshold": 2
                },
                "portMapping": {
                   "port": 9080,
                   "protocol": "http"
                }
             }
          ],
          "serviceDiscovery": {
             "dns": {
                "hostname": $DNS_HOSTNAME
             }
          }
    }
}"#,
        ),
        (
            "colorteller-vr-1.json",
            "CreateVirtualRouter",
            Some("virtualRouterName"),
            ResourceKind::VirtualRouter,
            r#"{
    "spec": {
          "listeners": [
             {
                "portMapping": {
                   "port": 9080,
                   "protocol": "http"
                }
             }
          ]
    }
}"#,
        ),
        (
            "colorteller-vr-2.json",
            "CreateVirtualRouter",
            Some("virtualRouterName"),
            ResourceKind::VirtualRouter,
            r#"{
    "spec": {
          "listeners": [
             {
                "portMapping": {
                   "port": 9080,
                   "protocol": "http"
                }
             }
          ]
    }
}"#,
        ),
        (
            "colorteller-route-1.json",
            "CreateRoute",
            Some("routeName"),
            ResourceKind::Route,
            r#"{
    "spec": {
        "httpRoute": {
            "action": {
                "weightedTargets": [
                    {
                        "virtualNode": "colorteller-white-vn",
                        "weight": 1
                    },
                    {
                        "virtualNode": "colorteller-blue-vn",
                        "weight": 1
                    }
                ]
            },
            "match": {
                "prefix": "/tell"
            }
        }
    }
}"#,
        ),
        (
            "colorteller-route-2.json",
            "CreateRoute",
            Some("routeName"),
            ResourceKind::Route,
            r#"{
    "spec": {
        "httpRoute": {
            "action": {
                "weightedTargets": [
                    {
                        "virtualNode": "colorteller-black-vn",
                        "weight": 1
                    },
                    {
                        "virtualNode": "colorteller-red-vn",
                        "weight": 1
                    }
                ]
            },
            "match": {
                "prefix": "/tell"
            }
        }
    }
}"#,
        ),
        (
            "colorteller-vs-1.json",
            "CreateVirtualService",
            Some("virtualServiceName"),
            ResourceKind::VirtualService,
            r#"{
    "spec": {
          "provider": {
             "virtualRouter": {
                "virtualRouterName": "colorteller-vr-1"
             }
          }
    }
}"#,
        ),
        (
            "colorteller-vs-2.json",
            "CreateVirtualService",
            Some("virtualServiceName"),
            ResourceKind::VirtualService,
            r#"{
    "spec": {
          "provider": {
             "virtualRouter": {
                "virtualRouterName": "colorteller-vr-2"
             }
          }
    }
}"#,
        ),
        (
            "colorgateway-vg.json",
            "CreateVirtualGateway",
            Some("virtualGatewayName"),
            ResourceKind::VirtualGateway,
            r#"{
    "spec": {
      "listeners": [
        {
          "portMapping": {
            "port": 9080,
            "protocol": "http"
          },
          "tls": {
              "mode": "STRICT",
              "certificate": {
                  "acm": {
                      "certificateArn": $CERTIFICATE_ARN
                  }
              }
          }
        }
      ]
    }
}"#,
        ),
        (
            "colorgateway-route-1.json",
            "CreateGatewayRoute",
            Some("gatewayRouteName"),
            ResourceKind::GatewayRoute,
            r#"{
    "spec": {
        "httpRoute" : {
            "match" : {
                "prefix" : "/color1"
            },
            "action" : {
                "target" : {
                    "virtualService": {
                        "virtualServiceName": $VIRTUALSERVICE_NAME
                    }
                }
            }
        }
    }
}"#,
        ),
        (
            "colorgateway-route-2.json",
            "CreateGatewayRoute",
            Some("gatewayRouteName"),
            ResourceKind::GatewayRoute,
            r#"{
    "spec": {
        "httpRoute" : {
            "match" : {
                "prefix" : "/color2"
            },
            "action" : {
                "target" : {
                    "virtualService": {
                        "virtualServiceName": $VIRTUALSERVICE_NAME
                    }
                }
            }
        }
    }
}"#,
        ),
        (
            "colorteller-white-vn-tls.json",
            "UpdateVirtualNode",
            None,
            ResourceKind::VirtualNode,
            r#"{
    "spec": {
          "listeners": [
             {
                "healthCheck": {
                   "healthyThreshold": 2,
                   "intervalMillis": 5000,
                   "path": "/ping",
                   "protocol": "http",
                   "timeoutMillis": 2000,
                   "unhealthyThreshold": 2
                },
                "portMapping": {
                   "port": 9080,
                   "protocol": "http"
                },
                "tls": {
                    "mode": "STRICT",
                    "certificate": {
                        "acm": {
                            "certificateArn": $CERTIFICATE_ARN
                        }
                    }
                }
             }
          ],
          "serviceDiscovery": {
             "dns": {
                "hostname": $DNS_HOSTNAME
             }
          }
    }
}"#,
        ),
        (
            "colorteller-blue-vn-tls.json",
            "UpdateVirtualNode",
            None,
            ResourceKind::VirtualNode,
            r#"{
    "spec": {
          "listeners": [
             {
                "healthCheck": {
                   "healthyThreshold": 2,
                   "intervalMillis": 5000,
                   "path": "/ping",
                   "protocol": "http",
                   "timeoutMillis": 2000,
                   "unhealthyThreshold": 2
                },
                "portMapping": {
                   "port": 9080,
                   "protocol": "http"
                },
                "tls": {
                    "mode": "STRICT",
                    "certificate": {
                        "acm": {
                            "certificateArn": $CERTIFICATE_ARN
                        }
                    }
                }
             }
          ],
          "serviceDiscovery": {
             "dns": {
                "hostname": $DNS_HOSTNAME
             }
          }
    }
}"#,
        ),
        (
            "colorteller-black-vn-tls.json",
            "UpdateVirtualNode",
            None,
            ResourceKind::VirtualNode,
            r#"{
    "spec": {
          "listeners": [
             {
                "healthCheck": {
                   "healthyThreshold": 2,
                   "intervalMillis": 5000,
                   "path": "/ping",
                   "protocol": "http",
                   "timeoutMillis": 2000,
                   "unhealthyThreshold": 2
                },
                "portMapping": {
                   "port": 9080,
                   "protocol": "http"
                },
                "tls": {
                    "mode": "STRICT",
                    "certificate": {
                        "acm": {
                            "certificateArn": $CERTIFICATE_ARN
                        }
                    }
                }
             }
          ],
          "serviceDiscovery": {
             "dns": {
                "hostname": $DNS_HOSTNAME
             }
          }
    }
}"#,
        ),
        (
            "colorteller-red-vn-tls.json",
            "UpdateVirtualNode",
            None,
            ResourceKind::VirtualNode,
            r#"{
    "spec": {
          "listeners": [
             {
                "healthCheck": {
                   "healthyThreshold": 2,
                   "intervalMillis": 5000,
                   "path": "/ping",
                   "protocol": "http",
                   "timeoutMillis": 2000,
                   "unhealthyThreshold": 2
                },
                "portMapping": {
                   "port": 9080,
                   "protocol": "http"
                },
                "tls": {
                    "mode": "STRICT",
                    "certificate": {
                        "acm": {
                            "certificateArn": $CERTIFICATE_ARN
                        }
                    }
                }
             }
          ],
          "serviceDiscovery": {
             "dns": {
                "hostname": $DNS_HOSTNAME
             }
          }
    }
}"#,
        ),
        (
            "colorgateway-vg-backendDefaults.json",
            "UpdateVirtualGateway",
            None,
            ResourceKind::VirtualGateway,
            r#"{
	"spec": {
		"listeners": [{
			"portMapping": {
				"port": 9080,
				"protocol": "http"
			},
			"tls": {
				"mode": "STRICT",
				"certificate": {
					"acm": {
						"certificateArn": $CERTIFICATE_ARN
					}
				}
			}
		}],
		"backendDefaults": {
			"clientPolicy": {
				"tls": {
					"validation": {
						"trust": {
							"acm": {
								"certificateAuthorityArns": [
									$ROOT_CA_ARN
								]
							}
						}
					}
				}
			}
		}
	}
}"#,
        ),
    ];
}
