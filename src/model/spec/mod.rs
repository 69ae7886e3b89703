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

mod gateway;
mod node;
mod route;

pub use gateway::*;
pub use node::*;
pub use route::*;

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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EgressFilterType {
    AllowAll,
    /// App Mesh's default.
    #[default]
    DropAll,
}

impl EgressFilterType {
    pub fn is_drop_all(&self) -> bool {
        *self == EgressFilterType::DropAll
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshServiceDiscovery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_preference: Option<IpPreference>,
}

#[cfg(test)]
pub(crate) mod tests;
