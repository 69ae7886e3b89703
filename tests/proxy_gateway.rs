//! `appliance gateway` and `appliance sidecar` running configs compiled by the control plane
//! (`appliance ctl compile`), against real upstream servers on 127.0.0.1.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{ok, spawn_upstreams, walkthrough, Api, Behaviour, Control, Proxy, D};

/// Compiles `identity`'s config with the control plane, endpoints pointing at the upstreams.
fn compile(
    c: &Control,
    identity: &str,
    endpoints: &[(&str, std::net::SocketAddr)],
    dir: &std::path::Path,
) -> String {
    let mut args = vec!["compile".to_owned(), "--identity".into(), identity.into()];
    for (node, addr) in endpoints {
        args.push("--endpoint".into());
        args.push(format!("{node}={addr}"));
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = c.ctl(&a);
    assert_eq!(out.code, 0, "compile: {}", out.stderr);
    let path = dir.join(format!("{}.json", identity.replace('/', "_")));
    std::fs::write(&path, &out.stdout).unwrap();
    path.to_string_lossy().into_owned()
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

struct Setup {
    _c: Control,
    _tmp: tempfile::TempDir,
    gateway: Proxy,
}

fn setup(route1: &str, behaviours: [Behaviour; 4]) -> Setup {
    let c = Control::start();
    let api = Api::new(&c);
    walkthrough(&api, route1);
    let ups = spawn_upstreams(&[
        ("white", behaviours[0]),
        ("blue", behaviours[1]),
        ("black", behaviours[2]),
        ("red", behaviours[3]),
    ]);
    let eps: Vec<(&str, std::net::SocketAddr)> = [
        "colorteller-white-vn",
        "colorteller-blue-vn",
        "colorteller-black-vn",
        "colorteller-red-vn",
    ]
    .into_iter()
    .zip(ups)
    .collect();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = compile(
        &c,
        "mesh/ColorApp/virtualGateway/colorgateway-vg",
        &eps,
        tmp.path(),
    );
    let gateway = Proxy::start(
        &[
            "gateway",
            "--config",
            &cfg,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &["gateway", "admin"],
    );
    Setup {
        _c: c,
        _tmp: tmp,
        gateway,
    }
}

#[test]
fn gateway_routes_by_prefix_rewrites_and_splits_by_weight() {
    let s = setup("", [Behaviour::Color; 4]);
    let http = client();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..2000 {
        let r = http
            .get(s.gateway.url("gateway", "/color1/tell"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["x-seen-path"],
            "/tell",
            "the matched prefix /color1 becomes /"
        );
        assert_eq!(
            r.headers()["x-seen-host"],
            format!("colorteller-1.{D}"),
            "the host becomes the virtual service"
        );
        *counts.entry(r.text().unwrap()).or_default() += 1;
    }
    let white = counts.get("white").copied().unwrap_or(0) as f64 / 2000.0;
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(
        (0.45..=0.55).contains(&white),
        "white got {:.1} % ({counts:?})",
        white * 100.0
    );
    let body = http
        .get(s.gateway.url("gateway", "/color2/tell"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(body == "black" || body == "red", "{body}");
    // HTTP/2 with prior knowledge, on the same port.
    let h2 = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .get(s.gateway.url("gateway", "/color2/tell"))
        .send()
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.version()),
        (200, reqwest::Version::HTTP_2)
    );
}

#[test]
fn no_route_is_a_404_with_a_reason_and_the_proxy_named() {
    let s = setup("", [Behaviour::Color; 4]);
    let http = client();
    let r = http
        .get(s.gateway.url("gateway", "/nowhere"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()["x-appliance-proxy"],
        "mesh/ColorApp/virtualGateway/colorgateway-vg"
    );
    assert_eq!(r.text().unwrap(), "no route matches GET /nowhere\n");
    // /color1 matches the gateway route, but router 1 only has /tell.
    let r = http
        .get(s.gateway.url("gateway", "/color1/ask"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let stats = http
        .get(s.gateway.url("admin", "/stats"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        stats.contains("appliance_local_errors_total{reason=\"no_route\"} 2"),
        "{stats}"
    );
    let config: serde_json::Value = http
        .get(s.gateway.url("admin", "/config"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        config["identity"],
        "mesh/ColorApp/virtualGateway/colorgateway-vg"
    );
    assert_eq!(
        http.get(s.gateway.url("admin", "/ready"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "LIVE\n"
    );
}

#[test]
fn header_query_and_method_matches_pick_their_targets() {
    let route = r#"{"httpRoute":{"match":{"prefix":"/tell","method":"POST","headers":[{"name":"x-canary","match":{"exact":"yes"}}],"queryParameters":[{"name":"v","match":{"exact":"2"}}]},"action":{"weightedTargets":[{"virtualNode":"colorteller-blue-vn","weight":1}]}}}"#;
    let s = setup(route, [Behaviour::Color; 4]);
    let http = client();
    let hit = http
        .post(s.gateway.url("gateway", "/color1/tell?v=2"))
        .header("x-canary", "yes")
        .send()
        .unwrap();
    assert_eq!(hit.text().unwrap(), "blue");
    for (method, query, header) in [
        ("GET", "?v=2", "yes"),
        ("POST", "?v=1", "yes"),
        ("POST", "?v=2", "no"),
    ] {
        let r = http
            .request(
                method.parse().unwrap(),
                s.gateway.url("gateway", &format!("/color1/tell{query}")),
            )
            .header("x-canary", header)
            .send()
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {query} x-canary: {header}");
    }
}

#[test]
fn a_503_is_retried_by_default_and_a_slow_upstream_times_out_without_hanging() {
    let timeout = r#"{"httpRoute":{"match":{"prefix":"/tell"},"timeout":{"perRequest":{"value":500,"unit":"ms"}},"action":{"weightedTargets":[{"virtualNode":"colorteller-white-vn","weight":1}]}}}"#;
    let s = setup(
        timeout,
        [
            Behaviour::Slow(Duration::from_secs(2)),
            Behaviour::Color,
            Behaviour::Flaky,
            Behaviour::Flaky,
        ],
    );
    let http = client();
    let start = Instant::now();
    let r = http
        .get(s.gateway.url("gateway", "/color1/tell"))
        .send()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(r.status(), 504);
    // Bounded by the 500 ms timeout, with slack for a loaded machine.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(r.text().unwrap(), "upstream request timeout\n");
    s.gateway
        .wait_for_log(&["answered an outside client", "did not answer within 500 ms"]);
    // Black and red fail every other request with 503; App Mesh's default policy retries twice.
    for _ in 0..50 {
        let r = http
            .get(s.gateway.url("gateway", "/color2/tell"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "a 503 must be retried");
    }
}

#[test]
fn sidecar_forwards_inbound_to_its_app_and_egress_only_to_declared_backends() {
    let c = Control::start();
    let api = Api::new(&c);
    walkthrough(&api, "");
    let ups = spawn_upstreams(&[
        ("white", Behaviour::Color),
        ("black", Behaviour::Color),
        ("red", Behaviour::Color),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = compile(
        &c,
        "mesh/ColorApp/virtualNode/colorteller-white-vn",
        &[
            ("colorteller-black-vn", ups[1]),
            ("colorteller-red-vn", ups[2]),
        ],
        tmp.path(),
    );
    let app = ups[0].to_string();
    let sidecar = Proxy::start(
        &[
            "sidecar",
            "--config",
            &cfg,
            "--app",
            &app,
            "--listen",
            "127.0.0.1:0",
            "--egress-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &["sidecar-inbound", "sidecar-egress", "admin"],
    );
    let http = client();
    assert_eq!(
        http.get(sidecar.url("sidecar-inbound", "/tell"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "white"
    );
    let egress = |host: &str| {
        http.get(sidecar.url("sidecar-egress", "/tell"))
            .header("host", host)
            .send()
            .unwrap()
    };
    let body = egress(&format!("colorteller-2.{D}")).text().unwrap();
    assert!(body == "black" || body == "red", "{body}");
    let r = egress(&format!("colorteller-1.{D}"));
    assert_eq!(r.status(), 403);
    assert!(r
        .text()
        .unwrap()
        .contains("is not a backend of mesh/ColorApp/virtualNode/colorteller-white-vn"));
    // Absolute-form, as an app with http_proxy pointing at the sidecar sends it.
    let proxied = reqwest::blocking::Client::builder()
        .proxy(reqwest::Proxy::http(sidecar.url("sidecar-egress", "")).unwrap())
        .build()
        .unwrap();
    let body = proxied
        .get(format!("http://colorteller-2.{D}/tell"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(body == "black" || body == "red", "{body}");
}

static BLUE_UP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Polls `/color1/tell` until `done(colours seen in a burst)` holds; returns how long it took.
fn wait_for(
    s: &Setup,
    limit: Duration,
    done: impl Fn(&HashMap<String, usize>) -> bool,
) -> Option<Duration> {
    let http = client();
    let start = Instant::now();
    while start.elapsed() < limit {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for _ in 0..20 {
            let r = http
                .get(s.gateway.url("gateway", "/color1/tell"))
                .send()
                .unwrap();
            *seen.entry(r.text().unwrap()).or_default() += 1;
        }
        if done(&seen) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

#[test]
fn an_endpoint_failing_its_health_check_gets_no_traffic_until_it_recovers() {
    let s = setup(
        "",
        [
            Behaviour::Color,
            Behaviour::Health(&BLUE_UP),
            Behaviour::Color,
            Behaviour::Color,
        ],
    );
    assert!(
        wait_for(&s, Duration::from_secs(5), |seen| seen.contains_key("blue")).is_some(),
        "blue serves while healthy"
    );
    BLUE_UP.store(false, std::sync::atomic::Ordering::Relaxed);
    // Interval 5 s, unhealthy after 2 failures: out within ~10 s.
    let out = wait_for(&s, Duration::from_secs(20), |seen| {
        seen.len() == 1 && seen.contains_key("white")
    });
    if out.is_none() {
        let stats = client()
            .get(s.gateway.url("admin", "/stats"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let config = client()
            .get(s.gateway.url("admin", "/config"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        panic!("blue was not ejected within 20 s\n{stats}\n{config}");
    }
    BLUE_UP.store(true, std::sync::atomic::Ordering::Relaxed);
    let back = wait_for(&s, Duration::from_secs(20), |seen| {
        seen.contains_key("blue")
    });
    assert!(back.is_some(), "blue did not come back within 20 s");
    eprintln!(
        "ejected after {:?}, back after {:?}",
        out.unwrap(),
        back.unwrap()
    );
}

#[test]
fn websocket_upgrades_are_spliced_through_the_gateway() {
    use std::io::{Read, Write};
    let s = setup("", [Behaviour::Color; 4]);
    let addr = s.gateway.addrs["gateway"].clone();
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        tcp,
        "GET /color1/tell HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    tcp.write_all(b"frames both ways").unwrap();
    let mut echo = [0u8; 16];
    tcp.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"frames both ways");
}

#[test]
fn access_logs_are_written_in_the_specs_json_format() {
    let c = Control::start();
    let api = Api::new(&c);
    walkthrough(&api, "");
    let tmp = tempfile::tempdir().unwrap();
    let json_log = tmp.path().join("gw.log");
    let spec = format!(
        r#"{{"spec":{{"listeners":[{{"portMapping":{{"port":9080,"protocol":"http"}}}}],"logging":{{"accessLog":{{"file":{{"path":"{}","format":{{"json":[{{"key":"code","value":"%RESPONSE_CODE%"}},{{"key":"path","value":"%REQ(:PATH)%"}},{{"key":"upstream","value":"%UPSTREAM_HOST%"}},{{"key":"flags","value":"%RESPONSE_FLAGS%"}}]}}}}}}}}}}}}"#,
        json_log.display()
    );
    ok(
        &api,
        "PUT",
        "/v20190125/meshes/ColorApp/virtualGateways/colorgateway-vg",
        spec,
    );
    let ups = spawn_upstreams(&[("white", Behaviour::Color), ("blue", Behaviour::Color)]);
    let cfg = compile(
        &c,
        "mesh/ColorApp/virtualGateway/colorgateway-vg",
        &[
            ("colorteller-white-vn", ups[0]),
            ("colorteller-blue-vn", ups[1]),
        ],
        tmp.path(),
    );
    let gw = Proxy::start(
        &[
            "gateway",
            "--config",
            &cfg,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &["gateway"],
    );
    let http = client();
    assert_eq!(
        http.get(gw.url("gateway", "/color1/tell"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(gw.url("gateway", "/missing"))
            .send()
            .unwrap()
            .status(),
        404
    );
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(&json_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lines.len(), 2, "{lines:?}");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["code"], "200");
    // `%REQ(:PATH)%` is the path after the gateway route's rewrite (Envoy rewrites in place;
    // `%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%` would give `/color1/tell`).
    assert_eq!(first["path"], "/tell");
    let up = first["upstream"].as_str().unwrap();
    assert!(up == ups[0].to_string() || up == ups[1].to_string(), "{up}");
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(
        (second["code"].as_str(), second["flags"].as_str()),
        (Some("404"), Some("NR"))
    );
}
