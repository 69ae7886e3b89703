//! gRPC through `appliance gateway`: a grpc listener, gateway routes by service name, router
//! routes by service, method and metadata, HTTP/2 end to end, and proxy failures answered in
//! gRPC's own terms (trailers-only, `grpc-status`).

mod common;

use std::time::Duration;

use common::{spawn_upstreams, Api, Behaviour, Control, Proxy};

fn ok(api: &Api, path: &str, body: &str) {
    let (s, _, b) = api.call("PUT", path, Some(body));
    assert_eq!(s, 200, "{path}: {b}");
}

#[test]
fn grpc_requests_route_by_service_method_and_metadata() {
    let c = Control::start();
    let api = Api::new(&c);
    ok(&api, "/v20190125/meshes", r#"{"meshName":"m"}"#);
    for vn in ["white", "blue"] {
        ok(
            &api,
            "/v20190125/meshes/m/virtualNodes",
            &format!(
                r#"{{"virtualNodeName":"{vn}","spec":{{"listeners":[{{"portMapping":{{"port":50051,"protocol":"grpc"}}}}]}}}}"#
            ),
        );
    }
    ok(
        &api,
        "/v20190125/meshes/m/virtualRouters",
        r#"{"virtualRouterName":"vr","spec":{"listeners":[{"portMapping":{"port":50051,"protocol":"grpc"}}]}}"#,
    );
    ok(
        &api,
        "/v20190125/meshes/m/virtualRouter/vr/routes",
        r#"{"routeName":"gold","spec":{"priority":0,"grpcRoute":{"match":{"serviceName":"color.Teller","methodName":"Tell","metadata":[{"name":"x-tier","match":{"exact":"gold"}}]},"action":{"weightedTargets":[{"virtualNode":"blue","weight":1}]}}}}"#,
    );
    ok(
        &api,
        "/v20190125/meshes/m/virtualRouter/vr/routes",
        r#"{"routeName":"rest","spec":{"priority":1,"grpcRoute":{"match":{"serviceName":"color.Teller"},"action":{"weightedTargets":[{"virtualNode":"white","weight":1}]}}}}"#,
    );
    ok(
        &api,
        "/v20190125/meshes/m/virtualServices",
        r#"{"virtualServiceName":"teller.local","spec":{"provider":{"virtualRouter":{"virtualRouterName":"vr"}}}}"#,
    );
    ok(
        &api,
        "/v20190125/meshes/m/virtualGateways",
        r#"{"virtualGatewayName":"gw","spec":{"listeners":[{"portMapping":{"port":8443,"protocol":"grpc"}}]}}"#,
    );
    ok(
        &api,
        "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
        r#"{"gatewayRouteName":"teller","spec":{"grpcRoute":{"match":{"serviceName":"color.Teller"},"action":{"target":{"virtualService":{"virtualServiceName":"teller.local"}}}}}}"#,
    );

    let ups = spawn_upstreams(&[("white", Behaviour::Color), ("blue", Behaviour::Color)]);
    let out = c.ctl(&[
        "compile",
        "--identity",
        "mesh/m/virtualGateway/gw",
        "--endpoint",
        &format!("white={}", ups[0]),
        "--endpoint",
        &format!("blue={}", ups[1]),
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
        &["gateway"],
    );

    let h2 = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let call = |path: &str, tier: Option<&str>| {
        let mut req = h2
            .post(gw.url("gateway", path))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(vec![0u8, 0, 0, 0, 0]);
        if let Some(t) = tier {
            req = req.header("x-tier", t);
        }
        req.send().unwrap()
    };
    let r = call("/color.Teller/Tell", Some("gold"));
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        r.headers()["x-seen-path"],
        "/color.Teller/Tell",
        "a gRPC path is never rewritten"
    );
    assert_eq!(r.text().unwrap(), "blue");
    assert_eq!(
        call("/color.Teller/Tell", Some("silver")).text().unwrap(),
        "white"
    );
    assert_eq!(call("/color.Teller/Other", None).text().unwrap(), "white");
    let unknown = call("/other.Service/Tell", None);
    assert_eq!(
        unknown.status(),
        200,
        "gRPC failures are trailers-only 200s"
    );
    assert_eq!(
        unknown.headers()["grpc-status"],
        "12",
        "UNIMPLEMENTED for no route"
    );
    assert!(unknown.headers()["grpc-message"]
        .to_str()
        .unwrap()
        .contains("no%20route"));
}
