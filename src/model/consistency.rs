//! App Mesh rules that relate one resource to another: a route must suit its router's
//! listeners and its target nodes' listeners; a gateway route must suit its gateway's.
//! Pure functions over typed specs; the store runs them inside the write transaction.

use super::spec::{
    GatewayRouteSpec, GatewayRouteType, PortProtocol, RouteSpec, RouteType, VirtualGatewaySpec,
    VirtualNodeSpec, VirtualRouterSpec,
};
use super::{ApiError, ResourceName};

fn match_port(route: &RouteType) -> Option<u16> {
    match route {
        RouteType::Http(r) | RouteType::Http2(r) => r.r#match.port,
        RouteType::Grpc(r) => r.r#match.port,
        RouteType::Tcp(r) => r.r#match.as_ref().and_then(|m| m.port),
    }
}

fn gateway_match_port(route: &GatewayRouteType) -> Option<u16> {
    match route {
        GatewayRouteType::Http(r) | GatewayRouteType::Http2(r) => r.r#match.port,
        GatewayRouteType::Grpc(r) => r.r#match.port,
    }
}

fn describe(listeners: &[(u16, PortProtocol)]) -> String {
    if listeners.is_empty() {
        return "none".to_owned();
    }
    listeners
        .iter()
        .map(|(port, p)| format!("{}:{port}", p.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks the route's type and `match.port` against the listeners of the parent.
fn check_listener_fit(
    member: &str,
    protocol: PortProtocol,
    port: Option<u16>,
    parent: &str,
    listeners: &[(u16, PortProtocol)],
) -> Result<(), ApiError> {
    let fitting: Vec<u16> = listeners
        .iter()
        .filter(|(_, p)| *p == protocol)
        .map(|(port, _)| *port)
        .collect();
    if fitting.is_empty() {
        return Err(ApiError::bad_request(format!(
            "spec.{member}: {parent} has no {} listener (its listeners: {})",
            protocol.as_str(),
            describe(listeners)
        )));
    }
    match port {
        Some(port) if !fitting.contains(&port) => Err(ApiError::bad_request(format!(
            "spec.{member}.match.port: {port} is not a {} listener port of {parent} (its listeners: {})",
            protocol.as_str(),
            describe(listeners)
        ))),
        None if listeners.len() > 1 => Err(ApiError::bad_request(format!(
            "spec.{member}.match.port: required because {parent} has {} listeners ({})",
            listeners.len(),
            describe(listeners)
        ))),
        _ => Ok(()),
    }
}

/// A route must be of a protocol its router listens on, name the port when the router has
/// several listeners, and name each target's port when that node has several listeners.
pub fn check_route(
    route: &RouteSpec,
    router_name: &ResourceName,
    router: &VirtualRouterSpec,
    targets: &[(ResourceName, VirtualNodeSpec)],
) -> Result<(), ApiError> {
    let member = route.route.member();
    let listeners: Vec<(u16, PortProtocol)> = router
        .listeners()
        .iter()
        .map(|l| (l.port_mapping.port, l.port_mapping.protocol))
        .collect();
    let parent = format!("virtual router {router_name}");
    check_listener_fit(
        member,
        route.route.protocol(),
        match_port(&route.route),
        &parent,
        &listeners,
    )?;
    for (i, target) in route.weighted_targets().iter().enumerate() {
        let Some((_, node)) = targets.iter().find(|(n, _)| *n == target.virtual_node) else {
            continue;
        };
        let ports: Vec<u16> = node
            .listeners()
            .iter()
            .map(|l| l.port_mapping.port)
            .collect();
        let field = format!("spec.{member}.action.weightedTargets[{i}].port");
        match target.port {
            Some(p) if !ports.is_empty() && !ports.contains(&p) => {
                return Err(ApiError::bad_request(format!(
                    "{field}: {p} is not a listener port of virtual node {} (its ports: {ports:?})",
                    target.virtual_node
                )))
            }
            None if ports.len() > 1 => {
                return Err(ApiError::bad_request(format!(
                    "{field}: required because virtual node {} has {} listeners (ports {ports:?})",
                    target.virtual_node,
                    ports.len()
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A gateway route must be of a protocol its gateway listens on, and name the port when the
/// gateway has several listeners.
pub fn check_gateway_route(
    route: &GatewayRouteSpec,
    gateway_name: &ResourceName,
    gateway: &VirtualGatewaySpec,
) -> Result<(), ApiError> {
    let listeners: Vec<(u16, PortProtocol)> = gateway
        .listeners
        .iter()
        .map(|l| (l.port_mapping.port, l.port_mapping.protocol.into()))
        .collect();
    let parent = format!("virtual gateway {gateway_name}");
    check_listener_fit(
        route.route.member(),
        route.route.protocol().into(),
        gateway_match_port(&route.route),
        &parent,
        &listeners,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{ResourceKind, Spec};

    fn n(s: &str) -> ResourceName {
        ResourceName::parse("t", s).unwrap()
    }

    fn router(v: serde_json::Value) -> VirtualRouterSpec {
        match Spec::parse(ResourceKind::VirtualRouter, Some(&v)).unwrap() {
            Spec::VirtualRouter(s) => s,
            _ => unreachable!(),
        }
    }

    fn route(v: serde_json::Value) -> RouteSpec {
        match Spec::parse(ResourceKind::Route, Some(&v)).unwrap() {
            Spec::Route(s) => s,
            _ => unreachable!(),
        }
    }

    fn node(v: serde_json::Value) -> VirtualNodeSpec {
        match Spec::parse(ResourceKind::VirtualNode, Some(&v)).unwrap() {
            Spec::VirtualNode(s) => s,
            _ => unreachable!(),
        }
    }

    fn http_route(port: Option<u16>) -> RouteSpec {
        let mut m = json!({"prefix": "/"});
        if let Some(p) = port {
            m["port"] = json!(p);
        }
        route(
            json!({"httpRoute": {"match": m, "action": {"weightedTargets": [{"virtualNode": "a", "weight": 1}]}}}),
        )
    }

    #[test]
    fn an_http_route_needs_an_http_listener_on_its_router() {
        let r = router(json!({"listeners": [{"portMapping": {"port": 80, "protocol": "grpc"}}]}));
        let err = check_route(&http_route(None), &n("vr"), &r, &[]).unwrap_err();
        assert!(
            err.to_string().contains(
                "spec.httpRoute: virtual router vr has no http listener (its listeners: grpc:80)"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_router_with_two_listeners_needs_the_match_port() {
        let r = router(json!({"listeners": [
            {"portMapping": {"port": 80, "protocol": "http"}},
            {"portMapping": {"port": 81, "protocol": "http"}}]}));
        assert!(check_route(&http_route(None), &n("vr"), &r, &[])
            .unwrap_err()
            .to_string()
            .contains("match.port: required"));
        assert!(check_route(&http_route(Some(82)), &n("vr"), &r, &[]).is_err());
        assert!(check_route(&http_route(Some(81)), &n("vr"), &r, &[]).is_ok());
    }

    #[test]
    fn a_target_node_with_two_listeners_needs_the_target_port() {
        let r = router(json!({"listeners": [{"portMapping": {"port": 80, "protocol": "http"}}]}));
        let a = node(json!({"listeners": [
            {"portMapping": {"port": 8080, "protocol": "http"}},
            {"portMapping": {"port": 8081, "protocol": "http"}}]}));
        let err = check_route(&http_route(None), &n("vr"), &r, &[(n("a"), a)]).unwrap_err();
        assert!(
            err.to_string()
                .contains("weightedTargets[0].port: required"),
            "{err}"
        );
    }

    #[test]
    fn the_walkthrough_route_fits_its_router() {
        let r = router(json!({"listeners": [{"portMapping": {"port": 9080, "protocol": "http"}}]}));
        let a = node(json!({"listeners": [{"portMapping": {"port": 9080, "protocol": "http"}}]}));
        check_route(&http_route(None), &n("vr"), &r, &[(n("a"), a)]).unwrap();
    }
}
