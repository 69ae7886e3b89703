//! Conformance: request matching, paths, API validation and access logs, one real-process
//! test per row of `docs/field-support.md`. Each test fails if the proxy ignored its field:
//! it sends one request the field must route (or rewrite, or log) one way and one it must
//! not. Meshes are built through the real API, compiled by the control plane
//! (`appliance ctl compile`) and run by a real `appliance gateway` or `sidecar` against test
//! upstreams on 127.0.0.1.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{spawn_upstreams, Api, Behaviour, Control, Proxy};

// === the mesh under test ===

/// A mesh `m` with nodes `a` and `b` (http 8080, each answering with its name), virtual
/// services `a.svc` and `b.svc` provided by those nodes, and a node `client` whose backends
/// are `svc.local`, `a.svc` and `b.svc`.
struct Mesh {
    c: Control,
    api: Api,
    tmp: tempfile::TempDir,
    endpoints: Vec<(String, SocketAddr)>,
}

impl Mesh {
    fn new() -> Mesh {
        Mesh::with_client_extra("")
    }

    /// `extra` is spliced into the client node's spec (e.g. its `logging`).
    fn with_client_extra(extra: &str) -> Mesh {
        let c = Control::start();
        let api = Api::new(&c);
        let ups = spawn_upstreams(&[("a", Behaviour::Color), ("b", Behaviour::Color)]);
        let m = Mesh {
            c,
            api,
            tmp: tempfile::tempdir().unwrap(),
            endpoints: vec![("a".into(), ups[0]), ("b".into(), ups[1])],
        };
        m.put("/v20190125/meshes", r#"{"meshName":"m"}"#);
        for n in ["a", "b"] {
            m.put(
                "/v20190125/meshes/m/virtualNodes",
                &format!(
                    r#"{{"virtualNodeName":"{n}","spec":{{"listeners":[{{"portMapping":{{"port":8080,"protocol":"http"}}}}],"serviceDiscovery":{{"dns":{{"hostname":"{n}.local"}}}}}}}}"#
                ),
            );
            m.put(
                "/v20190125/meshes/m/virtualServices",
                &format!(
                    r#"{{"virtualServiceName":"{n}.svc","spec":{{"provider":{{"virtualNode":{{"virtualNodeName":"{n}"}}}}}}}}"#
                ),
            );
        }
        m.put(
            "/v20190125/meshes/m/virtualNodes",
            &format!(
                r#"{{"virtualNodeName":"client","spec":{{"listeners":[{{"portMapping":{{"port":8080,"protocol":"http"}}}}],"serviceDiscovery":{{"dns":{{"hostname":"client.local"}}}},"backends":[{{"virtualService":{{"virtualServiceName":"svc.local"}}}},{{"virtualService":{{"virtualServiceName":"a.svc"}}}},{{"virtualService":{{"virtualServiceName":"b.svc"}}}}]{extra}}}}}"#
            ),
        );
        m
    }

    fn put(&self, path: &str, body: &str) {
        let (s, _, b) = self.api.call("PUT", path, Some(body));
        assert_eq!(s, 200, "PUT {path}: {b}");
    }

    /// Router `r` listening on `ports` (http), providing `svc.local`, with these routes.
    fn router(&self, ports: &[u16], routes: &[(&str, String)]) {
        let listeners: Vec<String> = ports
            .iter()
            .map(|p| format!(r#"{{"portMapping":{{"port":{p},"protocol":"http"}}}}"#))
            .collect();
        self.put(
            "/v20190125/meshes/m/virtualRouters",
            &format!(
                r#"{{"virtualRouterName":"r","spec":{{"listeners":[{}]}}}}"#,
                listeners.join(",")
            ),
        );
        for (name, spec) in routes {
            self.put(
                "/v20190125/meshes/m/virtualRouter/r/routes",
                &format!(r#"{{"routeName":"{name}","spec":{spec}}}"#),
            );
        }
        self.put(
            "/v20190125/meshes/m/virtualServices",
            r#"{"virtualServiceName":"svc.local","spec":{"provider":{"virtualRouter":{"virtualRouterName":"r"}}}}"#,
        );
    }

    /// Gateway `gw` (http 9080, `extra` spliced into its spec) with these gateway routes.
    fn gateway(&self, extra: &str, routes: &[(&str, String)]) {
        self.put(
            "/v20190125/meshes/m/virtualGateways",
            &format!(
                r#"{{"virtualGatewayName":"gw","spec":{{"listeners":[{{"portMapping":{{"port":9080,"protocol":"http"}}}}]{extra}}}}}"#
            ),
        );
        for (name, spec) in routes {
            self.put(
                "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
                &format!(r#"{{"gatewayRouteName":"{name}","spec":{spec}}}"#),
            );
        }
    }

    fn compile(&self, identity: &str) -> String {
        let mut args = vec!["compile".to_owned(), "--identity".into(), identity.into()];
        for (node, addr) in &self.endpoints {
            args.push("--endpoint".into());
            args.push(format!("{node}={addr}"));
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.c.ctl(&a);
        assert_eq!(out.code, 0, "compile: {}", out.stderr);
        let path = self
            .tmp
            .path()
            .join(format!("{}.json", identity.replace('/', "_")));
        std::fs::write(&path, &out.stdout).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn start_gateway(&self) -> Proxy {
        let cfg = self.compile("mesh/m/virtualGateway/gw");
        Proxy::start(
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
        )
    }

    /// The client node's sidecar; its app is upstream `a`.
    fn start_sidecar(&self) -> Proxy {
        let cfg = self.compile("mesh/m/virtualNode/client");
        let app = self.endpoints[0].1.to_string();
        Proxy::start(
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
        )
    }

    fn log_path(&self) -> String {
        self.tmp
            .path()
            .join("access.log")
            .to_string_lossy()
            .into_owned()
    }
}

/// An http route spec: `match` JSON, to node `target`, with `priority`.
fn route(priority: u32, r#match: &str, target: &str) -> String {
    format!(
        r#"{{"priority":{priority},"httpRoute":{{"match":{match},"action":{{"weightedTargets":[{{"virtualNode":"{target}","weight":1}}]}}}}}}"#
    )
}

/// A gateway route spec to `service`, with `priority`, `match` and an optional `rewrite`.
fn gateway_route(priority: u32, r#match: &str, service: &str, rewrite: &str) -> String {
    let rewrite = if rewrite.is_empty() {
        String::new()
    } else {
        format!(r#","rewrite":{rewrite}"#)
    };
    format!(
        r#"{{"priority":{priority},"httpRoute":{{"match":{match},"action":{{"target":{{"virtualService":{{"virtualServiceName":"{service}"}}}}{rewrite}}}}}}}"#
    )
}

/// The catch-all gateway route, last in priority order, to `b.svc`.
fn fallback() -> (&'static str, String) {
    (
        "fallback",
        gateway_route(1000, r#"{"prefix":"/"}"#, "b.svc", ""),
    )
}

// === clients ===

/// The answer to one raw HTTP/1.1 request: what reqwest would not send (dot segments, odd
/// targets) goes through this.
struct Raw {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

fn raw(addr: &str, request: &str) -> Raw {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Raw {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn raw_get(addr: &str, target: &str, host: &str) -> Raw {
    raw(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// GET through the sidecar's egress to `host`, with extra headers: (status, body).
fn egress(p: &Proxy, host: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut rb = client()
        .get(p.url("sidecar-egress", path))
        .header("host", host);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// GET through the gateway, with extra headers: (status, body, the path the upstream saw,
/// the Host it saw).
fn via_gateway(p: &Proxy, method: &str, path: &str, headers: &[(&str, &str)]) -> Raw {
    let mut rb = client().request(method.parse().unwrap(), p.url("gateway", path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().unwrap();
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    Raw {
        status,
        headers,
        body: r.text().unwrap(),
    }
}

/// Waits until the file has `n` lines; returns them.
fn log_lines(path: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{n} log lines expected: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// === path normalisation ===

#[test]
fn dot_segments_are_resolved_before_gateway_routes_match() {
    let m = Mesh::new();
    m.gateway(
        "",
        &[
            ("api", gateway_route(0, r#"{"prefix":"/api"}"#, "a.svc", "")),
            fallback(),
        ],
    );
    let gw = m.start_gateway();
    let addr = &gw.addrs["gateway"];
    for target in [
        "/api/../etc/passwd",
        "/api/%2e%2e/etc/passwd",
        "/api/./../etc/passwd",
    ] {
        let r = raw_get(addr, target, "gw.example");
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.body, "b", "{target} must not match the /api route");
        assert_eq!(r.headers["x-seen-path"], "/etc/passwd", "{target}");
    }
    let r = raw_get(addr, "/api/x/../y", "gw.example");
    assert_eq!(
        (r.body.as_str(), r.headers["x-seen-path"].as_str()),
        ("a", "/y")
    );
}

#[test]
fn runs_of_slashes_are_merged_before_gateway_routes_match() {
    let m = Mesh::new();
    m.gateway(
        "",
        &[
            (
                "api",
                gateway_route(0, r#"{"path":{"exact":"/api/v1"}}"#, "a.svc", ""),
            ),
            fallback(),
        ],
    );
    let gw = m.start_gateway();
    let r = raw_get(&gw.addrs["gateway"], "//api///v1?q=//x", "gw.example");
    assert_eq!(r.body, "a", "//api///v1 is /api/v1");
    assert_eq!(r.headers["x-seen-path"], "/api/v1");
}

#[test]
fn a_nul_in_the_path_is_refused_with_400() {
    let m = Mesh::new();
    m.gateway("", &[fallback()]);
    let gw = m.start_gateway();
    let r = raw_get(&gw.addrs["gateway"], "/xyz/.%00../abc", "gw.example");
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn the_sidecar_normalises_paths_on_ingress_and_egress() {
    let m = Mesh::new();
    m.router(
        &[8080],
        &[
            ("api", route(0, r#"{"prefix":"/api"}"#, "a")),
            ("rest", route(1, r#"{"prefix":"/"}"#, "b")),
        ],
    );
    let p = m.start_sidecar();
    let out = raw_get(&p.addrs["sidecar-egress"], "/api/../x//y", "svc.local");
    assert_eq!(
        out.body, "b",
        "egress: /api/../x//y is /x/y, not an /api path"
    );
    assert_eq!(out.headers["x-seen-path"], "/x/y");
    let inbound = raw_get(&p.addrs["sidecar-inbound"], "/a/./b/../c", "client.local");
    assert_eq!(inbound.status, 200);
    assert_eq!(inbound.headers["x-seen-path"], "/a/c", "ingress to the app");
}

// === header, query, scheme and port matches (router routes, via a sidecar) ===

#[test]
fn an_inverted_header_match_does_not_match_a_missing_header() {
    let m = Mesh::new();
    m.router(
        &[8080],
        &[
            (
                "not-gold",
                route(
                    0,
                    r#"{"prefix":"/","headers":[{"name":"x-tier","invert":true,"match":{"exact":"gold"}}]}"#,
                    "a",
                ),
            ),
            ("rest", route(1, r#"{"prefix":"/"}"#, "b")),
        ],
    );
    let p = m.start_sidecar();
    assert_eq!(egress(&p, "svc.local", "/", &[("x-tier", "silver")]).1, "a");
    assert_eq!(egress(&p, "svc.local", "/", &[("x-tier", "gold")]).1, "b");
    assert_eq!(
        egress(&p, "svc.local", "/", &[]).1,
        "b",
        "no header: an inverted exact match does not match"
    );
}

#[test]
fn an_inverted_presence_match_matches_a_missing_header() {
    let m = Mesh::new();
    m.router(
        &[8080],
        &[
            (
                "no-debug",
                route(
                    0,
                    r#"{"prefix":"/","headers":[{"name":"x-debug","invert":true}]}"#,
                    "a",
                ),
            ),
            ("rest", route(1, r#"{"prefix":"/"}"#, "b")),
        ],
    );
    let p = m.start_sidecar();
    assert_eq!(egress(&p, "svc.local", "/", &[]).1, "a");
    assert_eq!(egress(&p, "svc.local", "/", &[("x-debug", "1")]).1, "b");
}

#[test]
fn a_repeated_header_is_matched_on_its_values_joined_with_commas() {
    let m = Mesh::new();
    m.router(
        &[8080],
        &[
            (
                "both",
                route(
                    0,
                    r#"{"prefix":"/","headers":[{"name":"x-tag","match":{"exact":"red,blue"}}]}"#,
                    "a",
                ),
            ),
            ("rest", route(1, r#"{"prefix":"/"}"#, "b")),
        ],
    );
    let p = m.start_sidecar();
    assert_eq!(
        egress(&p, "svc.local", "/", &[("x-tag", "red"), ("x-tag", "blue")]).1,
        "a"
    );
    assert_eq!(egress(&p, "svc.local", "/", &[("x-tag", "red")]).1, "b");
}

#[test]
fn a_query_parameter_match_uses_the_first_value_of_its_name() {
    let m = Mesh::new();
    m.router(
        &[8080],
        &[
            (
                "v1",
                route(
                    0,
                    r#"{"prefix":"/","queryParameters":[{"name":"v","match":{"exact":"1"}}]}"#,
                    "a",
                ),
            ),
            ("rest", route(1, r#"{"prefix":"/"}"#, "b")),
        ],
    );
    let p = m.start_sidecar();
    assert_eq!(egress(&p, "svc.local", "/x?v=1&v=2", &[]).1, "a");
    assert_eq!(egress(&p, "svc.local", "/x?v=2&v=1", &[]).1, "b");
    assert_eq!(egress(&p, "svc.local", "/x?w=1", &[]).1, "b");
}

#[test]
fn a_route_scheme_match_compares_the_request_scheme() {
    let m = Mesh::new();
    m.router(
        &[8080],
        &[
            ("tls", route(0, r#"{"prefix":"/","scheme":"https"}"#, "a")),
            ("rest", route(1, r#"{"prefix":"/"}"#, "b")),
        ],
    );
    let p = m.start_sidecar();
    let addr = &p.addrs["sidecar-egress"];
    // Absolute-form targets carry the scheme, as a proxy-aware client sends them.
    let https = raw_get(addr, "https://svc.local/x", "svc.local");
    assert_eq!(https.body, "a", "https:// matches scheme https");
    let http = raw_get(addr, "http://svc.local/x", "svc.local");
    assert_eq!(http.body, "b", "http:// does not");
}

#[test]
fn a_route_port_match_picks_the_router_listener_the_request_names() {
    let m = Mesh::new();
    m.router(
        &[8080, 9090],
        &[
            ("p8080", route(0, r#"{"prefix":"/","port":8080}"#, "a")),
            ("p9090", route(0, r#"{"prefix":"/","port":9090}"#, "b")),
        ],
    );
    let p = m.start_sidecar();
    assert_eq!(egress(&p, "svc.local:8080", "/", &[]).1, "a");
    assert_eq!(egress(&p, "svc.local:9090", "/", &[]).1, "b");
}

// === route order and path specifiers ===

#[test]
fn route_priority_orders_routes_at_run_time() {
    let m = Mesh::new();
    m.router(
        &[8080],
        &[
            // The longer prefix, but the lower priority: it must not win.
            ("long", route(9, r#"{"prefix":"/p/longer"}"#, "a")),
            ("short", route(1, r#"{"prefix":"/p"}"#, "b")),
        ],
    );
    let p = m.start_sidecar();
    assert_eq!(egress(&p, "svc.local", "/p/longer", &[]).1, "b");
    drop(p);
    m.put(
        "/v20190125/meshes/m/virtualRouter/r/routes/short",
        &format!(r#"{{"spec":{}}}"#, route(20, r#"{"prefix":"/p"}"#, "b")),
    );
    let p = m.start_sidecar();
    assert_eq!(egress(&p, "svc.local", "/p/longer", &[]).1, "a");
}

#[test]
fn a_route_exact_path_matches_only_that_path_without_its_query() {
    let m = Mesh::new();
    m.router(
        &[8080],
        &[
            ("exact", route(0, r#"{"path":{"exact":"/exact"}}"#, "a")),
            ("rest", route(1, r#"{"prefix":"/"}"#, "b")),
        ],
    );
    let p = m.start_sidecar();
    assert_eq!(egress(&p, "svc.local", "/exact?x=1", &[]).1, "a");
    assert_eq!(egress(&p, "svc.local", "/exact/more", &[]).1, "b");
    assert_eq!(egress(&p, "svc.local", "/exac", &[]).1, "b");
}

#[test]
fn a_route_regex_path_must_match_the_whole_path() {
    let m = Mesh::new();
    m.router(
        &[8080],
        &[
            (
                "items",
                route(0, r#"{"path":{"regex":"/items/[0-9]+"}}"#, "a"),
            ),
            ("rest", route(1, r#"{"prefix":"/"}"#, "b")),
        ],
    );
    let p = m.start_sidecar();
    assert_eq!(egress(&p, "svc.local", "/items/42", &[]).1, "a");
    assert_eq!(egress(&p, "svc.local", "/items/42/x", &[]).1, "b");
    assert_eq!(egress(&p, "svc.local", "/v1/items/42", &[]).1, "b");
}

// === gateway routes ===

#[test]
fn a_gateway_route_exact_path_matches_and_rewrite_path_exact_replaces_it() {
    let m = Mesh::new();
    m.gateway(
        "",
        &[
            (
                "old",
                gateway_route(
                    0,
                    r#"{"path":{"exact":"/old"}}"#,
                    "a.svc",
                    r#"{"path":{"exact":"/new"}}"#,
                ),
            ),
            fallback(),
        ],
    );
    let gw = m.start_gateway();
    let r = via_gateway(&gw, "GET", "/old?k=v", &[]);
    assert_eq!(
        (r.body.as_str(), r.headers["x-seen-path"].as_str()),
        ("a", "/new")
    );
    let r = via_gateway(&gw, "GET", "/old/x", &[]);
    assert_eq!(r.body, "b", "an exact path does not match below it");
}

#[test]
fn a_gateway_route_regex_path_must_match_the_whole_path() {
    let m = Mesh::new();
    m.gateway(
        "",
        &[
            (
                "items",
                gateway_route(0, r#"{"path":{"regex":"/items/[0-9]+"}}"#, "a.svc", ""),
            ),
            fallback(),
        ],
    );
    let gw = m.start_gateway();
    let r = via_gateway(&gw, "GET", "/items/7", &[]);
    assert_eq!(
        (r.body.as_str(), r.headers["x-seen-path"].as_str()),
        ("a", "/items/7")
    );
    assert_eq!(via_gateway(&gw, "GET", "/items/7/x", &[]).body, "b");
}

#[test]
fn a_gateway_route_exact_hostname_matches_that_host_only() {
    let m = Mesh::new();
    m.gateway(
        "",
        &[
            (
                "host",
                gateway_route(
                    0,
                    r#"{"prefix":"/","hostname":{"exact":"shop.example.com"}}"#,
                    "a.svc",
                    "",
                ),
            ),
            fallback(),
        ],
    );
    let gw = m.start_gateway();
    let addr = &gw.addrs["gateway"];
    assert_eq!(raw_get(addr, "/", "shop.example.com").body, "a");
    assert_eq!(
        raw_get(addr, "/", "Shop.Example.com:9080").body,
        "a",
        "case and port ignored"
    );
    assert_eq!(raw_get(addr, "/", "www.shop.example.com").body, "b");
}

#[test]
fn a_gateway_route_suffix_hostname_matches_hosts_ending_with_it() {
    let m = Mesh::new();
    m.gateway(
        "",
        &[
            (
                "host",
                gateway_route(
                    0,
                    r#"{"prefix":"/","hostname":{"suffix":".example.com"}}"#,
                    "a.svc",
                    "",
                ),
            ),
            fallback(),
        ],
    );
    let gw = m.start_gateway();
    let addr = &gw.addrs["gateway"];
    assert_eq!(raw_get(addr, "/", "shop.example.com").body, "a");
    assert_eq!(raw_get(addr, "/", "example.org").body, "b");
}

#[test]
fn a_gateway_route_rewrite_prefix_value_replaces_the_matched_prefix() {
    let m = Mesh::new();
    m.gateway(
        "",
        &[
            (
                "old",
                gateway_route(
                    0,
                    r#"{"prefix":"/old"}"#,
                    "a.svc",
                    r#"{"prefix":{"value":"/new"}}"#,
                ),
            ),
            fallback(),
        ],
    );
    let gw = m.start_gateway();
    let r = via_gateway(&gw, "GET", "/old/x?q=1", &[]);
    assert_eq!(
        (r.body.as_str(), r.headers["x-seen-path"].as_str()),
        ("a", "/new/x")
    );
}

#[test]
fn a_gateway_route_default_prefix_disabled_keeps_the_path() {
    let m = Mesh::new();
    m.gateway(
        "",
        &[
            (
                "keep",
                gateway_route(
                    0,
                    r#"{"prefix":"/keep"}"#,
                    "a.svc",
                    r#"{"prefix":{"defaultPrefix":"DISABLED"}}"#,
                ),
            ),
            (
                "strip",
                gateway_route(1, r#"{"prefix":"/strip"}"#, "a.svc", ""),
            ),
            fallback(),
        ],
    );
    let gw = m.start_gateway();
    assert_eq!(
        via_gateway(&gw, "GET", "/keep/x", &[]).headers["x-seen-path"],
        "/keep/x"
    );
    assert_eq!(
        via_gateway(&gw, "GET", "/strip/x", &[]).headers["x-seen-path"],
        "/x",
        "the default (ENABLED) makes the matched prefix /"
    );
}

#[test]
fn a_gateway_route_default_target_hostname_disabled_keeps_the_host() {
    let m = Mesh::new();
    m.gateway(
        "",
        &[
            (
                "keep",
                gateway_route(
                    0,
                    r#"{"prefix":"/keep"}"#,
                    "a.svc",
                    r#"{"hostname":{"defaultTargetHostname":"DISABLED"}}"#,
                ),
            ),
            fallback(),
        ],
    );
    let gw = m.start_gateway();
    let addr = &gw.addrs["gateway"];
    assert_eq!(
        raw_get(addr, "/keep", "gw.example").headers["x-seen-host"],
        "gw.example"
    );
    assert_eq!(
        raw_get(addr, "/other", "gw.example").headers["x-seen-host"],
        "b.svc",
        "by default the Host becomes the target virtual service"
    );
}

#[test]
fn a_gateway_route_header_match_picks_its_target() {
    let m = Mesh::new();
    m.gateway(
        "",
        &[
            (
                "canary",
                gateway_route(
                    0,
                    r#"{"prefix":"/","headers":[{"name":"x-canary","match":{"prefix":"ye"}}]}"#,
                    "a.svc",
                    "",
                ),
            ),
            fallback(),
        ],
    );
    let gw = m.start_gateway();
    assert_eq!(
        via_gateway(&gw, "GET", "/", &[("x-canary", "yes")]).body,
        "a"
    );
    assert_eq!(
        via_gateway(&gw, "GET", "/", &[("x-canary", "no")]).body,
        "b"
    );
    assert_eq!(via_gateway(&gw, "GET", "/", &[]).body, "b");
}

#[test]
fn a_gateway_route_method_match_picks_its_target() {
    let m = Mesh::new();
    m.gateway(
        "",
        &[
            (
                "post",
                gateway_route(0, r#"{"prefix":"/","method":"POST"}"#, "a.svc", ""),
            ),
            fallback(),
        ],
    );
    let gw = m.start_gateway();
    assert_eq!(via_gateway(&gw, "POST", "/", &[]).body, "a");
    assert_eq!(via_gateway(&gw, "GET", "/", &[]).body, "b");
}

#[test]
fn a_gateway_route_query_parameter_match_picks_its_target() {
    let m = Mesh::new();
    m.gateway(
        "",
        &[
            (
                "beta",
                gateway_route(
                    0,
                    r#"{"prefix":"/","queryParameters":[{"name":"beta"}]}"#,
                    "a.svc",
                    "",
                ),
            ),
            fallback(),
        ],
    );
    let gw = m.start_gateway();
    assert_eq!(via_gateway(&gw, "GET", "/?beta", &[]).body, "a", "presence");
    assert_eq!(via_gateway(&gw, "GET", "/?x=1&beta=0", &[]).body, "a");
    assert_eq!(via_gateway(&gw, "GET", "/?betamax=1", &[]).body, "b");
}

// === the API refuses what the proxies would refuse ===

/// Asserts a 400 BadRequestException whose message contains every one of `words`.
fn refused(api: &Api, method: &str, path: &str, body: &str, words: &[&str]) {
    let (s, kind, b) = api.call(method, path, Some(body));
    assert_eq!(s, 400, "{method} {path}: {b}");
    assert_eq!(kind.as_deref(), Some("BadRequestException"));
    let msg = b["message"].as_str().unwrap_or_default();
    for w in words {
        assert!(msg.contains(w), "message {msg:?} must contain {w:?}");
    }
}

fn get(api: &Api, path: &str) -> serde_json::Value {
    let (s, _, b) = api.call("GET", path, None);
    assert_eq!(s, 200, "GET {path}: {b}");
    b
}

#[test]
fn an_invalid_regex_is_refused_at_write_time_and_the_store_is_unchanged() {
    let m = Mesh::new();
    m.router(&[8080], &[("rest", route(1, r#"{"prefix":"/"}"#, "b"))]);
    let routes = "/v20190125/meshes/m/virtualRouter/r/routes";
    let before = get(&m.api, routes);
    refused(
        &m.api,
        "PUT",
        routes,
        &format!(
            r#"{{"routeName":"bad","spec":{}}}"#,
            route(0, r#"{"path":{"regex":"([a-z"}}"#, "a")
        ),
        &[
            "spec.httpRoute.match.path.regex",
            "([a-z",
            "not a valid regex",
        ],
    );
    assert_eq!(
        get(&m.api, routes),
        before,
        "a refused create stores nothing"
    );
    let describe = format!("{routes}/rest");
    let old = get(&m.api, &describe);
    refused(
        &m.api,
        "PUT",
        &describe,
        &format!(
            r#"{{"spec":{}}}"#,
            route(
                1,
                r#"{"prefix":"/","headers":[{"name":"x","match":{"regex":"a)|(b"}}]}"#,
                "b"
            )
        ),
        &[
            "spec.httpRoute.match.headers[0].match.regex",
            "not a valid regex",
        ],
    );
    assert_eq!(
        get(&m.api, &describe),
        old,
        "a refused update changes nothing"
    );
}

#[test]
fn a_pseudo_header_or_invalid_header_name_in_a_match_is_refused() {
    let m = Mesh::new();
    m.router(&[8080], &[]);
    let routes = "/v20190125/meshes/m/virtualRouter/r/routes";
    for (name, why) in [
        (":authority", "pseudo-header"),
        ("x canary", "not a valid header name"),
    ] {
        refused(
            &m.api,
            "PUT",
            routes,
            &format!(
                r#"{{"routeName":"bad","spec":{}}}"#,
                route(
                    0,
                    &format!(r#"{{"prefix":"/","headers":[{{"name":"{name}"}}]}}"#),
                    "a"
                )
            ),
            &["spec.httpRoute.match.headers[0].name", why],
        );
    }
    let gr = "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes";
    m.gateway("", &[]);
    refused(
        &m.api,
        "PUT",
        gr,
        &format!(
            r#"{{"gatewayRouteName":"bad","spec":{}}}"#,
            gateway_route(
                0,
                r#"{"prefix":"/","headers":[{"name":":path"}]}"#,
                "a.svc",
                ""
            )
        ),
        &["spec.httpRoute.match.headers[0].name", "pseudo-header"],
    );
    assert_eq!(get(&m.api, routes)["routes"], serde_json::json!([]));
    assert_eq!(get(&m.api, gr)["gatewayRoutes"], serde_json::json!([]));
}

#[test]
fn an_unsupported_access_log_operator_is_refused_by_name() {
    let m = Mesh::new();
    let nodes = "/v20190125/meshes/m/virtualNodes";
    refused(
        &m.api,
        "PUT",
        nodes,
        r#"{"virtualNodeName":"logged","spec":{"logging":{"accessLog":{"file":{"path":"/dev/stdout","format":{"text":"%START_TIME% %UPSTREAM_TRANSPORT_FAILURE_REASON%\n"}}}}}}"#,
        &[
            "spec.logging.accessLog.file.format.text",
            "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
            "not supported",
        ],
    );
    let (s, _, _) = m.api.call("GET", &format!("{nodes}/logged"), None);
    assert_eq!(s, 404, "a refused create stores nothing");
    m.gateway("", &[]);
    let gw = "/v20190125/meshes/m/virtualGateways/gw";
    let old = get(&m.api, gw);
    refused(
        &m.api,
        "PUT",
        gw,
        r#"{"spec":{"listeners":[{"portMapping":{"port":9080,"protocol":"http"}}],"logging":{"accessLog":{"file":{"path":"/dev/stdout","format":{"json":[{"key":"ok","value":"%DURATION%"},{"key":"bad","value":"%FILTER_STATE(x)%"}]}}}}}}"#,
        &[
            "spec.logging.accessLog.file.format.json[1].value",
            "FILTER_STATE",
        ],
    );
    assert_eq!(get(&m.api, gw), old, "a refused update changes nothing");
}

// === access logs ===

/// An upstream that reads the whole request body and answers, without Content-Length,
/// `n` bytes in two chunks `slow` ms apart (query `?n=..&slow=..`).
fn streaming_upstream() -> SocketAddr {
    use http_body_util::BodyExt;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |req: hyper::Request<hyper::body::Incoming>| async move {
                            let q = req.uri().query().unwrap_or("").to_owned();
                            let param = |k: &str| {
                                q.split('&')
                                    .find_map(|p| p.strip_prefix(&format!("{k}=")))
                                    .and_then(|v| v.parse::<usize>().ok())
                                    .unwrap_or(0)
                            };
                            let (n, slow) = (param("n"), param("slow"));
                            let got = req.into_body().collect().await.map(|b| b.to_bytes().len());
                            let (ctx, crx) = tokio::sync::mpsc::channel::<
                                Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
                            >(2);
                            tokio::spawn(async move {
                                let half = n / 2;
                                let _ = ctx
                                    .send(Ok(hyper::body::Frame::data(vec![b'x'; half].into())))
                                    .await;
                                tokio::time::sleep(Duration::from_millis(slow as u64)).await;
                                let _ = ctx
                                    .send(Ok(hyper::body::Frame::data(vec![b'y'; n - half].into())))
                                    .await;
                            });
                            let body = http_body_util::StreamBody::new(
                                tokio_stream::wrappers::ReceiverStream::new(crx),
                            );
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("x-received", got.unwrap_or(0).to_string())
                                    .body(body)
                                    .unwrap(),
                            )
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
                });
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

/// A gateway to `a.svc` whose node `a` is the streaming upstream, logging with `format`.
fn logged_gateway(format: &str) -> (Mesh, Proxy) {
    let mut m = Mesh::new();
    m.endpoints[0].1 = streaming_upstream();
    let logging = format!(
        r#","logging":{{"accessLog":{{"file":{{"path":"{}","format":{{"text":{}}}}}}}}}"#,
        m.log_path(),
        serde_json::Value::String(format.to_owned())
    );
    m.gateway(
        &logging,
        &[("all", gateway_route(0, r#"{"prefix":"/"}"#, "a.svc", ""))],
    );
    let gw = m.start_gateway();
    (m, gw)
}

#[test]
fn access_log_bytes_count_the_bodies_actually_sent_and_received() {
    let (m, gw) = logged_gateway("%REQ(:METHOD)% %BYTES_RECEIVED% %BYTES_SENT%\n");
    let http = client();
    // A chunked upload has no Content-Length; the answer has none either.
    let upload = std::io::Cursor::new(vec![b'u'; 3000]);
    let r = http
        .post(gw.url("gateway", "/up?n=1234"))
        .body(reqwest::blocking::Body::new(upload))
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-received"], "3000");
    assert_eq!(r.bytes().unwrap().len(), 1234);
    // HEAD: a Content-Length may be announced, no body is sent.
    let r = http.head(gw.url("gateway", "/up?n=10")).send().unwrap();
    assert_eq!(r.status(), 200);
    let lines = log_lines(&m.log_path(), 2);
    assert_eq!(lines[0], "POST 3000 1234");
    assert_eq!(lines[1], "HEAD 0 0");
}

#[test]
fn access_log_duration_ends_with_the_last_byte_of_the_response() {
    let (m, gw) = logged_gateway("%DURATION%\n");
    let r = client()
        .get(gw.url("gateway", "/slow?n=10&slow=800"))
        .send()
        .unwrap();
    assert_eq!(r.bytes().unwrap().len(), 10);
    let lines = log_lines(&m.log_path(), 1);
    let ms: u64 = lines[0].parse().unwrap();
    assert!(
        ms >= 800,
        "the body's last byte came 800 ms after its headers; logged {ms}"
    );
}

#[test]
fn access_log_path_is_the_rewritten_one_and_the_original_is_x_envoy_original_path() {
    let m = Mesh::new();
    let logging = format!(
        r#","logging":{{"accessLog":{{"file":{{"path":"{}","format":{{"text":"%REQ(:PATH)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %REQ(:AUTHORITY)%\n"}}}}}}}}"#,
        m.log_path()
    );
    m.gateway(
        &logging,
        &[(
            "old",
            gateway_route(
                0,
                r#"{"prefix":"/old"}"#,
                "a.svc",
                r#"{"prefix":{"value":"/new"}}"#,
            ),
        )],
    );
    let gw = m.start_gateway();
    let r = via_gateway(&gw, "GET", "/old/x?q=1", &[]);
    assert_eq!(r.headers["x-seen-path"], "/new/x");
    let lines = log_lines(&m.log_path(), 1);
    assert_eq!(lines[0], "/new/x?q=1 /old/x?q=1 a.svc");
}

#[test]
fn access_log_json_format_renders_every_supported_operator() {
    let mut m = Mesh::new();
    m.endpoints[0].1 = streaming_upstream();
    let fields = [
        ("start", "%START_TIME%"),
        ("method", "%REQ(:METHOD)%"),
        ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
        ("protocol", "%PROTOCOL%"),
        ("code", "%RESPONSE_CODE%"),
        ("flags", "%RESPONSE_FLAGS%"),
        ("received", "%BYTES_RECEIVED%"),
        ("sent", "%BYTES_SENT%"),
        ("duration", "%DURATION%"),
        ("upstream", "%UPSTREAM_HOST%"),
        ("remote", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
        ("remote_port", "%DOWNSTREAM_REMOTE_ADDRESS%"),
        ("local", "%DOWNSTREAM_LOCAL_ADDRESS%"),
        ("local_ip", "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%"),
        ("agent", "%REQ(USER-AGENT):4%"),
        ("authority", "%REQ(:AUTHORITY)%"),
        ("scheme", "%REQ(:SCHEME)%"),
        ("answer", "%RESP(X-RECEIVED)%"),
    ];
    let json: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!(r#"{{"key":"{k}","value":"{v}"}}"#))
        .collect();
    let logging = format!(
        r#","logging":{{"accessLog":{{"file":{{"path":"{}","format":{{"json":[{}]}}}}}}}}"#,
        m.log_path(),
        json.join(",")
    );
    m.gateway(
        &logging,
        &[("all", gateway_route(0, r#"{"prefix":"/"}"#, "a.svc", ""))],
    );
    let gw = m.start_gateway();
    let r = client()
        .get(gw.url("gateway", "/x?n=5"))
        .header("user-agent", "tester/1")
        .send()
        .unwrap();
    assert_eq!(r.bytes().unwrap().len(), 5);
    let line: serde_json::Value = serde_json::from_str(&log_lines(&m.log_path(), 1)[0]).unwrap();
    let gw_addr = gw.addrs["gateway"].clone();
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/x?n=5");
    assert_eq!(line["protocol"], "HTTP/1.1");
    assert_eq!(line["code"], "200");
    assert_eq!(line["flags"], "-");
    assert_eq!(line["received"], "0");
    assert_eq!(line["sent"], "5");
    assert_eq!(line["upstream"], m.endpoints[0].1.to_string());
    assert_eq!(line["remote"], "127.0.0.1");
    assert!(line["remote_port"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(line["local"], gw_addr);
    assert_eq!(line["local_ip"], "127.0.0.1");
    assert_eq!(line["agent"], "test");
    // The gateway route rewrote the host to its target, and Envoy logs the rewritten one.
    assert_eq!(line["authority"], "a.svc");
    assert_eq!(line["scheme"], "http");
    assert_eq!(line["answer"], "0");
    for (k, _) in fields {
        let v = line[k].as_str().unwrap_or_default();
        assert!(
            !v.is_empty() && v != "-" || k == "flags",
            "{k} rendered {v:?}"
        );
    }
}

#[test]
fn tcp_connections_are_access_logged_with_their_bytes() {
    let c = Control::start();
    let api = Api::new(&c);
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("tcp.log").to_string_lossy().into_owned();
    let put = |path: &str, body: &str| {
        let (s, _, b) = api.call("PUT", path, Some(body));
        assert_eq!(s, 200, "{path}: {b}");
    };
    put("/v20190125/meshes", r#"{"meshName":"m"}"#);
    put(
        "/v20190125/meshes/m/virtualNodes",
        &format!(
            r#"{{"virtualNodeName":"db","spec":{{"listeners":[{{"portMapping":{{"port":5432,"protocol":"tcp"}}}}],"serviceDiscovery":{{"dns":{{"hostname":"127.0.0.1"}}}},"logging":{{"accessLog":{{"file":{{"path":"{log}","format":{{"text":"%PROTOCOL% %RESPONSE_CODE% %BYTES_RECEIVED% %BYTES_SENT% %UPSTREAM_HOST%\n"}}}}}}}}}}}}"#
        ),
    );
    // The app: reads a line, answers it twice.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap_or(0);
            let _ = s.write_all(&[&buf[..n], &buf[..n]].concat());
        }
    });
    let out = c.ctl(&["compile", "--identity", "mesh/m/virtualNode/db"]);
    assert_eq!(out.code, 0, "compile: {}", out.stderr);
    let cfg = tmp.path().join("db.json");
    std::fs::write(&cfg, &out.stdout).unwrap();
    let app = app.to_string();
    let p = Proxy::sidecar_from_file(&cfg, &app, &["sidecar-inbound"]);
    let mut s = TcpStream::connect(&p.addrs["sidecar-inbound"]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"hello").unwrap();
    let mut back = [0u8; 10];
    s.read_exact(&mut back).unwrap();
    drop(s);
    let lines = log_lines(&log, 1);
    assert_eq!(lines[0], format!("- 0 5 10 {app}"));
}

// === the field-support table ===

/// The test function names in the `test` column of `docs/field-support.md`.
fn table_tests(doc: &str) -> Vec<String> {
    doc.lines()
        .filter(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim().trim_matches('|').split('|').collect();
            let last = cells.last()?.trim();
            let name = last.strip_prefix('`')?.strip_suffix('`')?;
            Some(name.to_owned())
        })
        .collect()
}

/// `#[test]` function names in a source file.
fn test_fns(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut armed = false;
    for line in source.lines().map(str::trim) {
        if line.starts_with("#[test]") {
            armed = true;
        } else if armed {
            if let Some(rest) = line.strip_prefix("fn ") {
                out.push(rest.split('(').next().unwrap_or_default().to_owned());
                armed = false;
            }
        }
    }
    out
}

#[test]
fn field_support_table_matches_the_conformance_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/field-support.md")).unwrap();
    let named: Vec<String> = table_tests(&doc);
    assert!(named.len() > 10, "the table names its tests: {named:?}");
    let mut tests = BTreeSet::new();
    let mut fns = String::new();
    for entry in std::fs::read_dir(root.join("tests")).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if file.starts_with("conformance_") && file.ends_with(".rs") {
            let source = std::fs::read_to_string(&path).unwrap();
            tests.extend(test_fns(&source));
            fns.push_str(&source);
        }
    }
    for name in &named {
        assert!(
            fns.contains(&format!("fn {name}(")),
            "docs/field-support.md names {name}, which no tests/conformance_*.rs defines"
        );
    }
    let named: BTreeSet<String> = named.into_iter().collect();
    let missing: Vec<&String> = tests.difference(&named).collect();
    assert!(
        missing.is_empty(),
        "conformance tests without a row in docs/field-support.md: {missing:?}"
    );
}
