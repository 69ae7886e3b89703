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
#[path = "spec_tests.rs"]
pub(crate) mod tests;
