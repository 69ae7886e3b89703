//! Conformance, route targets: `weightedTargets[].port` picks the listener of a node that
//! has several. One real-process test per row of `docs/field-support.md`.

mod common;

use std::time::Duration;

use common::{spawn_upstreams, Api, Behaviour, Control, Proxy};

fn put(api: &Api, path: &str, body: &str) {
    let (s, _, b) = api.call("PUT", path, Some(body));
    assert_eq!(s, 200, "PUT {path} {body}: {b}");
}

#[test]
fn a_weighted_target_port_picks_that_listener_of_a_multi_listener_node() {
    // Two apps on 127.0.0.1; the node's listener ports are theirs, so the endpoint
    // `127.0.0.1` (no port) is each listener's own app.
    let apps = spawn_upstreams(&[("first", Behaviour::Color), ("second", Behaviour::Color)]);
    let (p1, p2) = (apps[0].port(), apps[1].port());
    let c = Control::start();
    let api = Api::new(&c);
    put(&api, "/v20190125/meshes", r#"{"meshName":"m"}"#);
    put(
        &api,
        "/v20190125/meshes/m/virtualNodes",
        &format!(
            r#"{{"virtualNodeName":"app","spec":{{"listeners":[{{"portMapping":{{"port":{p1},"protocol":"http"}}}},{{"portMapping":{{"port":{p2},"protocol":"http"}}}}]}}}}"#
        ),
    );
    put(
        &api,
        "/v20190125/meshes/m/virtualRouters",
        r#"{"virtualRouterName":"vr","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}}"#,
    );
    for (name, prefix, port) in [("to-first", "/first", p1), ("to-second", "/second", p2)] {
        put(
            &api,
            "/v20190125/meshes/m/virtualRouter/vr/routes",
            &format!(
                r#"{{"routeName":"{name}","spec":{{"httpRoute":{{"match":{{"prefix":"{prefix}"}},"action":{{"weightedTargets":[{{"virtualNode":"app","weight":1,"port":{port}}}]}}}}}}}}"#
            ),
        );
    }
    put(
        &api,
        "/v20190125/meshes/m/virtualServices",
        r#"{"virtualServiceName":"app.local","spec":{"provider":{"virtualRouter":{"virtualRouterName":"vr"}}}}"#,
    );
    put(
        &api,
        "/v20190125/meshes/m/virtualGateways",
        r#"{"virtualGatewayName":"gw","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}}"#,
    );
    put(
        &api,
        "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
        r#"{"gatewayRouteName":"all","spec":{"httpRoute":{"match":{"prefix":"/"},"action":{"target":{"virtualService":{"virtualServiceName":"app.local"}},"rewrite":{"prefix":{"defaultPrefix":"DISABLED"}}}}}}"#,
    );
    let out = c.ctl(&[
        "compile",
        "--identity",
        "mesh/m/virtualGateway/gw",
        "--endpoint",
        "app=127.0.0.1",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("gw.json");
    std::fs::write(&cfg, out.stdout).unwrap();
    let gw = Proxy::start(
        &[
            "gateway",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &["gateway", "admin"],
    );
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    for (path, want) in [("/first/x", "first"), ("/second/x", "second")] {
        for _ in 0..5 {
            let r = client
                .get(format!("http://{}{path}", gw.addrs["gateway"]))
                .send()
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            assert_eq!(r.text().unwrap(), want, "{path}");
        }
    }
}

#[test]
fn a_target_node_without_a_listener_costs_only_its_own_route() {
    let app = spawn_upstreams(&[("app", Behaviour::Color)])[0];
    let c = Control::start();
    let api = Api::new(&c);
    put(&api, "/v20190125/meshes", r#"{"meshName":"m"}"#);
    put(
        &api,
        "/v20190125/meshes/m/virtualNodes",
        r#"{"virtualNodeName":"app","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}}"#,
    );
    // The API accepts a node with no listeners, and a route to it.
    put(
        &api,
        "/v20190125/meshes/m/virtualNodes",
        r#"{"virtualNodeName":"ghost","spec":{}}"#,
    );
    put(
        &api,
        "/v20190125/meshes/m/virtualRouters",
        r#"{"virtualRouterName":"vr","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}}"#,
    );
    for (name, prefix, node) in [("ok", "/ok", "app"), ("ghost", "/ghost", "ghost")] {
        put(
            &api,
            "/v20190125/meshes/m/virtualRouter/vr/routes",
            &format!(
                r#"{{"routeName":"{name}","spec":{{"httpRoute":{{"match":{{"prefix":"{prefix}"}},"action":{{"weightedTargets":[{{"virtualNode":"{node}","weight":1}}]}}}}}}}}"#
            ),
        );
    }
    put(
        &api,
        "/v20190125/meshes/m/virtualServices",
        r#"{"virtualServiceName":"app.local","spec":{"provider":{"virtualRouter":{"virtualRouterName":"vr"}}}}"#,
    );
    put(
        &api,
        "/v20190125/meshes/m/virtualGateways",
        r#"{"virtualGatewayName":"gw","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}}"#,
    );
    put(
        &api,
        "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
        r#"{"gatewayRouteName":"all","spec":{"httpRoute":{"match":{"prefix":"/"},"action":{"target":{"virtualService":{"virtualServiceName":"app.local"}},"rewrite":{"prefix":{"defaultPrefix":"DISABLED"}}}}}}"#,
    );
    let out = c.ctl(&[
        "compile",
        "--identity",
        "mesh/m/virtualGateway/gw",
        "--endpoint",
        &format!("app={app}"),
    ]);
    assert_eq!(out.code, 0, "the config still compiles: {}", out.stderr);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("gw.json");
    std::fs::write(&cfg, out.stdout).unwrap();
    let gw = Proxy::start(
        &[
            "gateway",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &["gateway", "admin"],
    );
    let get = |path: &str| {
        let r = reqwest::blocking::get(format!("http://{}{path}", gw.addrs["gateway"])).unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    assert_eq!(get("/ok"), (200, "app".into()));
    let (status, body) = get("/ghost");
    assert_eq!(status, 503, "{body}");
    // An outside client is told little; the gateway's log names why.
    assert_eq!(body, "no healthy upstream\n");
    gw.wait_for_log(&["virtual node ghost has no listener"]);
}

#[test]
fn a_gateway_route_port_match_serves_only_that_gateway_listener() {
    let apps = spawn_upstreams(&[("a", Behaviour::Color), ("b", Behaviour::Color)]);
    let second = common::free_port();
    let c = Control::start();
    let api = Api::new(&c);
    put(&api, "/v20190125/meshes", r#"{"meshName":"m"}"#);
    for n in ["a", "b"] {
        put(
            &api,
            "/v20190125/meshes/m/virtualNodes",
            &format!(
                r#"{{"virtualNodeName":"{n}","spec":{{"listeners":[{{"portMapping":{{"port":8080,"protocol":"http"}}}}]}}}}"#
            ),
        );
        put(
            &api,
            "/v20190125/meshes/m/virtualServices",
            &format!(
                r#"{{"virtualServiceName":"{n}.svc","spec":{{"provider":{{"virtualNode":{{"virtualNodeName":"{n}"}}}}}}}}"#
            ),
        );
    }
    put(
        &api,
        "/v20190125/meshes/m/virtualGateways",
        &format!(
            r#"{{"virtualGatewayName":"gw","spec":{{"listeners":[{{"portMapping":{{"port":8080,"protocol":"http"}}}},{{"portMapping":{{"port":{second},"protocol":"http"}}}}]}}}}"#
        ),
    );
    for (name, port, service) in [("first", 8080, "a.svc"), ("second", second, "b.svc")] {
        put(
            &api,
            "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
            &format!(
                r#"{{"gatewayRouteName":"{name}","spec":{{"httpRoute":{{"match":{{"prefix":"/","port":{port}}},"action":{{"target":{{"virtualService":{{"virtualServiceName":"{service}"}}}}}}}}}}}}"#
            ),
        );
    }
    let out = c.ctl(&[
        "compile",
        "--identity",
        "mesh/m/virtualGateway/gw",
        "--endpoint",
        &format!("a={}", apps[0]),
        "--endpoint",
        &format!("b={}", apps[1]),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("gw.json");
    std::fs::write(&cfg, out.stdout).unwrap();
    // The first listener on the address given; the second on 0.0.0.0:<its port>.
    let gw = Proxy::start(
        &[
            "gateway",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &["gateway", "admin"],
    );
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let get = |addr: &str| {
        let r = client.get(format!("http://{addr}/x")).send().ok()?;
        Some((r.status().as_u16(), r.text().ok()?))
    };
    let second_addr = format!("127.0.0.1:{second}");
    let start = std::time::Instant::now();
    while get(&second_addr).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the second listener never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..3 {
        assert_eq!(get(&gw.addrs["gateway"]), Some((200, "a".into())));
        assert_eq!(get(&second_addr), Some((200, "b".into())));
    }
}
