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
    let ListenerRole::Gateway { routes, .. } = &cfg.listeners[0].role else {
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
        vec![
            Registered::at("127.0.0.1:40001"),
            Registered::at("127.0.0.1:40002"),
        ],
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

// === TLS ===

const CA_ARN: &str = "arn:aws:acm-pca:us-west-2:000000000000:certificate-authority/x";

/// The walkthrough's `colorgateway-vg-backendDefaults.json` stage: STRICT listener on an ACM
/// certificate, and a client policy trusting the CA for every backend (enforce left unset).
fn with_gateway_tls(snap: &mut Snapshot, client_policy: serde_json::Value) {
    let spec = Spec::parse(
        ResourceKind::VirtualGateway,
        Some(&json!({
            "listeners": [{"portMapping": {"port": 9080, "protocol": "http"},
                "tls": {"mode": "STRICT", "certificate": {"acm": {"certificateArn": "arn:aws:acm:us-west-2:000000000000:certificate/c"}}}}],
            "backendDefaults": {"clientPolicy": client_policy}
        })),
    )
    .unwrap();
    let Spec::VirtualGateway(vg) = spec else {
        panic!("a gateway spec")
    };
    snap.gateways.insert("colorgateway-vg".into(), vg);
}

fn trust_ca() -> ValidationConfig {
    ValidationConfig {
        trust: TrustSource::Own,
        subject_alternative_names: Vec::new(),
    }
}

#[test]
fn acm_listener_certificate_and_ca_trust_become_the_proxys_own_credentials() {
    let mut snap = walkthrough();
    with_gateway_tls(
        &mut snap,
        json!({"tls": {"validation": {"trust": {"acm": {"certificateAuthorityArns": [CA_ARN]}}}}}),
    );
    let cfg = compile(&snap, &gateway(), &Endpoints::new(), 1).unwrap();
    assert_eq!(
        cfg.listeners[0].tls,
        Some(ListenerTlsConfig {
            mode: crate::model::spec::ListenerTlsMode::Strict,
            certificate: CertificateSource::Own,
            validation: None,
        })
    );
    // App Mesh's defaults: enforce true, all ports. Every cluster originates TLS.
    assert_eq!(cfg.clusters.len(), 4);
    for (name, c) in &cfg.clusters {
        let Some(ClientTlsConfig {
            certificate: None,
            server:
                ServerCheck::Verify {
                    validation,
                    expected: PeerName::Dns(_),
                },
        }) = &c.tls
        else {
            panic!("{name}: {:?}", c.tls)
        };
        assert_eq!(validation, &trust_ca(), "{name}");
    }
    let text = serde_json::to_string(&cfg).unwrap();
    assert_eq!(ProxyConfig::from_json(&text).unwrap(), cfg);
}

#[test]
fn a_policy_that_is_not_enforced_or_names_other_ports_leaves_plain_text() {
    for (policy, tls) in [
        (json!({"enforce": false}), false),
        (json!({"ports": [8443]}), false),
        (json!({"ports": [8443, 9080]}), true),
        (json!({"ports": []}), true),
    ] {
        let mut tls_json = policy.clone();
        tls_json["validation"] = json!({"trust": {"file": {"certificateChain": "/etc/ca.pem"}}});
        let mut snap = walkthrough();
        with_gateway_tls(&mut snap, json!({ "tls": tls_json }));
        let cfg = compile(&snap, &gateway(), &Endpoints::new(), 1).unwrap();
        let c = &cfg.clusters["cds_egress_ColorApp_colorteller-white-vn_http_9080"];
        assert_eq!(c.tls.is_some(), tls, "{policy}");
        if let Some(ClientTlsConfig {
            server: ServerCheck::Verify { validation, .. },
            ..
        }) = &c.tls
        {
            assert_eq!(
                validation.trust,
                TrustSource::File {
                    path: "/etc/ca.pem".into()
                }
            );
        }
    }
}

#[test]
fn a_backends_own_policy_replaces_the_defaults_and_keeps_its_cluster_apart() {
    let mut snap = walkthrough();
    let node = json!({
        "listeners": [{"portMapping": {"port": 9080, "protocol": "http"},
            "tls": {"mode": "PERMISSIVE",
                "certificate": {"file": {"certificateChain": "/c.pem", "privateKey": "/k.pem"}},
                "validation": {"trust": {"sds": {"secretName": "ca"}},
                    "subjectAlternativeNames": {"match": {"exact": ["spiffe://b", "spiffe://a"]}}}}}],
        "serviceDiscovery": {"dns": {"hostname": "white"}},
        "backendDefaults": {"clientPolicy": {"tls": {
            "certificate": {"sds": {"secretName": "own"}},
            "validation": {"trust": {"acm": {"certificateAuthorityArns": [CA_ARN]}}}}}},
        "backends": [
            {"virtualService": {"virtualServiceName": format!("colorteller-1.{D}")}},
            {"virtualService": {"virtualServiceName": format!("colorteller-2.{D}"),
                "clientPolicy": {"tls": {"enforce": false, "validation": {"trust": {"sds": {"secretName": "ca"}}}}}}}
        ]
    });
    // Both services reach the white node: one with mTLS, one in plain text.
    snap.routes.insert(
        "colorteller-vr-2".into(),
        vec![(
            "colorteller-route-2".into(),
            match Spec::parse(ResourceKind::Route, Some(&json!({"httpRoute": {"match": {"prefix": "/"},
                "action": {"weightedTargets": [{"virtualNode": "colorteller-white-vn", "weight": 1}]}}})))
            .unwrap()
            {
                Spec::Route(r) => r,
                _ => panic!("a route"),
            },
        )],
    );
    let Spec::VirtualNode(vn) = Spec::parse(ResourceKind::VirtualNode, Some(&node)).unwrap() else {
        panic!("a node spec")
    };
    snap.nodes.insert("colorteller-white-vn".into(), vn);
    let id = Identity::parse("mesh/ColorApp/virtualNode/colorteller-white-vn").unwrap();
    let cfg = compile(&snap, &id, &Endpoints::new(), 1).unwrap();
    let listener = cfg.listeners[0].tls.as_ref().unwrap();
    assert_eq!(
        listener.certificate,
        CertificateSource::File {
            chain: "/c.pem".into(),
            key: "/k.pem".into()
        }
    );
    assert_eq!(
        listener.validation,
        Some(ValidationConfig {
            trust: TrustSource::Own,
            subject_alternative_names: vec!["spiffe://a".into(), "spiffe://b".into()],
        })
    );
    let base = "cds_egress_ColorApp_colorteller-white-vn_http_9080";
    assert_eq!(
        cfg.clusters[base].tls,
        Some(ClientTlsConfig {
            certificate: Some(CertificateSource::Own),
            server: ServerCheck::Verify {
                validation: trust_ca(),
                expected: PeerName::Dns("white".into()),
            },
        })
    );
    // `enforce: false` is no client policy: App Mesh negotiates TLS with the PERMISSIVE
    // listener anyway, and does not validate its file certificate.
    let plain = format!("{base}_tls2");
    assert_eq!(
        cfg.clusters[&plain].tls,
        Some(ClientTlsConfig {
            certificate: None,
            server: ServerCheck::Unverified,
        })
    );
    assert_eq!(
        cfg.services[&format!("colorteller-2.{D}")].routes[0].targets[0].cluster,
        plain
    );
}

#[test]
fn a_config_without_tls_fields_still_loads() {
    let cfg = compile(&walkthrough(), &gateway(), &Endpoints::new(), 1).unwrap();
    let text = serde_json::to_string(&cfg).unwrap();
    assert!(!text.contains("\"tls\""), "no TLS, no field: {text}");
    assert_eq!(ProxyConfig::from_json(&text).unwrap(), cfg);
}

#[test]
fn outlier_detection_and_pools_land_where_app_mesh_applies_them() {
    let mut snap = walkthrough();
    let white = snap.nodes.get_mut("colorteller-white-vn").unwrap();
    let listener = &mut white.listeners.as_mut().unwrap()[0];
    listener.outlier_detection = Some(
        serde_json::from_value(
            json!({"maxServerErrors": 3, "interval": {"value": 2, "unit": "s"},
            "baseEjectionDuration": {"value": 500, "unit": "ms"}, "maxEjectionPercent": 50}),
        )
        .unwrap(),
    );
    listener.connection_pool =
        Some(serde_json::from_value(json!({"http": {"maxConnections": 8}})).unwrap());
    let gw = snap.gateways.get_mut("colorgateway-vg").unwrap();
    gw.listeners[0].connection_pool = Some(
        serde_json::from_value(json!({"http": {"maxConnections": 4, "maxPendingRequests": 2}}))
            .unwrap(),
    );

    // The gateway: white's outlier policy governs traffic to white; the gateway listener's
    // pool limits every cluster its routes reach.
    let cfg = compile(&snap, &gateway(), &Endpoints::new(), 1).unwrap();
    let pool = ConnectionPoolConfig {
        max_in_flight: 4,
        max_pending: 2,
    };
    for (name, c) in &cfg.clusters {
        assert_eq!(c.connection_pool, Some(pool), "{name}");
        let want = (c.node == "colorteller-white-vn").then_some(OutlierConfig {
            max_server_errors: 3,
            interval_ms: 2_000,
            base_ejection_ms: 500,
            max_ejection_percent: 50,
        });
        assert_eq!(c.outlier_detection, want, "{name}");
    }
    assert_eq!(cfg.clusters.len(), 4);

    // White's sidecar: its own pool bounds its requests to the local app; an http pool
    // without maxPendingRequests gets App Mesh's default.
    let id = Identity::parse("mesh/ColorApp/virtualNode/colorteller-white-vn").unwrap();
    let cfg = compile(&snap, &id, &Endpoints::new(), 1).unwrap();
    assert_eq!(
        cfg.listeners[0].connection_pool,
        Some(ConnectionPoolConfig {
            max_in_flight: 8,
            max_pending: DEFAULT_MAX_PENDING_REQUESTS,
        })
    );
    let text = serde_json::to_string(&cfg).unwrap();
    assert_eq!(ProxyConfig::from_json(&text).unwrap(), cfg);
}

/// Mesh `t`: nodes `a`, `b` (tcp 7000), router `vr` (tcp) with one weighted tcp route, a
/// node-provided tcp service, and node `client` whose backends are both services.
fn tcp_mesh() -> Snapshot {
    let m = n("t");
    let mut items = Vec::new();
    let mut add =
        |kind: ResourceKind, parent: Option<&str>, name: &str, spec: serde_json::Value| {
            let id = match parent {
                Some(p) => ResourceId::nested(kind, m.clone(), n(p), n(name)),
                None => ResourceId::top(kind, m.clone(), n(name)),
            };
            items.push((id, Spec::parse(kind, Some(&spec)).unwrap()));
        };
    for node in ["a", "b"] {
        add(
            ResourceKind::VirtualNode,
            None,
            node,
            json!({"listeners": [{"portMapping": {"port": 7000, "protocol": "tcp"}}],
                "serviceDiscovery": {"dns": {"hostname": format!("{node}.local")}}}),
        );
    }
    add(
        ResourceKind::VirtualRouter,
        None,
        "vr",
        json!({"listeners": [{"portMapping": {"port": 7000, "protocol": "tcp"}}]}),
    );
    add(
        ResourceKind::Route,
        Some("vr"),
        "r",
        json!({"tcpRoute": {"action": {"weightedTargets": [{"virtualNode": "a", "weight": 3}, {"virtualNode": "b", "weight": 1}]},
            "timeout": {"idle": {"unit": "s", "value": 2}}}}),
    );
    add(
        ResourceKind::VirtualService,
        None,
        "routed.local",
        json!({"provider": {"virtualRouter": {"virtualRouterName": "vr"}}}),
    );
    add(
        ResourceKind::VirtualService,
        None,
        "direct.local",
        json!({"provider": {"virtualNode": {"virtualNodeName": "b"}}}),
    );
    add(
        ResourceKind::VirtualNode,
        None,
        "client",
        json!({"backends": [{"virtualService": {"virtualServiceName": "routed.local"}},
            {"virtualService": {"virtualServiceName": "direct.local"}}]}),
    );
    Snapshot::new(&m, items)
}

#[test]
fn a_sidecar_gets_tcp_routes_for_its_tcp_backends_and_no_http_routes_for_them() {
    let id = Identity::parse("mesh/t/virtualNode/client").unwrap();
    let cfg = compile(&tcp_mesh(), &id, &Endpoints::new(), 1).unwrap();
    let routed = &cfg.tcp_routes["routed.local"];
    assert_eq!(routed.len(), 1);
    assert_eq!(routed[0].name, "vr/r");
    assert_eq!(routed[0].idle_timeout_ms, 2_000);
    assert_eq!(routed[0].connect_retries, DEFAULT_MAX_RETRIES);
    let weights: Vec<(&str, u32)> = routed[0]
        .targets
        .iter()
        .map(|t| (t.cluster.as_str(), t.weight))
        .collect();
    assert_eq!(
        weights,
        [
            ("cds_egress_t_a_tcp_7000", 3),
            ("cds_egress_t_b_tcp_7000", 1)
        ]
    );
    assert!(
        cfg.services["routed.local"].routes.is_empty(),
        "no HTTP route"
    );
    let direct = &cfg.tcp_routes["direct.local"];
    assert_eq!(direct[0].idle_timeout_ms, DEFAULT_IDLE_TIMEOUT_MS);
    assert_eq!(
        cfg.clusters["cds_egress_t_b_tcp_7000"].endpoints,
        ["b.local:7000"]
    );
}

#[test]
fn a_tcp_route_naming_a_missing_cluster_is_rejected() {
    let id = Identity::parse("mesh/t/virtualNode/client").unwrap();
    let mut cfg = compile(&tcp_mesh(), &id, &Endpoints::new(), 1).unwrap();
    cfg.clusters.remove("cds_egress_t_a_tcp_7000");
    assert!(matches!(
        cfg.check(),
        Err(ConfigError::UnknownCluster { .. })
    ));
}

#[test]
fn server_and_gateway_error_retry_resets_and_connect_failures_as_envoys_5xx_does() {
    use crate::model::spec::TcpRetryEvent;
    let d = crate::model::spec::Duration::seconds(1);
    for e in [HttpRetryEvent::ServerError, HttpRetryEvent::GatewayError] {
        let r = retry_config(3, &d, Some(&[e]), None, None);
        assert!(r.reset, "{e:?}");
        assert!(!r.refused_stream && !r.connection_errors, "{e:?}");
    }
    let stream = retry_config(3, &d, Some(&[HttpRetryEvent::StreamError]), None, None);
    assert!(stream.refused_stream);
    assert!(!stream.reset && !stream.connection_errors);
    assert!(stream.statuses.is_empty());
    let tcp = retry_config(3, &d, None, Some(&[TcpRetryEvent::ConnectionError]), None);
    assert!(tcp.connection_errors && !tcp.reset && !tcp.refused_stream);
}

#[test]
fn max_retries_beyond_u32_is_capped_not_wrapped() {
    let d = crate::model::spec::Duration::seconds(1);
    let r = retry_config(
        u64::MAX,
        &d,
        Some(&[HttpRetryEvent::ServerError]),
        None,
        None,
    );
    assert_eq!(r.max_retries, u32::MAX);
}
