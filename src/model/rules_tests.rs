use serde_json::{json, Value};

use crate::model::{ApiError, ResourceKind, Spec};

fn refused(kind: ResourceKind, spec: Value) -> String {
    match Spec::parse(kind, Some(&spec)) {
        Err(ApiError::BadRequest(m)) => m,
        other => panic!("expected BadRequest for {spec}, got {other:?}"),
    }
}

fn route(http_match: Value) -> Value {
    json!({"httpRoute": {"match": http_match,
        "action": {"weightedTargets": [{"virtualNode": "a", "weight": 1}]}}})
}

fn gateway_route(http_match: Value, rewrite: Option<Value>) -> Value {
    let mut action = json!({"target": {"virtualService": {"virtualServiceName": "svc"}}});
    if let Some(r) = rewrite {
        action["rewrite"] = r;
    }
    json!({"httpRoute": {"match": http_match, "action": action}})
}

fn listener(port: u16, protocol: &str) -> Value {
    json!({"portMapping": {"port": port, "protocol": protocol}})
}

#[test]
fn route_without_a_route_type_is_refused() {
    assert_eq!(
        refused(ResourceKind::Route, json!({"priority": 1})),
        "spec: exactly one of httpRoute, http2Route, grpcRoute, tcpRoute must be set, got none"
    );
}

#[test]
fn route_with_two_route_types_names_them() {
    let mut spec = route(json!({"prefix": "/"}));
    spec["tcpRoute"] = json!({"action": {"weightedTargets": [{"virtualNode": "a", "weight": 1}]}});
    assert_eq!(
        refused(ResourceKind::Route, spec),
        "spec: exactly one of httpRoute, http2Route, grpcRoute, tcpRoute must be set, got httpRoute, tcpRoute"
    );
}

#[test]
fn gateway_route_cannot_be_tcp() {
    let spec =
        json!({"tcpRoute": {"action": {"weightedTargets": [{"virtualNode": "a", "weight": 1}]}}});
    assert_eq!(
        refused(ResourceKind::GatewayRoute, spec),
        "spec: exactly one of httpRoute, http2Route, grpcRoute must be set, got none"
    );
}

#[test]
fn weights_above_100_in_total_are_refused() {
    let spec = json!({"tcpRoute": {"action": {"weightedTargets": [
        {"virtualNode": "a", "weight": 60}, {"virtualNode": "b", "weight": 41}]}}});
    assert_eq!(
        refused(ResourceKind::Route, spec),
        "spec.tcpRoute.action.weightedTargets: weights add up to 101, above the maximum 100"
    );
}

#[test]
fn http_route_prefix_must_start_with_a_slash() {
    assert_eq!(
        refused(ResourceKind::Route, route(json!({"prefix": "tell"}))),
        "spec.httpRoute.match.prefix: \"tell\" must start with /"
    );
}

#[test]
fn http_route_needs_a_prefix_or_a_path() {
    assert_eq!(
        refused(ResourceKind::Route, route(json!({"method": "GET"}))),
        "spec.httpRoute.match: exactly one of prefix, path must be set"
    );
}

#[test]
fn http_route_may_not_set_both_prefix_and_path() {
    assert_eq!(
        refused(
            ResourceKind::Route,
            route(json!({"prefix": "/", "path": {"exact": "/a"}}))
        ),
        "spec.httpRoute.match: set only one of prefix, path"
    );
}

#[test]
fn path_match_sets_exactly_one_of_exact_and_regex() {
    assert_eq!(
        refused(
            ResourceKind::Route,
            route(json!({"path": {"exact": "/a", "regex": "/b"}}))
        ),
        "spec.httpRoute.match.path: exactly one of exact, regex must be set"
    );
    assert_eq!(
        refused(ResourceKind::Route, route(json!({"path": {}}))),
        "spec.httpRoute.match.path: exactly one of exact, regex must be set"
    );
}

#[test]
fn header_range_start_must_be_below_end() {
    let m = json!({"prefix": "/", "headers": [{"name": "x", "match": {"range": {"start": 5, "end": 5}}}]});
    assert_eq!(
        refused(ResourceKind::Route, route(m)),
        "spec.httpRoute.match.headers[0].match.range: start 5 must be below end 5"
    );
}

