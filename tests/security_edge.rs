//! The gateway as the mesh's edge: what it does to headers from outside clients, checked
//! with raw requests against the real binary and an upstream that echoes the request head
//! it received.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{Api, Control, Proxy};

/// An upstream that answers every request with 200 and, as its body, the request head it
/// got (lower-cased header names, one per line).
fn echo_head() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let body = String::from_utf8_lossy(&head).to_lowercase();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

/// A gateway whose one route sends everything to the echo upstream.
fn gateway() -> (Control, Proxy, tempfile::TempDir) {
    let c = Control::start();
    mesh(&c);
    let p = gateway_to(&c, echo_head());
    (c, p.0, p.1)
}

/// Mesh `m`: gateway `gw` routes everything to service `app.local`, provided by node `app`
/// (listening on 8080).
fn mesh(c: &Control) {
    let api = Api::new(c);
    for (path, body) in [
        ("/v20190125/meshes", r#"{"meshName":"m"}"#.to_owned()),
        (
            "/v20190125/meshes/m/virtualNodes",
            r#"{"virtualNodeName":"app","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}}"#.into(),
        ),
        (
            "/v20190125/meshes/m/virtualServices",
            r#"{"virtualServiceName":"app.local","spec":{"provider":{"virtualNode":{"virtualNodeName":"app"}}}}"#.into(),
        ),
        (
            "/v20190125/meshes/m/virtualGateways",
            r#"{"virtualGatewayName":"gw","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}}"#.into(),
        ),
        (
            "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
            r#"{"gatewayRouteName":"all","spec":{"httpRoute":{"match":{"prefix":"/"},"action":{"target":{"virtualService":{"virtualServiceName":"app.local"}}}}}}"#.into(),
        ),
    ] {
        let (s, _, b) = api.call("PUT", path, Some(&body));
        assert_eq!(s, 200, "{path}: {b}");
    }
}

/// Gateway `gw` of `mesh`, run from a compiled file whose one endpoint of `app` is `endpoint`.
fn gateway_to(c: &Control, endpoint: SocketAddr) -> (Proxy, tempfile::TempDir) {
    let out = c.ctl(&[
        "compile",
        "--identity",
        "mesh/m/virtualGateway/gw",
        "--endpoint",
        &format!("app={endpoint}"),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("gw.json");
    std::fs::write(&cfg, out.stdout).unwrap();
    let p = Proxy::start(
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
    (p, tmp)
}

/// Sends `head` (a whole request head) and reads the response to its end: status, body.
fn raw(gateway: &Proxy, head: &str) -> (u16, String) {
    raw_to(&gateway.addrs["gateway"], head)
}

/// `raw`, to any address.
fn raw_to(addr: &str, head: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// The value of `name` in the echoed head, if the upstream got it.
fn seen<'a>(echoed: &'a str, name: &str) -> Option<&'a str> {
    echoed
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

#[test]
fn the_gateway_appends_the_client_to_x_forwarded_for_and_sets_the_proto() {
    let (_c, gw, _tmp) = gateway();
    let (status, echoed) = raw(
        &gw,
        "GET / HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{echoed}");
    assert_eq!(
        seen(&echoed, "x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(seen(&echoed, "x-forwarded-proto"), Some("http"), "{echoed}");
}

#[test]
fn the_gateway_drops_headers_that_steer_the_mesh_and_replaces_the_request_id() {
    let (_c, gw, _tmp) = gateway();
    let (status, echoed) = raw(
        &gw,
        "GET / HTTP/1.1\r\nHost: app\r\nX-Envoy-Max-Retries: 50\r\nX-Appliance-Proxy: forged\r\nX-Request-Id: chosen-outside\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{echoed}");
    assert_eq!(seen(&echoed, "x-envoy-max-retries"), None, "{echoed}");
    assert_eq!(seen(&echoed, "x-appliance-proxy"), None, "{echoed}");
    let id = seen(&echoed, "x-request-id").expect("a request id");
    assert_ne!(id, "chosen-outside");
    assert_eq!(id.len(), 36, "a UUID: {id}");
}

#[test]
fn headers_a_connection_header_names_are_not_forwarded() {
    let (_c, gw, _tmp) = gateway();
    let (status, echoed) = raw(
        &gw,
        "GET / HTTP/1.1\r\nHost: app\r\nConnection: close, X-Hop\r\nX-Hop: secret\r\nX-Keep: yes\r\n\r\n",
    );
    assert_eq!(status, 200, "{echoed}");
    assert_eq!(seen(&echoed, "x-hop"), None, "{echoed}");
    assert_eq!(seen(&echoed, "x-keep"), Some("yes"), "{echoed}");
}

#[test]
fn an_http11_request_without_a_host_or_with_two_is_refused_with_400() {
    let (_c, gw, _tmp) = gateway();
    let (status, body) = raw(&gw, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no Host header"), "{body}");
    let (status, body) = raw(
        &gw,
        "GET / HTTP/1.1\r\nHost: app\r\nHost: other\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("more than one Host header"), "{body}");
}

/// An address nothing listens on (bound, then closed): connections to it are refused.
fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn the_gateways_own_failure_tells_an_outside_client_little_and_logs_why() {
    let c = Control::start();
    mesh(&c);
    let dead = closed_port();
    let (gw, _tmp) = gateway_to(&c, dead);
    let (status, body) = raw(
        &gw,
        "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 503, "{body}");
    // Refused, retried, then none left: either way one of Envoy's short texts.
    assert!(
        body == "no healthy upstream\n"
            || body == "upstream connect error or disconnect/reset before headers\n",
        "{body}"
    );
    // The operator still learns where it failed.
    gw.wait_for_log(&["answered an outside client", "1 refusing connections"]);
    assert!(!body.contains(&dead.to_string()));
}

#[test]
fn a_sidecars_failure_relayed_by_the_gateway_tells_an_outside_client_little() {
    let c = Control::start();
    mesh(&c);
    // The sidecar's app is down: the sidecar answers 503 naming the app's address.
    let app = closed_port();
    let tmp = tempfile::tempdir().unwrap();
    let out = c.ctl(&["compile", "--identity", "mesh/m/virtualNode/app"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cfg = tmp.path().join("app.json");
    std::fs::write(&cfg, out.stdout).unwrap();
    let sidecar = Proxy::sidecar_from_file(&cfg, &app.to_string(), &["sidecar-inbound"]);
    let inbound: SocketAddr = sidecar.addrs["sidecar-inbound"].parse().unwrap();
    let (gw, _gw_tmp) = gateway_to(&c, inbound);
    let (status, body) = raw(
        &gw,
        "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, "no healthy upstream\n");
    let line = gw.wait_for_log(&["relayed a mesh proxy's answer", "mesh/m/virtualNode/app"]);
    assert!(
        line.contains(&app.to_string()),
        "the sidecar's reason is logged: {line}"
    );
    // Inside the mesh, the sidecar's own answer keeps its reason.
    let (status, body) = raw_to(
        &sidecar.addrs["sidecar-inbound"],
        "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 503);
    assert!(body.contains(&app.to_string()), "{body}");
}
