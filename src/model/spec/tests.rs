use super::*;
use serde_json::json;

/// A walkthrough template's `spec`, with each `$VAR` bound to a JSON string as `jq --arg`
/// does.
pub(crate) fn walkthrough_spec(template: &str) -> Value {
    let var = regex::Regex::new(r"\$([A-Z_]+)").expect("literal regex");
    let text = var.replace_all(template, |c: &regex::Captures| match &c[1] {
        "CERTIFICATE_ARN" => "\"arn:aws:acm:us-west-2:123456789012:certificate/abc\"".to_owned(),
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
        let spec = Spec::parse(kind, Some(&enforced_only(&json)))
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(spec.kind(), kind);
    }
}

/// The kitchen sink without the fields the rules refuse because the proxies do not enforce
/// them yet (`rules::check_mesh`, `rules::check_virtual_node`): those round-trip as shapes
/// but are not accepted by `Spec::parse`.
fn enforced_only(json: &Value) -> Value {
    let mut v = json.clone();
    if let Some(sd) = v["serviceDiscovery"].as_object_mut() {
        sd.remove("ipPreference");
        for inner in ["dns", "awsCloudMap"] {
            if let Some(i) = sd.get_mut(inner).and_then(Value::as_object_mut) {
                i.remove("ipPreference");
                i.remove("attributes");
                if i.get("responseType").is_some_and(|t| t == "ENDPOINTS") {
                    i.remove("responseType");
                }
            }
        }
    }
    v
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
fn mesh_allow_all_egress_is_accepted() {
    let json = json!({"egressFilter": {"type": "ALLOW_ALL"}});
    let spec = Spec::parse(ResourceKind::Mesh, Some(&json)).unwrap();
    assert_eq!(spec.to_json(), json);
}

#[test]
fn other_kinds_require_a_spec() {
    assert!(Spec::parse(ResourceKind::VirtualNode, None).is_err());
}

#[test]
fn client_policy_tls_enforce_defaults_to_true() {
    let template = walkthrough_template("colorgateway-vg-backendDefaults.json");
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
    let template = walkthrough_template("colorteller-vs-1.json");
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
    let template = walkthrough_template("colorgateway-route-1.json");
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
    let template = walkthrough_template("colorgateway-vg-backendDefaults.json");
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
    let spec = Spec::parse(ResourceKind::VirtualNode, Some(&enforced_only(json))).unwrap();
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
/// The text of one walkthrough file, by name.
fn walkthrough_template(file: &str) -> &'static str {
    WALKTHROUGH
        .iter()
        .find(|w| w.0 == file)
        .map(|w| w.4)
        .unwrap_or_else(|| panic!("no walkthrough file {file}"))
}

/// The walkthrough's `mesh/*.json` jq templates, the files in `demo/walkthrough/` (the one
/// copy in the repo): file, operation, the create body's name member, the resource kind
/// and the text.
pub(crate) const WALKTHROUGH: [(&str, &str, Option<&str>, ResourceKind, &str); 19] = [
    (
        "mesh.json",
        "CreateMesh",
        Some("meshName"),
        ResourceKind::Mesh,
        include_str!("../../../demo/walkthrough/mesh.json"),
    ),
    (
        "colorteller-white-vn.json",
        "CreateVirtualNode",
        Some("virtualNodeName"),
        ResourceKind::VirtualNode,
        include_str!("../../../demo/walkthrough/colorteller-white-vn.json"),
    ),
    (
        "colorteller-blue-vn.json",
        "CreateVirtualNode",
        Some("virtualNodeName"),
        ResourceKind::VirtualNode,
        include_str!("../../../demo/walkthrough/colorteller-blue-vn.json"),
    ),
    (
        "colorteller-black-vn.json",
        "CreateVirtualNode",
        Some("virtualNodeName"),
        ResourceKind::VirtualNode,
        include_str!("../../../demo/walkthrough/colorteller-black-vn.json"),
    ),
    (
        "colorteller-red-vn.json",
        "CreateVirtualNode",
        Some("virtualNodeName"),
        ResourceKind::VirtualNode,
        include_str!("../../../demo/walkthrough/colorteller-red-vn.json"),
    ),
    (
        "colorteller-vr-1.json",
        "CreateVirtualRouter",
        Some("virtualRouterName"),
        ResourceKind::VirtualRouter,
        include_str!("../../../demo/walkthrough/colorteller-vr-1.json"),
    ),
    (
        "colorteller-vr-2.json",
        "CreateVirtualRouter",
        Some("virtualRouterName"),
        ResourceKind::VirtualRouter,
        include_str!("../../../demo/walkthrough/colorteller-vr-2.json"),
    ),
    (
        "colorteller-route-1.json",
        "CreateRoute",
        Some("routeName"),
        ResourceKind::Route,
        include_str!("../../../demo/walkthrough/colorteller-route-1.json"),
    ),
    (
        "colorteller-route-2.json",
        "CreateRoute",
        Some("routeName"),
        ResourceKind::Route,
        include_str!("../../../demo/walkthrough/colorteller-route-2.json"),
    ),
    (
        "colorteller-vs-1.json",
        "CreateVirtualService",
        Some("virtualServiceName"),
        ResourceKind::VirtualService,
        include_str!("../../../demo/walkthrough/colorteller-vs-1.json"),
    ),
    (
        "colorteller-vs-2.json",
        "CreateVirtualService",
        Some("virtualServiceName"),
        ResourceKind::VirtualService,
        include_str!("../../../demo/walkthrough/colorteller-vs-2.json"),
    ),
    (
        "colorgateway-vg.json",
        "CreateVirtualGateway",
        Some("virtualGatewayName"),
        ResourceKind::VirtualGateway,
        include_str!("../../../demo/walkthrough/colorgateway-vg.json"),
    ),
    (
        "colorgateway-route-1.json",
        "CreateGatewayRoute",
        Some("gatewayRouteName"),
        ResourceKind::GatewayRoute,
        include_str!("../../../demo/walkthrough/colorgateway-route-1.json"),
    ),
    (
        "colorgateway-route-2.json",
        "CreateGatewayRoute",
        Some("gatewayRouteName"),
        ResourceKind::GatewayRoute,
        include_str!("../../../demo/walkthrough/colorgateway-route-2.json"),
    ),
    (
        "colorteller-white-vn-tls.json",
        "UpdateVirtualNode",
        None,
        ResourceKind::VirtualNode,
        include_str!("../../../demo/walkthrough/colorteller-white-vn-tls.json"),
    ),
    (
        "colorteller-blue-vn-tls.json",
        "UpdateVirtualNode",
        None,
        ResourceKind::VirtualNode,
        include_str!("../../../demo/walkthrough/colorteller-blue-vn-tls.json"),
    ),
    (
        "colorteller-black-vn-tls.json",
        "UpdateVirtualNode",
        None,
        ResourceKind::VirtualNode,
        include_str!("../../../demo/walkthrough/colorteller-black-vn-tls.json"),
    ),
    (
        "colorteller-red-vn-tls.json",
        "UpdateVirtualNode",
        None,
        ResourceKind::VirtualNode,
        include_str!("../../../demo/walkthrough/colorteller-red-vn-tls.json"),
    ),
    (
        "colorgateway-vg-backendDefaults.json",
        "UpdateVirtualGateway",
        None,
        ResourceKind::VirtualGateway,
        include_str!("../../../demo/walkthrough/colorgateway-vg-backendDefaults.json"),
    ),
];
