use serde_json::json;

use super::*;

fn n(s: &str) -> ResourceName {
    ResourceName::parse("t", s).unwrap()
}

const D: &str = "default.svc.cluster.local";

/// The walkthrough mesh after `mesh.sh up`, as the store holds it.
pub(crate) fn walkthrough() -> Snapshot {
    let m = n("ColorApp");
    let mut items = Vec::new();
    let mut add =
        |kind: ResourceKind, parent: Option<&str>, name: &str, spec: serde_json::Value| {
            let id = match parent {
                Some(p) => ResourceId::nested(kind, m.clone(), n(p), n(name)),
                None => ResourceId::top(kind, m.clone(), n(name)),
            };
            items.push((id, Spec::parse(kind, Some(&spec)).unwrap()));
        };
    for color in ["white", "blue", "black", "red"] {
        add(
            ResourceKind::VirtualNode,
            None,
            &format!("colorteller-{color}-vn"),
            json!({
                "listeners": [{"portMapping": {"port": 9080, "protocol": "http"},
                    "healthCheck": {"healthyThreshold": 2, "intervalMillis": 5000, "path": "/ping", "protocol": "http", "timeoutMillis": 2000, "unhealthyThreshold": 2}}],
                "serviceDiscovery": {"dns": {"hostname": format!("colorteller-{color}.{D}")}}
            }),
        );
    }
    for (i, (a, b)) in [(1, ("white", "blue")), (2, ("black", "red"))] {
        add(
            ResourceKind::VirtualRouter,
            None,
            &format!("colorteller-vr-{i}"),
            json!({"listeners": [{"portMapping": {"port": 9080, "protocol": "http"}}]}),
        );
        add(
            ResourceKind::Route,
            Some(&format!("colorteller-vr-{i}")),
            &format!("colorteller-route-{i}"),
            json!({"httpRoute": {
            "match": {"prefix": "/tell"},
            "action": {"weightedTargets": [{"virtualNode": format!("colorteller-{a}-vn"), "weight": 1}, {"virtualNode": format!("colorteller-{b}-vn"), "weight": 1}]}}}),
        );
        add(
            ResourceKind::VirtualService,
            None,
            &format!("colorteller-{i}.{D}"),
            json!({"provider": {"virtualRouter": {"virtualRouterName": format!("colorteller-vr-{i}")}}}),
        );
    }
    add(
        ResourceKind::VirtualGateway,
        None,
        "colorgateway-vg",
        json!({"listeners": [{"portMapping": {"port": 9080, "protocol": "http"}}]}),
    );
    for i in 1..=2 {
        add(
            ResourceKind::GatewayRoute,
            Some("colorgateway-vg"),
            &format!("colorgateway-route-{i}"),
            json!({"httpRoute": {
            "match": {"prefix": format!("/color{i}")},
            "action": {"target": {"virtualService": {"virtualServiceName": format!("colorteller-{i}.{D}")}}}}}),
        );
    }
    Snapshot::new(&m, items)
}

fn gateway() -> Identity {
    Identity::parse("mesh/ColorApp/virtualGateway/colorgateway-vg").unwrap()
}

