use super::*;
use serde_json::json;

fn message(result: Result<(), ApiError>) -> String {
    match result {
        Err(ApiError::BadRequest(m)) => m,
        other => panic!("expected BadRequest, got {other:?}"),
    }
}

fn vn(spec: Value) -> String {
    message(validate_body(
        "CreateVirtualNode",
        &json!({"virtualNodeName": "vn", "spec": spec}),
    ))
}

fn listener() -> Value {
    json!({"portMapping": {"port": 9080, "protocol": "http"}})
}

#[test]
fn every_walkthrough_spec_passes_for_its_operation() {
    for (file, operation, name_member, _, template) in super::super::spec::tests::WALKTHROUGH {
        let spec = super::super::spec::tests::walkthrough_spec(template);
        let mut body = json!({ "spec": spec, "clientToken": "t" });
        if let Some(name) = name_member {
            body[name] = json!("x");
        }
        if let Err(e) = validate_body(operation, &body) {
            panic!("{file} refused for {operation}: {e}");
        }
    }
}

#[test]
fn body_must_be_an_object() {
    assert!(message(validate_body("CreateMesh", &json!([]))).contains("must be a JSON object"));
}

#[test]
fn unknown_top_level_member_is_refused() {
    let m = message(validate_body(
        "CreateMesh",
        &json!({"meshName": "m", "bogus": 1}),
    ));
    assert_eq!(m, "bogus: unknown field");
}

#[test]
fn uri_members_are_not_accepted_in_the_body() {
    let m = message(validate_body(
        "CreateVirtualNode",
        &json!({"virtualNodeName": "vn", "meshName": "m", "spec": {}}),
    ));
    assert_eq!(m, "meshName: unknown field");
}

#[test]
fn missing_required_body_member_is_named() {
    let m = message(validate_body(
        "CreateVirtualNode",
        &json!({"virtualNodeName": "vn"}),
    ));
    assert_eq!(m, "request body: missing required member spec");
}

#[test]
fn null_required_member_counts_as_missing() {
    let m = message(validate_body(
        "CreateVirtualNode",
        &json!({"virtualNodeName": "vn", "spec": null}),
    ));
    assert!(m.contains("missing required member spec"), "{m}");
}

#[test]
fn null_optional_members_are_ignored() {
    validate_body(
        "CreateVirtualNode",
        &json!({"virtualNodeName": "vn", "spec": {"listeners": null, "logging": null}, "tags": null}),
    )
    .unwrap();
}

#[test]
fn unknown_nested_member_is_refused() {
    assert_eq!(vn(json!({"bogus": true})), "spec.bogus: unknown field");
}

#[test]
fn missing_nested_required_member_is_named() {
    let m = message(validate_body(
        "CreateVirtualGateway",
        &json!({"virtualGatewayName": "g", "spec": {}}),
    ));
    assert_eq!(m, "spec: missing required member listeners");
}

#[test]
fn health_check_interval_below_minimum_is_refused() {
    let mut l = listener();
    l["healthCheck"] = json!({"healthyThreshold": 2, "unhealthyThreshold": 2,
        "intervalMillis": 10, "timeoutMillis": 2000, "protocol": "http"});
    assert_eq!(
        vn(json!({"listeners": [l]})),
        "spec.listeners[0].healthCheck.intervalMillis: 10 is below the minimum 5000"
    );
}

#[test]
fn health_check_threshold_above_maximum_is_refused() {
    let mut l = listener();
    l["healthCheck"] = json!({"healthyThreshold": 11, "unhealthyThreshold": 2,
        "intervalMillis": 5000, "timeoutMillis": 2000, "protocol": "http"});
    assert_eq!(
        vn(json!({"listeners": [l]})),
        "spec.listeners[0].healthCheck.healthyThreshold: 11 is above the maximum 10"
    );
}

#[test]
fn unknown_protocol_lists_the_allowed_ones() {
    let l = json!({"portMapping": {"port": 9080, "protocol": "udp"}});
    assert_eq!(
        vn(json!({"listeners": [l]})),
        "spec.listeners[0].portMapping.protocol: \"udp\" is not one of http, tcp, http2, grpc"
    );
}

#[test]
fn gateway_listener_refuses_tcp() {
    let m = message(validate_body(
        "CreateVirtualGateway",
        &json!({"virtualGatewayName": "g", "spec": {"listeners": [
            {"portMapping": {"port": 80, "protocol": "tcp"}}]}}),
    ));
    assert!(
        m.contains(
            "spec.listeners[0].portMapping.protocol: \"tcp\" is not one of http, http2, grpc"
        ),
        "{m}"
    );
}

#[test]
fn port_zero_is_refused() {
    let l = json!({"portMapping": {"port": 0, "protocol": "http"}});
    assert_eq!(
        vn(json!({"listeners": [l]})),
        "spec.listeners[0].portMapping.port: 0 is below the minimum 1"
    );
}

#[test]
fn port_above_65535_is_refused() {
    let l = json!({"portMapping": {"port": 70000, "protocol": "http"}});
    assert!(vn(json!({"listeners": [l]})).contains("70000 is above the maximum 65535"));
}

