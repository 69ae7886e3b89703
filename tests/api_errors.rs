//! Bad requests: each gets the right AWS error type and a message naming the cause, and
//! none of them changes what the store holds.

mod common;

use common::{Api, Control};
use serde_json::{json, Value};

const NODE: &str = r#"{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],"serviceDiscovery":{"dns":{"hostname":"a.local"}}}"#;

fn setup(api: &Api) {
    let ok = |method: &str, path: &str, body: String| {
        let (s, _, b) = api.call(method, path, Some(&body));
        assert_eq!(s, 200, "{path}: {b}");
    };
    ok("PUT", "/v20190125/meshes", r#"{"meshName":"m"}"#.into());
    for vn in ["a", "b"] {
        ok(
            "PUT",
            "/v20190125/meshes/m/virtualNodes",
            format!(r#"{{"virtualNodeName":"{vn}","spec":{NODE}}}"#),
        );
    }
    ok("PUT", "/v20190125/meshes/m/virtualRouters", r#"{"virtualRouterName":"vr","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}}"#.into());
    ok(
        "PUT",
        "/v20190125/meshes/m/virtualRouter/vr/routes",
        r#"{"routeName":"r","spec":{"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[{"virtualNode":"a","weight":1},{"virtualNode":"b","weight":1}]}}}}"#.into(),
    );
    ok("PUT", "/v20190125/meshes/m/virtualServices", r#"{"virtualServiceName":"svc.local","spec":{"provider":{"virtualRouter":{"virtualRouterName":"vr"}}}}"#.into());
    ok("PUT", "/v20190125/meshes/m/virtualGateways", r#"{"virtualGatewayName":"gw","spec":{"listeners":[{"portMapping":{"port":9080,"protocol":"http"}}]}}"#.into());
    ok(
        "PUT",
        "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
        r#"{"gatewayRouteName":"gr","spec":{"httpRoute":{"match":{"prefix":"/x"},"action":{"target":{"virtualService":{"virtualServiceName":"svc.local"}}}}}}"#.into(),
    );
}

/// Everything the API shows of the store: every list and every describe.
fn dump(api: &Api) -> Value {
    let get = |p: &str| {
        let (s, _, b) = api.call("GET", p, None);
        assert_eq!(s, 200, "{p}: {b}");
        b
    };
    let mut out = serde_json::Map::new();
    for p in [
        "/v20190125/meshes",
        "/v20190125/meshes/m",
        "/v20190125/meshes/m/virtualNodes",
        "/v20190125/meshes/m/virtualNodes/a",
        "/v20190125/meshes/m/virtualNodes/b",
        "/v20190125/meshes/m/virtualRouters",
        "/v20190125/meshes/m/virtualRouters/vr",
        "/v20190125/meshes/m/virtualRouter/vr/routes",
        "/v20190125/meshes/m/virtualRouter/vr/routes/r",
        "/v20190125/meshes/m/virtualServices",
        "/v20190125/meshes/m/virtualServices/svc.local",
        "/v20190125/meshes/m/virtualGateways",
        "/v20190125/meshes/m/virtualGateways/gw",
        "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
        "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes/gr",
    ] {
        out.insert(p.to_owned(), get(p));
    }
    Value::Object(out)
}

struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    body: Option<Vec<u8>>,
    status: u16,
    kind: &'static str,
    says: &'static str,
}

fn case(
    what: &'static str,
    method: &'static str,
    path: &str,
    body: &str,
    status: u16,
    kind: &'static str,
    says: &'static str,
) -> Case {
    Case {
        what,
        method,
        path: path.to_owned(),
        body: (!body.is_empty()).then(|| body.as_bytes().to_vec()),
        status,
        kind,
        says,
    }
}

fn vn_body(spec: &str) -> String {
    format!(r#"{{"virtualNodeName":"new","spec":{spec}}}"#)
}

fn route_body(spec: &str) -> String {
    format!(r#"{{"routeName":"new","spec":{spec}}}"#)
}

#[test]
fn invalid_requests_get_the_right_error_and_change_nothing() {
    let control = Control::start();
    let api = Api::new(&control);
    setup(&api);
    let before = dump(&api);
    let vns = "/v20190125/meshes/m/virtualNodes";
    let routes = "/v20190125/meshes/m/virtualRouter/vr/routes";
    let bad = 400;
    let br = "BadRequestException";
    let big = format!(
        r#"{{"virtualNodeName":"big","spec":{{"x":"{}"}}}}"#,
        "a".repeat(10 << 20)
    );
    let cases = vec![
        case(
            "port as a string",
            "PUT",
            vns,
            &vn_body(r#"{"listeners":[{"portMapping":{"port":"80","protocol":"http"}}]}"#),
            bad,
            br,
            "spec.listeners[0].portMapping.port",
        ),
        case(
            "missing spec",
            "PUT",
            vns,
            r#"{"virtualNodeName":"new"}"#,
            bad,
            br,
            "spec",
        ),
        case(
            "missing name",
            "PUT",
            vns,
            r#"{"spec":{}}"#,
            bad,
            br,
            "virtualNodeName",
        ),
        case(
            "port out of range",
            "PUT",
            vns,
            &vn_body(r#"{"listeners":[{"portMapping":{"port":70000,"protocol":"http"}}]}"#),
            bad,
            br,
            "65535",
        ),
        case(
            "health check interval below minimum",
            "PUT",
            vns,
            &vn_body(
                r#"{"listeners":[{"portMapping":{"port":80,"protocol":"http"},"healthCheck":{"protocol":"http","healthyThreshold":2,"unhealthyThreshold":2,"intervalMillis":10,"timeoutMillis":2000}}]}"#,
            ),
            bad,
            br,
            "intervalMillis",
        ),
        case(
            "health check timeout below minimum",
            "PUT",
            vns,
            &vn_body(
                r#"{"listeners":[{"portMapping":{"port":80,"protocol":"http"},"healthCheck":{"protocol":"http","healthyThreshold":2,"unhealthyThreshold":2,"intervalMillis":5000,"timeoutMillis":100}}]}"#,
            ),
            bad,
            br,
            "timeoutMillis",
        ),
        case(
            "unknown protocol",
            "PUT",
            vns,
            &vn_body(r#"{"listeners":[{"portMapping":{"port":80,"protocol":"udp"}}]}"#),
            bad,
            br,
            "udp",
        ),
        case(
            "two service discoveries",
            "PUT",
            vns,
            &vn_body(
                r#"{"serviceDiscovery":{"dns":{"hostname":"a"},"awsCloudMap":{"namespaceName":"n","serviceName":"s"}}}"#,
            ),
            bad,
            br,
            "serviceDiscovery",
        ),
        case(
            "unknown spec field",
            "PUT",
            vns,
            &vn_body(r#"{"listenerz":[]}"#),
            bad,
            br,
            "listenerz",
        ),
        case(
            "name too long",
            "PUT",
            vns,
            &format!(r#"{{"virtualNodeName":"{}","spec":{{}}}}"#, "n".repeat(256)),
            bad,
            br,
            "virtualNodeName",
        ),
        case(
            "duplicate name",
            "PUT",
            vns,
            r#"{"virtualNodeName":"a","spec":{}}"#,
            409,
            "ConflictException",
            "already exists",
        ),
        case(
            "node in a missing mesh",
            "PUT",
            "/v20190125/meshes/nope/virtualNodes",
            &vn_body("{}"),
            404,
            "NotFoundException",
            "nope",
        ),
        case(
            "body not JSON",
            "PUT",
            vns,
            "{not json",
            bad,
            br,
            "not valid JSON",
        ),
        case(
            "body is an array",
            "PUT",
            vns,
            "[1,2]",
            bad,
            br,
            "JSON object",
        ),
        case("10 MB body", "PUT", vns, &big, bad, br, "limit"),
        case(
            "route to a missing node",
            "PUT",
            routes,
            &route_body(
                r#"{"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[{"virtualNode":"ghost","weight":1}]}}}"#,
            ),
            404,
            "NotFoundException",
            "ghost",
        ),
        case(
            "weight above 100",
            "PUT",
            routes,
            &route_body(
                r#"{"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[{"virtualNode":"a","weight":101}]}}}"#,
            ),
            bad,
            br,
            "weight",
        ),
        case(
            "weights summing above 100",
            "PUT",
            routes,
            &route_body(
                r#"{"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[{"virtualNode":"a","weight":60},{"virtualNode":"b","weight":60}]}}}"#,
            ),
            bad,
            br,
            "weight",
        ),
        case(
            "no weighted targets",
            "PUT",
            routes,
            &route_body(
                r#"{"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[]}}}"#,
            ),
            bad,
            br,
            "weightedTargets",
        ),
        case(
            "http2 route on an http router",
            "PUT",
            routes,
            &route_body(
                r#"{"http2Route":{"match":{"prefix":"/"},"action":{"weightedTargets":[{"virtualNode":"a","weight":1}]}}}"#,
            ),
            bad,
            br,
            "virtual router vr has no http2 listener",
        ),
        case(
            "grpc gateway route on an http gateway",
            "PUT",
            "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
            r#"{"gatewayRouteName":"g4","spec":{"grpcRoute":{"match":{"serviceName":"s"},"action":{"target":{"virtualService":{"virtualServiceName":"svc.local"}}}}}}"#,
            bad,
            br,
            "virtual gateway gw has no grpc listener",
        ),
        case(
            "prefix without slash",
            "PUT",
            routes,
            &route_body(
                r#"{"httpRoute":{"match":{"prefix":"tell"},"action":{"weightedTargets":[{"virtualNode":"a","weight":1}]}}}"#,
            ),
            bad,
            br,
            "prefix",
        ),
        case(
            "two route types",
            "PUT",
            routes,
            &route_body(
                r#"{"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[{"virtualNode":"a","weight":1}]}},"tcpRoute":{"action":{"weightedTargets":[{"virtualNode":"a","weight":1}]}}}"#,
            ),
            bad,
            br,
            "Route",
        ),
        case(
            "retry policy without events",
            "PUT",
            routes,
            &route_body(
                r#"{"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[{"virtualNode":"a","weight":1}]},"retryPolicy":{"maxRetries":2,"perRetryTimeout":{"value":1,"unit":"s"}}}}"#,
            ),
            bad,
            br,
            "retryPolicy",
        ),
        case(
            "header match with two methods",
            "PUT",
            routes,
            &route_body(
                r#"{"httpRoute":{"match":{"prefix":"/","headers":[{"name":"x","match":{"exact":"a","prefix":"b"}}]},"action":{"weightedTargets":[{"virtualNode":"a","weight":1}]}}}"#,
            ),
            bad,
            br,
            "headers[0].match",
        ),
        case(
            "duration unit unknown",
            "PUT",
            routes,
            &route_body(
                r#"{"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[{"virtualNode":"a","weight":1}]},"timeout":{"perRequest":{"value":1,"unit":"h"}}}}"#,
            ),
            bad,
            br,
            "unit",
        ),
        case(
            "service with a missing provider",
            "PUT",
            "/v20190125/meshes/m/virtualServices",
            r#"{"virtualServiceName":"x.local","spec":{"provider":{"virtualNode":{"virtualNodeName":"ghost"}}}}"#,
            404,
            "NotFoundException",
            "ghost",
        ),
        case(
            "gateway route to a missing service",
            "PUT",
            "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
            r#"{"gatewayRouteName":"g2","spec":{"httpRoute":{"match":{"prefix":"/y"},"action":{"target":{"virtualService":{"virtualServiceName":"ghost.local"}}}}}}"#,
            404,
            "NotFoundException",
            "ghost.local",
        ),
        case(
            "gateway route on a reserved prefix",
            "PUT",
            "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
            r#"{"gatewayRouteName":"g3","spec":{"httpRoute":{"match":{"prefix":"/aws-appmesh/x"},"action":{"target":{"virtualService":{"virtualServiceName":"svc.local"}}}}}}"#,
            bad,
            br,
            "aws-appmesh",
        ),
        case(
            "gateway without listeners",
            "PUT",
            "/v20190125/meshes/m/virtualGateways",
            r#"{"virtualGatewayName":"g","spec":{}}"#,
            bad,
            br,
            "listeners",
        ),
        case(
            "delete a node a route uses",
            "DELETE",
            "/v20190125/meshes/m/virtualNodes/a",
            "",
            409,
            "ResourceInUseException",
            "mesh/m/virtualRouter/vr/route/r",
        ),
        case(
            "delete a router with routes",
            "DELETE",
            "/v20190125/meshes/m/virtualRouters/vr",
            "",
            409,
            "ResourceInUseException",
            "route/r",
        ),
        case(
            "delete a service a gateway route uses",
            "DELETE",
            "/v20190125/meshes/m/virtualServices/svc.local",
            "",
            409,
            "ResourceInUseException",
            "gatewayRoute/gr",
        ),
        case(
            "delete a mesh with resources",
            "DELETE",
            "/v20190125/meshes/m",
            "",
            409,
            "ResourceInUseException",
            "mesh/m/",
        ),
        case(
            "describe a missing node",
            "GET",
            "/v20190125/meshes/m/virtualNodes/ghost",
            "",
            404,
            "NotFoundException",
            "ghost",
        ),
        case(
            "limit zero",
            "GET",
            "/v20190125/meshes/m/virtualNodes?limit=0",
            "",
            bad,
            br,
            "limit",
        ),
        case(
            "limit not a number",
            "GET",
            "/v20190125/meshes/m/virtualNodes?limit=ten",
            "",
            bad,
            br,
            "limit",
        ),
        case(
            "forged next token",
            "GET",
            "/v20190125/meshes/m/virtualNodes?nextToken=forged",
            "",
            bad,
            br,
            "nextToken",
        ),
        case(
            "another account as mesh owner",
            "GET",
            "/v20190125/meshes/m/virtualNodes?meshOwner=000000000001",
            "",
            403,
            "ForbiddenException",
            "meshOwner",
        ),
        case(
            "unknown operation",
            "GET",
            "/v20190125/teapots",
            "",
            404,
            "UnknownOperationException",
            "teapots",
        ),
        case(
            "too many tags",
            "PUT",
            vns,
            &format!(
                r#"{{"virtualNodeName":"t","spec":{{}},"tags":[{}]}}"#,
                (0..51)
                    .map(|i| format!(r#"{{"key":"k{i}","value":"v"}}"#))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            bad,
            br,
            "tags",
        ),
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let (status, kind, body) =
            api.call_with(c.method, &c.path, c.body.clone(), &api_secret(&control));
        let message = body["message"].as_str().unwrap_or_default().to_owned();
        if status != c.status || kind.as_deref() != Some(c.kind) || !message.contains(c.says) {
            failures.push(format!(
                "{}: got {status} {kind:?} {message:?}, want {} {} containing {:?}",
                c.what, c.status, c.kind, c.says
            ));
        }
    }
    // Authentication failures.
    let (s, k, _) = api.call_with("GET", "/v20190125/meshes", None, "wrong-secret");
    if (s, k.as_deref()) != (403, Some("InvalidSignatureException")) {
        failures.push(format!("bad signature: got {s} {k:?}"));
    }
    let raw = reqwest::blocking::get(format!("{}/v20190125/meshes", control.endpoint())).unwrap();
    let (s, k) = (
        raw.status().as_u16(),
        raw.headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    if (s, k.as_deref()) != (403, Some("MissingAuthenticationTokenException")) {
        failures.push(format!("unsigned request: got {s} {k:?}"));
    }
    // A client token reused with a different request.
    let with_token =
        |spec: &str| format!(r#"{{"virtualNodeName":"tok","clientToken":"t-1","spec":{spec}}}"#);
    assert_eq!(api.call("PUT", vns, Some(&with_token("{}"))).0, 200);
    let (s, k, _) = api.call("PUT", vns, Some(&with_token(NODE)));
    if (s, k.as_deref()) != (409, Some("ConflictException")) {
        failures.push(format!("client token reuse: got {s} {k:?}"));
    }
    assert_eq!(
        api.call("DELETE", "/v20190125/meshes/m/virtualNodes/tok", None)
            .0,
        200
    );

    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len() + 3,
        failures.join("\n")
    );
    assert_eq!(dump(&api), before, "a refused request changed the store");
    let _ = json!({});
}

fn api_secret(control: &Control) -> String {
    let text = std::fs::read_to_string(control.credentials()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("aws_secret_access_key = "))
        .unwrap()
        .to_owned()
}

/// Service-discovery fields with a value outside App Mesh's enums are refused naming the
/// field, and the store is unchanged after each; every documented value is accepted (the
/// proxies enforce them: tests/conformance_discovery.rs).
#[test]
fn discovery_fields_with_bad_values_are_refused_naming_the_field() {
    let control = Control::start();
    let api = Api::new(&control);
    let (s, _, b) = api.call("PUT", "/v20190125/meshes", Some(r#"{"meshName":"m"}"#));
    assert_eq!(s, 200, "{b}");
    let state = || {
        let (_, _, mesh) = api.call("GET", "/v20190125/meshes/m", None);
        let (_, _, nodes) = api.call("GET", "/v20190125/meshes/m/virtualNodes", None);
        (mesh, nodes)
    };
    let before = state();
    let node =
        |sd: Value| json!({"virtualNodeName": "n", "spec": {"serviceDiscovery": sd}}).to_string();
    let cases = [
        (
            "PUT",
            "/v20190125/meshes/m",
            json!({"spec": {"serviceDiscovery": {"ipPreference": "IPv4"}}}).to_string(),
            "ipPreference",
        ),
        (
            "PUT",
            "/v20190125/meshes/m/virtualNodes",
            node(json!({"dns": {"hostname": "a.example", "responseType": "ALL"}})),
            "responseType",
        ),
        (
            "PUT",
            "/v20190125/meshes/m/virtualNodes",
            node(json!({"dns": {"hostname": "a.example", "ipPreference": "ipv6_only"}})),
            "ipPreference",
        ),
        (
            "PUT",
            "/v20190125/meshes/m/virtualNodes",
            node(
                json!({"awsCloudMap": {"namespaceName": "ns", "serviceName": "s",
                "attributes": [{"key": "sta ge", "value": "canary"}]}}),
            ),
            "spec.serviceDiscovery.awsCloudMap.attributes[0].key",
        ),
    ];
    for (method, path, body, field) in cases {
        let (status, kind, b) = api.call(method, path, Some(&body));
        assert_eq!(status, 400, "{field}: {b}");
        assert_eq!(kind.as_deref(), Some("BadRequestException"), "{field}");
        assert!(
            b.to_string().contains(field),
            "{field}: the error names it: {b}"
        );
    }
    assert_eq!(state(), before, "a refused write changed the store");
    // The documented forms are accepted.
    let (s, _, b) = api.call(
        "PUT",
        "/v20190125/meshes/m",
        Some(&json!({"spec": {"serviceDiscovery": {"ipPreference": "IPv4_ONLY"}}}).to_string()),
    );
    assert_eq!(s, 200, "{b}");
    for (name, sd) in [
        (
            "d1",
            json!({"dns": {"hostname": "a.example", "responseType": "ENDPOINTS", "ipPreference": "IPv6_ONLY"}}),
        ),
        (
            "c1",
            json!({"awsCloudMap": {"namespaceName": "ns", "serviceName": "s",
            "attributes": [{"key": "stage", "value": "canary"}], "ipPreference": "IPv4_PREFERRED"}}),
        ),
    ] {
        let body = json!({"virtualNodeName": name, "spec": {"serviceDiscovery": sd}}).to_string();
        let (s, _, b) = api.call("PUT", "/v20190125/meshes/m/virtualNodes", Some(&body));
        assert_eq!(s, 200, "{name}: {b}");
    }
    let (s, _, b) = api.call(
        "PUT",
        "/v20190125/meshes/m/virtualNodes",
        Some(&node(
            json!({"dns": {"hostname": "a.example", "responseType": "LOADBALANCER"}}),
        )),
    );
    assert_eq!(s, 200, "{b}");
}
