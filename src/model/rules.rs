//! App Mesh's spec rules that the service model does not state, from the App Mesh user guide
//! and its issues (see `reference/appmesh-api.md`). `Spec::parse` runs them after the model
//! validation. Each failure is a `BadRequest` naming the field path, the value and the rule.
//!
//! Rules:
//! - routes set exactly one of httpRoute/http2Route/grpcRoute/tcpRoute; gateway routes exactly
//!   one of httpRoute/http2Route/grpcRoute;
//! - the weights of a route's weighted targets add up to at most 100 (the model's doc; the
//!   walkthrough's 1 + 1 is accepted, so "must add up to 100" is not the rule);
//! - HTTP route matches (router routes) set exactly one of `prefix` and `path`: App Mesh matches
//!   every HTTP route on the path, and `/` is how "everything" is written. Gateway HTTP routes
//!   set at most one (a gateway route may match on hostname or headers alone);
//! - a `prefix` starts with `/`; a `path` match sets exactly one of `exact` and `regex`; a
//!   gateway hostname match exactly one of `exact` and `suffix`;
//! - gateway route prefixes `/aws-appmesh*` and `/aws-app-mesh*` and gRPC service names
//!   `aws.appmesh*` and `aws.app-mesh*` are reserved;
//! - a gRPC `methodName` requires `serviceName`;
//! - a header or metadata `range` match has `start` below `end`;
//! - a retry policy names at least one retry event; HTTP retry events are `server-error`,
//!   `gateway-error`, `client-error` or `stream-error`;
//! - a gateway route's `rewrite.prefix` needs a prefix match, `rewrite.path` a path match;
//! - listener ports are unique within a node, router or gateway;
//! - a listener's health check `port`, if set, is the listener's port;
//! - a listener's `connectionPool` and `timeout` variant is the listener's protocol;
//! - a node names each backend virtual service once (App Mesh issue #170);
//! - header and metadata names are header names (no pseudo-headers such as `:authority`) and
//!   every regex compiles (`matching.rs`, the functions the proxy builds its tables with);
//! - an access log format uses only the command operators the proxies produce (`log_format.rs`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::spec::{AccessLog, Logging, LoggingFormat};
use super::spec::{
    GatewayRouteSpec, GatewayRouteType, GrpcRouteMetadata, HeaderMatchMethod, HttpGatewayRoute,
    HttpPathMatch, HttpRoute, HttpRouteHeader, HttpRouteMatch, RouteSpec, RouteType, Spec,
    VirtualGatewaySpec, VirtualNodeSpec, VirtualRouterSpec, WeightedTarget,
};
use super::{log_format, matching, ApiError, ResourceKind};

/// Maximum total weight of a route's weighted targets.
pub const MAX_TOTAL_WEIGHT: u64 = 100;

const RESERVED_PREFIXES: [&str; 2] = ["/aws-appmesh", "/aws-app-mesh"];
const RESERVED_GRPC_SERVICES: [&str; 2] = ["aws.appmesh", "aws.app-mesh"];