#[test]
fn grpc_method_name_requires_service_name() {
    let spec = json!({"grpcRoute": {"match": {"methodName": "Get"},
        "action": {"weightedTargets": [{"virtualNode": "a", "weight": 1}]}}});
    assert_eq!(
        refused(ResourceKind::Route, spec),
        "spec.grpcRoute.match.methodName: requires serviceName"
    );
}

#[test]
fn grpc_metadata_range_start_must_be_below_end() {
    let spec = json!({"grpcRoute": {"match": {"metadata": [{"name": "x", "match": {"range": {"start": 9, "end": 1}}}]},
        "action": {"weightedTargets": [{"virtualNode": "a", "weight": 1}]}}});
    assert_eq!(
        refused(ResourceKind::Route, spec),
        "spec.grpcRoute.match.metadata[0].match.range: start 9 must be below end 1"
    );
}

#[test]
fn retry_policy_needs_a_retry_event() {
    let mut spec = route(json!({"prefix": "/"}));
    spec["httpRoute"]["retryPolicy"] =
        json!({"maxRetries": 2, "perRetryTimeout": {"value": 1, "unit": "s"}});
    assert_eq!(
        refused(ResourceKind::Route, spec),
        "spec.httpRoute.retryPolicy: must set at least one of httpRetryEvents, tcpRetryEvents"
    );
}

#[test]
fn grpc_retry_policy_needs_a_retry_event() {
    let spec = json!({"grpcRoute": {"match": {},
        "action": {"weightedTargets": [{"virtualNode": "a", "weight": 1}]},
        "retryPolicy": {"maxRetries": 2, "perRetryTimeout": {"value": 1, "unit": "s"}}}});
    assert!(refused(ResourceKind::Route, spec)
        .starts_with("spec.grpcRoute.retryPolicy: must set at least one of grpcRetryEvents"));
}

#[test]
fn unknown_http_retry_event_lists_the_known_ones() {
    let mut spec = route(json!({"prefix": "/"}));
    spec["httpRoute"]["retryPolicy"] = json!({"maxRetries": 2,
        "perRetryTimeout": {"value": 1, "unit": "s"}, "httpRetryEvents": ["server-error", "5xx"]});
    assert_eq!(
        refused(ResourceKind::Route, spec),
        "spec.httpRoute.retryPolicy.httpRetryEvents[1]: \"5xx\" is not one of server-error, gateway-error, client-error, stream-error"
    );
}

#[test]
fn gateway_route_reserved_prefixes_are_refused() {
    for prefix in ["/aws-appmesh", "/aws-app-mesh/x"] {
        let m = refused(
            ResourceKind::GatewayRoute,
            gateway_route(json!({"prefix": prefix}), None),
        );
        assert!(
            m.starts_with("spec.httpRoute.match.prefix:") && m.contains("is reserved"),
            "{m}"
        );
    }
}

#[test]
fn gateway_route_reserved_grpc_services_are_refused() {
    let spec = json!({"grpcRoute": {"match": {"serviceName": "aws.appmesh.Envoy"},
        "action": {"target": {"virtualService": {"virtualServiceName": "svc"}}}}});
    let m = refused(ResourceKind::GatewayRoute, spec);
    assert!(
        m.starts_with("spec.grpcRoute.match.serviceName: \"aws.appmesh.Envoy\" is reserved"),
        "{m}"
    );
}

#[test]
fn gateway_route_prefix_must_start_with_a_slash() {
    assert_eq!(
        refused(
            ResourceKind::GatewayRoute,
            gateway_route(json!({"prefix": "color"}), None)
        ),
        "spec.httpRoute.match.prefix: \"color\" must start with /"
    );
}

#[test]
fn gateway_route_may_match_on_hostname_alone() {
    let spec = gateway_route(json!({"hostname": {"exact": "a.example.com"}}), None);
    Spec::parse(ResourceKind::GatewayRoute, Some(&spec)).unwrap();
}