#[test]
fn fractional_integer_is_refused() {
    let l = json!({"portMapping": {"port": 1.5, "protocol": "http"}});
    assert_eq!(
        vn(json!({"listeners": [l]})),
        "spec.listeners[0].portMapping.port: 1.5 is not an integer"
    );
}

#[test]
fn integer_given_as_string_is_refused() {
    let l = json!({"portMapping": {"port": "9080", "protocol": "http"}});
    assert_eq!(
        vn(json!({"listeners": [l]})),
        "spec.listeners[0].portMapping.port: \"9080\" is not an integer"
    );
}

#[test]
fn integer_beyond_32_bits_is_refused() {
    let mut l = listener();
    l["connectionPool"] = json!({"http": {"maxConnections": 4_294_967_296_i64}});
    assert!(vn(json!({"listeners": [l]})).contains("is above the maximum 2147483647"));
}

#[test]
fn string_given_a_number_is_refused() {
    let m = vn(json!({"serviceDiscovery": {"dns": {"hostname": 5}}}));
    assert_eq!(m, "spec.serviceDiscovery.dns.hostname: 5 is not a string");
}

#[test]
fn boolean_given_a_string_is_refused() {
    let m = vn(
        json!({"backendDefaults": {"clientPolicy": {"tls": {"enforce": "yes",
        "validation": {"trust": {"file": {"certificateChain": "/c"}}}}}}}),
    );
    assert_eq!(
        m,
        "spec.backendDefaults.clientPolicy.tls.enforce: \"yes\" is not a boolean"
    );
}

#[test]
fn object_given_an_array_is_refused() {
    assert_eq!(
        vn(json!({"serviceDiscovery": []})),
        "spec.serviceDiscovery: an array is not an object"
    );
}

#[test]
fn array_given_an_object_is_refused() {
    assert_eq!(
        vn(json!({"listeners": {}})),
        "spec.listeners: an object is not an array"
    );
}

#[test]
fn union_with_two_members_names_both() {
    let m = vn(json!({"serviceDiscovery": {"dns": {"hostname": "h"},
        "awsCloudMap": {"namespaceName": "n", "serviceName": "s"}}}));
    assert_eq!(
        m,
        "spec.serviceDiscovery: exactly one of awsCloudMap, dns must be set, got awsCloudMap, dns"
    );
}

#[test]
fn union_with_no_member_is_refused() {
    let m = vn(json!({"serviceDiscovery": {}}));
    assert_eq!(
        m,
        "spec.serviceDiscovery: exactly one of awsCloudMap, dns must be set, got none"
    );
}

#[test]
fn empty_resource_name_is_refused() {
    let m = message(validate_body("CreateMesh", &json!({"meshName": ""})));
    assert_eq!(m, "meshName: length 0 is below the minimum 1");
}

#[test]
fn long_resource_name_is_refused() {
    let m = message(validate_body(
        "CreateMesh",
        &json!({"meshName": "a".repeat(256)}),
    ));
    assert_eq!(m, "meshName: length 256 is above the maximum 255");
}

#[test]
fn string_length_counts_characters_not_bytes() {
    validate_body("CreateMesh", &json!({"meshName": "é".repeat(255)})).unwrap();
}

#[test]
fn cloud_map_attribute_key_must_match_the_pattern() {
    let m = vn(
        json!({"serviceDiscovery": {"awsCloudMap": {"namespaceName": "n",
        "serviceName": "s", "attributes": [{"key": "a b", "value": "v"}]}}}),
    );
    assert_eq!(
        m,
        "spec.serviceDiscovery.awsCloudMap.attributes[0].key: \"a b\" does not match the pattern ^[a-zA-Z0-9!-~]+$"
    );
}

#[test]
fn cloud_map_attribute_value_pattern_allows_inner_spaces() {
    vn_ok(
        json!({"serviceDiscovery": {"awsCloudMap": {"namespaceName": "n",
        "serviceName": "s", "attributes": [{"key": "k", "value": "a b"}]}}}),
    );
    let m = vn(
        json!({"serviceDiscovery": {"awsCloudMap": {"namespaceName": "n",
        "serviceName": "s", "attributes": [{"key": "k", "value": " a"}]}}}),
    );
    assert!(
        m.contains("attributes[0].value: \" a\" does not match the pattern"),
        "{m}"
    );
}

fn vn_ok(spec: Value) {
    validate_body(
        "CreateVirtualNode",
        &json!({"virtualNodeName": "vn", "spec": spec}),
    )
    .unwrap();
}

#[test]
fn too_many_weighted_targets_is_refused() {
    let targets: Vec<Value> = (0..11)
        .map(|i| json!({"virtualNode": format!("n{i}"), "weight": 1}))
        .collect();
    let m = message(validate_body(
        "CreateRoute",
        &json!({"routeName": "r", "spec": {"httpRoute": {"match": {"prefix": "/"},
            "action": {"weightedTargets": targets}}}}),
    ));
    assert_eq!(
        m,
        "spec.httpRoute.action.weightedTargets: has 11 items, above the maximum 10"
    );
}

