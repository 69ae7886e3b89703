// TEMPORARY: replaced by validate.rs/spec.rs from the validate branch.
use super::{ApiError, ResourceKind, ResourceName};
use serde_json::Value;
pub fn validate_body(_op: &str, _b: &Value) -> Result<(), ApiError> {
    Ok(())
}
pub fn validate_param(_op: &str, _m: &str, _r: &str) -> Result<(), ApiError> {
    Ok(())
}
pub struct Spec(ResourceKind, Value);
impl Spec {
    pub fn parse(kind: ResourceKind, v: Option<&Value>) -> Result<Spec, ApiError> {
        Ok(Spec(kind, v.cloned().unwrap_or(serde_json::json!({}))))
    }
    pub fn to_json(&self) -> Value {
        self.1.clone()
    }
    pub fn references(&self) -> Vec<(ResourceKind, ResourceName)> {
        let mut out = vec![];
        let n = |s: &Value| ResourceName::parse("x", s.as_str().unwrap_or("")).ok();
        match self.0 {
            ResourceKind::Route => {
                for r in ["httpRoute", "http2Route", "grpcRoute", "tcpRoute"] {
                    if let Some(ts) = self
                        .1
                        .pointer(&format!("/{r}/action/weightedTargets"))
                        .and_then(|v| v.as_array())
                    {
                        for t in ts {
                            if let Some(x) = n(&t["virtualNode"]) {
                                out.push((ResourceKind::VirtualNode, x));
                            }
                        }
                    }
                }
            }
            ResourceKind::VirtualService => {
                if let Some(x) = self
                    .1
                    .pointer("/provider/virtualNode/virtualNodeName")
                    .and_then(n)
                {
                    out.push((ResourceKind::VirtualNode, x));
                }
                if let Some(x) = self
                    .1
                    .pointer("/provider/virtualRouter/virtualRouterName")
                    .and_then(n)
                {
                    out.push((ResourceKind::VirtualRouter, x));
                }
            }
            ResourceKind::GatewayRoute => {
                for r in ["httpRoute", "http2Route", "grpcRoute"] {
                    if let Some(x) = self
                        .1
                        .pointer(&format!(
                            "/{r}/action/target/virtualService/virtualServiceName"
                        ))
                        .and_then(n)
                    {
                        out.push((ResourceKind::VirtualService, x));
                    }
                }
            }
            _ => {}
        }
        out
    }
}