#[test]
fn gateway_hostname_match_sets_exactly_one_of_exact_and_suffix() {
    let spec = gateway_route(json!({"hostname": {"exact": "a", "suffix": "b"}}), None);
    assert_eq!(
        refused(ResourceKind::GatewayRoute, spec),
        "spec.httpRoute.match.hostname: exactly one of exact, suffix must be set"
    );
}

#[test]
fn prefix_rewrite_needs_a_prefix_match() {
    let spec = gateway_route(
        json!({"path": {"exact": "/a"}}),
        Some(json!({"prefix": {"value": "/b/"}})),
    );
    assert_eq!(
        refused(ResourceKind::GatewayRoute, spec),
        "spec.httpRoute.action.rewrite.prefix: needs a prefix match"
    );
}

#[test]
fn path_rewrite_needs_a_path_match() {
    let spec = gateway_route(
        json!({"prefix": "/a"}),
        Some(json!({"path": {"exact": "/b"}})),
    );
    assert_eq!(
        refused(ResourceKind::GatewayRoute, spec),
        "spec.httpRoute.action.rewrite.path: needs a path match"
    );
}

#[test]
fn duplicate_listener_ports_are_refused() {
    let spec = json!({"listeners": [listener(80, "http"), listener(80, "tcp")]});
    assert_eq!(
        refused(ResourceKind::VirtualNode, spec.clone()),
        "spec.listeners[1].portMapping.port: 80 is already the port of spec.listeners[0]"
    );
    assert!(refused(ResourceKind::VirtualRouter, spec).contains("already the port"));
    let gw = json!({"listeners": [listener(80, "http"), listener(80, "grpc")]});
    assert!(refused(ResourceKind::VirtualGateway, gw).contains("already the port"));
}

#[test]
fn health_check_port_must_be_the_listener_port() {
    let mut l = listener(9080, "http");
    l["healthCheck"] = json!({"healthyThreshold": 2, "unhealthyThreshold": 2,
        "intervalMillis": 5000, "timeoutMillis": 2000, "protocol": "http", "port": 8080});
    assert_eq!(
        refused(ResourceKind::VirtualNode, json!({"listeners": [l.clone()]})),
        "spec.listeners[0].healthCheck.port: 8080 must equal the listener port 9080"
    );
    assert!(
        refused(ResourceKind::VirtualGateway, json!({"listeners": [l]}))
            .contains("must equal the listener port")
    );
}

#[test]
fn connection_pool_must_fit_the_listener_protocol() {
    let mut l = listener(9080, "http");
    l["connectionPool"] = json!({"tcp": {"maxConnections": 1}});
    assert_eq!(
        refused(ResourceKind::VirtualNode, json!({"listeners": [l]})),
        "spec.listeners[0].connectionPool: a tcp pool does not fit the listener protocol http"
    );
    let mut l = listener(9080, "grpc");
    l["connectionPool"] = json!({"http2": {"maxRequests": 1}});
    assert_eq!(
        refused(ResourceKind::VirtualGateway, json!({"listeners": [l]})),
        "spec.listeners[0].connectionPool: a http2 pool does not fit the listener protocol grpc"
    );
}

#[test]
fn timeout_must_fit_the_listener_protocol() {
    let mut l = listener(9080, "tcp");
    l["timeout"] = json!({"http": {"idle": {"value": 1, "unit": "s"}}});
    assert_eq!(
        refused(ResourceKind::VirtualNode, json!({"listeners": [l]})),
        "spec.listeners[0].timeout: a http timeout does not fit the listener protocol tcp"
    );
}

#[test]
fn duplicate_backends_are_refused() {
    let spec = json!({"backends": [
        {"virtualService": {"virtualServiceName": "a.local"}},
        {"virtualService": {"virtualServiceName": "b.local"}},
        {"virtualService": {"virtualServiceName": "a.local"}}]});
    assert_eq!(
        refused(ResourceKind::VirtualNode, spec),
        "spec.backends[2].virtualService.virtualServiceName: \"a.local\" is already the backend spec.backends[0]"
    );
}

#[test]
fn reference_names_with_a_slash_are_refused() {
    let spec = json!({"provider": {"virtualNode": {"virtualNodeName": "a/b"}}});
    assert!(refused(ResourceKind::VirtualService, spec).contains("may not contain '/'"));
}