#[test]
fn gateway_routes_resolve_through_services_and_routers_to_weighted_clusters() {
    let cfg = compile(&walkthrough(), &gateway(), &Endpoints::new(), 7).unwrap();
    assert_eq!(cfg.version, 7);
    assert_eq!(cfg.listeners.len(), 1);
    let ListenerRole::Gateway { routes } = &cfg.listeners[0].role else {
        panic!("gateway listener")
    };
    let services: Vec<&str> = routes.iter().map(|r| r.service.as_str()).collect();
    assert_eq!(
        services,
        [format!("colorteller-1.{D}"), format!("colorteller-2.{D}")]
    );
    let color1 = &cfg.services[&format!("colorteller-1.{D}")].routes;
    assert_eq!(color1.len(), 1);
    let targets: Vec<(&str, u32)> = color1[0]
        .targets
        .iter()
        .map(|t| (t.cluster.as_str(), t.weight))
        .collect();
    assert_eq!(
        targets,
        [
            ("cds_egress_ColorApp_colorteller-white-vn_http_9080", 1),
            ("cds_egress_ColorApp_colorteller-blue-vn_http_9080", 1)
        ]
    );
    let white = &cfg.clusters["cds_egress_ColorApp_colorteller-white-vn_http_9080"];
    assert_eq!(white.endpoints, [format!("colorteller-white.{D}:9080")]);
    assert!(white.health_check.is_some());
    assert_eq!(color1[0].retry, RetryConfig::app_mesh_default());
    assert_eq!(
        color1[0].per_request_timeout_ms,
        DEFAULT_PER_REQUEST_TIMEOUT_MS
    );
}

#[test]
fn registry_endpoints_replace_dns_names() {
    let mut eps = Endpoints::new();
    eps.insert(
        "colorteller-red-vn".into(),
        vec!["127.0.0.1:40001".into(), "127.0.0.1:40002".into()],
    );
    let cfg = compile(&walkthrough(), &gateway(), &eps, 1).unwrap();
    assert_eq!(
        cfg.clusters["cds_egress_ColorApp_colorteller-red-vn_http_9080"].endpoints,
        ["127.0.0.1:40001", "127.0.0.1:40002"]
    );
}

#[test]
fn compile_is_deterministic() {
    let a = compile(&walkthrough(), &gateway(), &Endpoints::new(), 1).unwrap();
    let b = compile(&walkthrough(), &gateway(), &Endpoints::new(), 1).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    assert_eq!(
        ProxyConfig::from_json(&serde_json::to_string(&a).unwrap()).unwrap(),
        a
    );
}

#[test]
fn a_node_gets_inbound_listeners_and_only_its_backends() {
    let mut snap = walkthrough();
    let mut spec = snap.nodes["colorteller-white-vn"].clone();
    spec.backends = Some(vec![crate::model::spec::Backend::VirtualService(
        crate::model::spec::VirtualServiceBackend {
            client_policy: None,
            virtual_service_name: format!("colorteller-2.{D}"),
        },
    )]);
    snap.nodes.insert("colorteller-white-vn".into(), spec);
    let id = Identity::parse("mesh/ColorApp/virtualNode/colorteller-white-vn").unwrap();
    let cfg = compile(&snap, &id, &Endpoints::new(), 1).unwrap();
    assert_eq!(cfg.listeners.len(), 1);
    assert!(matches!(
        cfg.listeners[0].role,
        ListenerRole::Inbound {
            health_check: Some(_)
        }
    ));
    assert_eq!(
        cfg.services.keys().collect::<Vec<_>>(),
        [&format!("colorteller-2.{D}")]
    );
    assert_eq!(cfg.clusters.len(), 2, "black and red");
}

#[test]
fn an_unknown_identity_is_an_error_naming_it() {
    let id = Identity::parse("mesh/ColorApp/virtualGateway/nope").unwrap();
    assert_eq!(
        compile(&walkthrough(), &id, &Endpoints::new(), 1)
            .unwrap_err()
            .to_string(),
        "virtual gateway nope does not exist in the mesh"
    );
    let other = Identity::parse("mesh/Other/virtualGateway/colorgateway-vg").unwrap();
    assert!(compile(&walkthrough(), &other, &Endpoints::new(), 1).is_err());
}

#[test]
fn explicit_priority_and_longer_prefixes_come_first() {
    assert!(
        order_key(Some(0), Some("/"), false, false)
            < order_key(None, Some("/long/prefix"), false, false)
    );
    assert!(
        order_key(None, Some("/color1/x"), false, false)
            < order_key(None, Some("/color1"), false, false)
    );
    assert!(order_key(None, None, true, false) < order_key(None, Some("/a"), false, false));
}