#[test]
fn empty_weighted_targets_is_refused() {
    let m = message(validate_body(
        "CreateRoute",
        &json!({"routeName": "r", "spec": {"tcpRoute": {"action": {"weightedTargets": []}}}}),
    ));
    assert_eq!(
        m,
        "spec.tcpRoute.action.weightedTargets: has 0 items, below the minimum 1"
    );
}

#[test]
fn weight_above_100_is_refused() {
    let m = message(validate_body(
        "CreateRoute",
        &json!({"routeName": "r", "spec": {"tcpRoute": {"action": {"weightedTargets": [
            {"virtualNode": "a", "weight": 101}]}}}}),
    ));
    assert_eq!(
        m,
        "spec.tcpRoute.action.weightedTargets[0].weight: 101 is above the maximum 100"
    );
}

#[test]
fn null_list_item_is_refused() {
    let m = vn(json!({"listeners": [null]}));
    assert_eq!(m, "spec.listeners[0]: must not be null");
}

#[test]
fn duration_unit_must_be_s_or_ms() {
    let mut l = listener();
    l["timeout"] = json!({"http": {"idle": {"value": 1, "unit": "h"}}});
    assert_eq!(
        vn(json!({"listeners": [l]})),
        "spec.listeners[0].timeout.http.idle.unit: \"h\" is not one of s, ms"
    );
}

#[test]
fn negative_duration_is_refused() {
    let mut l = listener();
    l["timeout"] = json!({"tcp": {"idle": {"value": -1, "unit": "s"}}});
    assert_eq!(
        vn(json!({"listeners": [l]})),
        "spec.listeners[0].timeout.tcp.idle.value: -1 is below the minimum 0"
    );
}

#[test]
fn acm_trust_with_four_authorities_is_refused() {
    let m = vn(
        json!({"backendDefaults": {"clientPolicy": {"tls": {"validation": {"trust":
        {"acm": {"certificateAuthorityArns": ["a", "b", "c", "d"]}}}}}}}),
    );
    assert_eq!(
        m,
        "spec.backendDefaults.clientPolicy.tls.validation.trust.acm.certificateAuthorityArns: has 4 items, above the maximum 3"
    );
}

#[test]
fn listener_validation_trust_refuses_acm() {
    let mut l = listener();
    l["tls"] = json!({"mode": "STRICT", "certificate": {"file": {"certificateChain": "/c", "privateKey": "/k"}},
        "validation": {"trust": {"acm": {"certificateAuthorityArns": ["a"]}}}});
    assert_eq!(
        vn(json!({"listeners": [l]})),
        "spec.listeners[0].tls.validation.trust.acm: unknown field"
    );
}

#[test]
fn tls_mode_must_be_known() {
    let mut l = listener();
    l["tls"] = json!({"mode": "strict", "certificate": {"sds": {"secretName": "s"}}});
    assert!(vn(json!({"listeners": [l]}))
        .contains("tls.mode: \"strict\" is not one of STRICT, PERMISSIVE, DISABLED"));
}

#[test]
fn tags_are_checked_too() {
    let m = message(validate_body(
        "CreateMesh",
        &json!({"meshName": "m", "tags": [{"key": "", "value": "v"}]}),
    ));
    assert_eq!(m, "tags[0].key: length 0 is below the minimum 1");
}

#[test]
fn unknown_operation_is_not_a_bad_request() {
    assert!(matches!(
        validate_body("CreateUnicorn", &json!({})),
        Err(ApiError::UnknownOperation(_))
    ));
}

#[test]
fn limit_param_must_be_an_integer_in_range() {
    assert_eq!(
        message(validate_param("ListVirtualNodes", "limit", "0")),
        "limit: 0 is below the minimum 1"
    );
    assert_eq!(
        message(validate_param("ListVirtualNodes", "limit", "101")),
        "limit: 101 is above the maximum 100"
    );
    assert_eq!(
        message(validate_param("ListVirtualNodes", "limit", "ten")),
        "limit: \"ten\" is not an integer"
    );
    validate_param("ListVirtualNodes", "limit", "100").unwrap();
}

#[test]
fn mesh_owner_param_must_have_12_characters() {
    assert_eq!(
        message(validate_param("ListVirtualNodes", "meshOwner", "123")),
        "meshOwner: length 3 is below the minimum 12"
    );
    validate_param("ListVirtualNodes", "meshOwner", "123456789012").unwrap();
}

#[test]
fn name_params_are_1_to_255_characters() {
    assert_eq!(
        message(validate_param("DescribeVirtualNode", "virtualNodeName", "")),
        "virtualNodeName: length 0 is below the minimum 1"
    );
    validate_param("DescribeVirtualNode", "virtualNodeName", "vn").unwrap();
}

#[test]
fn body_members_are_not_params() {
    assert!(
        message(validate_param("CreateVirtualNode", "virtualNodeName", "x"))
            .contains("unknown parameter")
    );
}

#[test]
fn every_model_pattern_compiles() {
    for shape in service_model().shapes.values() {
        if let Shape::String {
            pattern: Some(p), ..
        } = shape
        {
            compiled_pattern(p).unwrap();
        }
    }
}