/// Rules checked on the JSON, where the typed form could not say which value broke them.
pub(crate) fn check_json(kind: ResourceKind, spec: &Value) -> Result<(), ApiError> {
    let route_members: &[&str] = match kind {
        ResourceKind::Route => &["httpRoute", "http2Route", "grpcRoute", "tcpRoute"],
        ResourceKind::GatewayRoute => &["httpRoute", "http2Route", "grpcRoute"],
        _ => return Ok(()),
    };
    let set: Vec<&str> = route_members
        .iter()
        .copied()
        .filter(|m| spec.get(m).is_some_and(|v| !v.is_null()))
        .collect();
    if set.len() != 1 {
        let got = if set.is_empty() {
            "none".to_owned()
        } else {
            set.join(", ")
        };
        return Err(bad(
            "spec",
            format!(
                "exactly one of {} must be set, got {got}",
                route_members.join(", ")
            ),
        ));
    }
    if kind == ResourceKind::Route {
        for member in ["httpRoute", "http2Route", "grpcRoute"] {
            let Some(Value::Array(events)) =
                spec.pointer(&format!("/{member}/retryPolicy/httpRetryEvents"))
            else {
                continue;
            };
            for (i, event) in events.iter().enumerate() {
                let known = event
                    .as_str()
                    .is_some_and(|e| super::spec::HttpRetryEvent::WIRE.contains(&e));
                if !known {
                    return Err(bad(
                        &format!("spec.{member}.retryPolicy.httpRetryEvents[{i}]"),
                        format!(
                            "{event} is not one of {}",
                            super::spec::HttpRetryEvent::WIRE.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Rules on the typed spec.
pub(crate) fn check(spec: &Spec) -> Result<(), ApiError> {
    match spec {
        Spec::Mesh(_) => Ok(()),
        Spec::VirtualService(_) => Ok(()),
        Spec::VirtualNode(vn) => check_virtual_node(vn),
        Spec::VirtualRouter(vr) => check_virtual_router(vr),
        Spec::Route(route) => check_route(route),
        Spec::VirtualGateway(vg) => check_virtual_gateway(vg),
        Spec::GatewayRoute(gr) => check_gateway_route(gr),
    }
}

// === listeners ===

fn check_unique_ports(ports: impl Iterator<Item = u16>) -> Result<(), ApiError> {
    let mut seen = BTreeMap::new();
    for (i, port) in ports.enumerate() {
        if let Some(first) = seen.insert(port, i) {
            return Err(bad(
                &format!("spec.listeners[{i}].portMapping.port"),
                format!("{port} is already the port of spec.listeners[{first}]"),
            ));
        }
    }
    Ok(())
}

fn check_health_check_port(i: usize, check_port: Option<u16>, port: u16) -> Result<(), ApiError> {
    match check_port {
        Some(p) if p != port => Err(bad(
            &format!("spec.listeners[{i}].healthCheck.port"),
            format!("{p} must equal the listener port {port}"),
        )),
        _ => Ok(()),
    }
}

fn check_virtual_node(vn: &VirtualNodeSpec) -> Result<(), ApiError> {
    use crate::model::spec::ServiceDiscovery;
    check_logging(vn.logging.as_ref())?;
    if let Some(ServiceDiscovery::Dns(dns)) = &vn.service_discovery {
        check_host_name("spec.serviceDiscovery.dns.hostname", &dns.hostname)?;
    }
    let listeners = vn.listeners();
    check_unique_ports(listeners.iter().map(|l| l.port_mapping.port))?;
    for (i, l) in listeners.iter().enumerate() {
        let (port, protocol) = (l.port_mapping.port, l.port_mapping.protocol);
        check_health_check_port(i, l.health_check.as_ref().and_then(|h| h.port), port)?;
        if let Some(pool) = &l.connection_pool {
            if pool.protocol() != protocol {
                return Err(bad(
                    &format!("spec.listeners[{i}].connectionPool"),
                    format!(
                        "a {} pool does not fit the listener protocol {}",
                        pool.protocol().as_str(),
                        protocol.as_str()
                    ),
                ));
            }
        }
        if let Some(timeout) = &l.timeout {
            if timeout.protocol() != protocol {
                return Err(bad(
                    &format!("spec.listeners[{i}].timeout"),
                    format!(
                        "a {} timeout does not fit the listener protocol {}",
                        timeout.protocol().as_str(),
                        protocol.as_str()
                    ),
                ));
            }
        }
    }
    let mut seen = BTreeMap::new();
    for (i, name) in vn.backend_services().enumerate() {
        if let Some(first) = seen.insert(name, i) {
            return Err(bad(
                &format!("spec.backends[{i}].virtualService.virtualServiceName"),
                format!("{name:?} is already the backend spec.backends[{first}]"),
            ));
        }
    }
    Ok(())
}

fn check_virtual_router(vr: &VirtualRouterSpec) -> Result<(), ApiError> {
    check_unique_ports(vr.listeners().iter().map(|l| l.port_mapping.port))
}

fn check_virtual_gateway(vg: &VirtualGatewaySpec) -> Result<(), ApiError> {
    check_logging(vg.logging.as_ref())?;
    check_unique_ports(vg.listeners.iter().map(|l| l.port_mapping.port))?;
    for (i, l) in vg.listeners.iter().enumerate() {
        let (port, protocol) = (l.port_mapping.port, l.port_mapping.protocol);
        check_health_check_port(i, l.health_check.as_ref().and_then(|h| h.port), port)?;
        if let Some(pool) = &l.connection_pool {
            if pool.protocol() != protocol {
                return Err(bad(
                    &format!("spec.listeners[{i}].connectionPool"),
                    format!(
                        "a {} pool does not fit the listener protocol {}",
                        super::spec::PortProtocol::from(pool.protocol()).as_str(),
                        super::spec::PortProtocol::from(protocol).as_str()
                    ),
                ));
            }
        }
    }
    Ok(())
}

// === routes ===

fn check_route(route: &RouteSpec) -> Result<(), ApiError> {
    let base = format!("spec.{}", route.route.member());
    check_weights(&base, route.weighted_targets())?;
    match &route.route {
        RouteType::Http(r) | RouteType::Http2(r) => check_http_route(&base, r),
        RouteType::Grpc(r) => {
            let m = &r.r#match;
            if m.method_name.is_some() && m.service_name.is_none() {
                return Err(bad(
                    &format!("{base}.match.methodName"),
                    "requires serviceName",
                ));
            }
            check_metadata(&base, m.metadata.as_deref())?;
            if let Some(p) = &r.retry_policy {
                let none = p.grpc_retry_events.as_ref().is_none_or(Vec::is_empty)
                    && p.http_retry_events.as_ref().is_none_or(Vec::is_empty)
                    && p.tcp_retry_events.as_ref().is_none_or(Vec::is_empty);
                if none {
                    return Err(bad(
                        &format!("{base}.retryPolicy"),
                        "must set at least one of grpcRetryEvents, httpRetryEvents, tcpRetryEvents",
                    ));
                }
            }
            Ok(())
        }
        RouteType::Tcp(_) => Ok(()),
    }
}

fn check_weights(base: &str, targets: &[WeightedTarget]) -> Result<(), ApiError> {
    let total: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
    if total > MAX_TOTAL_WEIGHT {
        return Err(bad(
            &format!("{base}.action.weightedTargets"),
            format!("weights add up to {total}, above the maximum {MAX_TOTAL_WEIGHT}"),
        ));
    }
    Ok(())
}

fn check_http_route(base: &str, route: &HttpRoute) -> Result<(), ApiError> {
    let m: &HttpRouteMatch = &route.r#match;
    let path = format!("{base}.match");
    match (&m.prefix, &m.path) {
        (Some(_), Some(_)) => return Err(bad(&path, "set only one of prefix, path")),
        (None, None) => return Err(bad(&path, "exactly one of prefix, path must be set")),
        (Some(prefix), None) => check_prefix(&path, prefix)?,
        (None, Some(p)) => check_path_match(&path, p)?,
    }
    check_headers(&path, m.headers.as_deref())?;
    if let Some(p) = &route.retry_policy {
        let none = p.http_retry_events.as_ref().is_none_or(Vec::is_empty)
            && p.tcp_retry_events.as_ref().is_none_or(Vec::is_empty);
        if none {
            return Err(bad(
                &format!("{base}.retryPolicy"),
                "must set at least one of httpRetryEvents, tcpRetryEvents",
            ));
        }
    }
    Ok(())
}

fn check_prefix(match_path: &str, prefix: &str) -> Result<(), ApiError> {
    if !prefix.starts_with('/') {
        return Err(bad(
            &format!("{match_path}.prefix"),
            format!("{prefix:?} must start with /"),
        ));
    }
    Ok(())
}

fn check_path_match(match_path: &str, p: &HttpPathMatch) -> Result<(), ApiError> {
    if p.exact.is_some() == p.regex.is_some() {
        return Err(bad(
            &format!("{match_path}.path"),
            "exactly one of exact, regex must be set",
        ));
    }
    if let Some(r) = &p.regex {
        matching::full_regex(r).map_err(|e| bad(&format!("{match_path}.path.regex"), e))?;
    }
    Ok(())
}

fn check_headers(match_path: &str, headers: Option<&[HttpRouteHeader]>) -> Result<(), ApiError> {
    for (i, h) in headers.unwrap_or_default().iter().enumerate() {
        check_header(
            &format!("{match_path}.headers[{i}]"),
            &h.name,
            h.r#match.as_ref(),
        )?;
    }
    Ok(())
}

fn check_metadata(base: &str, metadata: Option<&[GrpcRouteMetadata]>) -> Result<(), ApiError> {
    for (i, m) in metadata.unwrap_or_default().iter().enumerate() {
        check_header(
            &format!("{base}.match.metadata[{i}]"),
            &m.name,
            m.r#match.as_ref(),
        )?;
    }
    Ok(())
}

/// One header (or metadata) match: a name the proxies can look up, a regex they can
/// compile, a range that is not empty.
fn check_header(
    path: &str,
    name: &str,
    method: Option<&HeaderMatchMethod>,
) -> Result<(), ApiError> {
    matching::header_name(name).map_err(|e| bad(&format!("{path}.name"), e))?;
    if let Some(HeaderMatchMethod::Regex(r)) = method {
        matching::full_regex(r).map_err(|e| bad(&format!("{path}.match.regex"), e))?;
    }
    check_range(path, method)
}

/// `logging.accessLog.file.format`: every operator one the proxies produce.
fn check_logging(logging: Option<&Logging>) -> Result<(), ApiError> {
    let Some(AccessLog::File(file)) = logging.and_then(|l| l.access_log.as_ref()) else {
        return Ok(());
    };
    let base = "spec.logging.accessLog.file.format";
    match &file.format {
        None => Ok(()),
        Some(LoggingFormat::Text(t)) => log_format::parse(t)
            .map(|_| ())
            .map_err(|e| bad(&format!("{base}.text"), e)),
        Some(LoggingFormat::Json(fields)) => {
            for (i, f) in fields.iter().enumerate() {
                log_format::parse(&f.value)
                    .map_err(|e| bad(&format!("{base}.json[{i}].value"), e))?;
            }
            Ok(())
        }
    }
}

fn check_range(path: &str, method: Option<&HeaderMatchMethod>) -> Result<(), ApiError> {
    if let Some(HeaderMatchMethod::Range(r)) = method {
        if r.start >= r.end {
            return Err(bad(
                &format!("{path}.match.range"),
                format!("start {} must be below end {}", r.start, r.end),
            ));
        }
    }
    Ok(())
}

// === gateway routes ===

fn check_gateway_route(gr: &GatewayRouteSpec) -> Result<(), ApiError> {
    let base = format!("spec.{}", gr.route.member());
    match &gr.route {
        GatewayRouteType::Http(r) | GatewayRouteType::Http2(r) => {
            check_http_gateway_route(&base, r)
        }
        GatewayRouteType::Grpc(r) => {
            let m = &r.r#match;
            if let Some(service) = &m.service_name {
                if RESERVED_GRPC_SERVICES
                    .iter()
                    .any(|p| service.starts_with(p))
                {
                    return Err(bad(
                        &format!("{base}.match.serviceName"),
                        format!(
                            "{service:?} is reserved (names starting with {} are App Mesh's)",
                            RESERVED_GRPC_SERVICES.join(" or ")
                        ),
                    ));
                }
            }
            if let Some(h) = &m.hostname {
                check_hostname_match(&base, h.exact.is_some(), h.suffix.is_some())?;
            }
            check_metadata(&base, m.metadata.as_deref())
        }
    }
}

fn check_http_gateway_route(base: &str, r: &HttpGatewayRoute) -> Result<(), ApiError> {
    let m = &r.r#match;
    let path = format!("{base}.match");
    if m.prefix.is_some() && m.path.is_some() {
        return Err(bad(&path, "set only one of prefix, path"));
    }
    if let Some(prefix) = &m.prefix {
        check_prefix(&path, prefix)?;
        if RESERVED_PREFIXES.iter().any(|p| prefix.starts_with(p)) {
            return Err(bad(
                &format!("{path}.prefix"),
                format!(
                    "{prefix:?} is reserved (prefixes starting with {} are App Mesh's)",
                    RESERVED_PREFIXES.join(" or ")
                ),
            ));
        }
    }
    if let Some(p) = &m.path {
        check_path_match(&path, p)?;
    }
    if let Some(h) = &m.hostname {
        check_hostname_match(base, h.exact.is_some(), h.suffix.is_some())?;
    }
    check_headers(&path, m.headers.as_deref())?;
    if let Some(rewrite) = &r.action.rewrite {
        if rewrite.prefix.is_some() && m.prefix.is_none() {
            return Err(bad(
                &format!("{base}.action.rewrite.prefix"),
                "needs a prefix match",
            ));
        }
        if rewrite.path.is_some() && m.path.is_none() {
            return Err(bad(
                &format!("{base}.action.rewrite.path"),
                "needs a path match",
            ));
        }
    }
    Ok(())
}

fn check_hostname_match(base: &str, exact: bool, suffix: bool) -> Result<(), ApiError> {
    if exact == suffix {
        return Err(bad(
            &format!("{base}.match.hostname"),
            "exactly one of exact, suffix must be set",
        ));
    }
    Ok(())
}

/// A DNS host name (RFC 1123): at most 253 characters, dot-separated labels of 1 to 63
/// letters, digits, `-` and `_` (service records use it), no label starting or ending
/// with `-`; one trailing dot (a rooted name) is allowed. An IP address passes too.
fn check_host_name(path: &str, name: &str) -> Result<(), ApiError> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let bare = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if bare.is_empty() || name.len() > 253 || !bare.split('.').all(label_ok) {
        return Err(bad(
            path,
            format!("{name:?} is not a host name (dot-separated labels of 1 to 63 letters, digits, '-' or '_', 253 characters at most)"),
        ));
    }
    Ok(())
}

fn bad(path: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("{path}: {message}"))
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
