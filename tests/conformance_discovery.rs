//! Conformance, service discovery: `dns.responseType`, `ipPreference` (mesh, node), DNS
//! answers cached by their TTL, and `awsCloudMap` (the registered sidecars, filtered by the
//! attributes they report). One real-process test per row of docs/field-support.md.
//!
//! DNS names resolve through a small DNS server each test runs on 127.0.0.1:0 (UDP), which
//! the gateway is pointed at with `--dns-resolver`: no test touches the machine's
//! /etc/hosts or resolver, and the server counts queries and changes its answers on demand.
//! Upstreams listen on other loopback addresses (127.0.0.2, 127.0.0.3, ::1).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, spawn_upstreams, Api, Behaviour, Control, Proxy, BIN};
use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA};
use hickory_resolver::proto::rr::{RData, Record, RecordType};

const NAME: &str = "backend.appliance.test";
const GATEWAY: &str = "mesh/m/virtualGateway/gw";

// === a DNS server ===

/// Answers A and AAAA queries for `NAME` from a list the test changes; NXDOMAIN otherwise.
struct DnsServer {
    addr: SocketAddr,
    answers: Arc<Mutex<Vec<IpAddr>>>,
    queries: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl DnsServer {
    fn start(answers: &[&str], ttl: u32) -> DnsServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let socket = rt
            .block_on(tokio::net::UdpSocket::bind("127.0.0.1:0"))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let answers = Arc::new(Mutex::new(
            answers
                .iter()
                .map(|a| a.parse().unwrap())
                .collect::<Vec<IpAddr>>(),
        ));
        let queries = Arc::new(AtomicUsize::new(0));
        let (list, count) = (answers.clone(), queries.clone());
        rt.spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let mut reply = Message::new();
                reply
                    .set_id(query.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(query.op_code())
                    .set_recursion_desired(query.recursion_desired())
                    .set_recursion_available(true)
                    .set_authoritative(true);
                for q in query.queries() {
                    reply.add_query(q.clone());
                    let name = q.name().to_ascii().to_lowercase();
                    if name.trim_end_matches('.') != NAME {
                        reply.set_response_code(ResponseCode::NXDomain);
                        continue;
                    }
                    for ip in list.lock().unwrap().iter().copied() {
                        let rdata = match (ip, q.query_type()) {
                            (IpAddr::V4(v4), RecordType::A) => RData::A(A(v4)),
                            (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(v6)),
                            _ => continue,
                        };
                        reply.add_answer(Record::from_rdata(q.name().clone(), ttl, rdata));
                    }
                }
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, from).await;
                }
            }
        });
        DnsServer {
            addr,
            answers,
            queries,
            _rt: rt,
        }
    }

    fn answer(&self, answers: &[&str]) {
        *self.answers.lock().unwrap() = answers.iter().map(|a| a.parse().unwrap()).collect();
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

// === upstreams on any loopback address ===

/// An HTTP server on `addr` answering its name (`/ping`: 200), closing each connection after
/// its response so that every request needs a new upstream connection. Stops on drop.
struct Upstream {
    addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

impl Upstream {
    fn start(addr: &str, name: &'static str) -> Upstream {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| async move {
                            let body = if req.uri().path() == "/ping" {
                                ""
                            } else {
                                name
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("connection", "close")
                                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                                        body.as_bytes(),
                                    )))
                                    .unwrap(),
                            )
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Upstream { addr, _rt: rt }
    }
}

// === mesh, gateway, requests ===

fn put(api: &Api, path: &str, body: &str) {
    let (s, _, b) = api.call("PUT", path, Some(body));
    assert_eq!(s, 200, "PUT {path} {body}: {b}");
}

/// Mesh `m` (spec `mesh_spec`), node `app` (listener on `port`, `listener_extra` spliced in;
/// `discovery` its serviceDiscovery), service `app.test` provided by it, and gateway `gw`
/// sending everything there.
fn mesh(api: &Api, mesh_spec: &str, port: u16, listener_extra: &str, discovery: &str) {
    put(
        api,
        "/v20190125/meshes",
        &format!(r#"{{"meshName":"m","spec":{mesh_spec}}}"#),
    );
    put(
        api,
        "/v20190125/meshes/m/virtualNodes",
        &node(port, listener_extra, discovery),
    );
    put(
        api,
        "/v20190125/meshes/m/virtualServices",
        r#"{"virtualServiceName":"app.test","spec":{"provider":{"virtualNode":{"virtualNodeName":"app"}}}}"#,
    );
    put(
        api,
        "/v20190125/meshes/m/virtualGateways",
        r#"{"virtualGatewayName":"gw","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}}"#,
    );
    put(
        api,
        "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
        r#"{"gatewayRouteName":"all","spec":{"httpRoute":{"match":{"prefix":"/"},"action":{"target":{"virtualService":{"virtualServiceName":"app.test"}}}}}}"#,
    );
}

fn node(port: u16, listener_extra: &str, discovery: &str) -> String {
    format!(
        r#"{{"virtualNodeName":"app","spec":{}}}"#,
        node_spec(port, listener_extra, discovery)
    )
}

fn node_spec(port: u16, listener_extra: &str, discovery: &str) -> String {
    format!(
        r#"{{"listeners":[{{"portMapping":{{"port":{port},"protocol":"http"}}{listener_extra}}}],"serviceDiscovery":{discovery}}}"#
    )
}

/// Updates node `app`.
fn update_node(api: &Api, port: u16, discovery: &str) {
    let body = format!(r#"{{"spec":{}}}"#, node_spec(port, "", discovery));
    put(api, "/v20190125/meshes/m/virtualNodes/app", &body);
}

/// The gateway, enrolled with the control plane, resolving names with `dns` (if given).
fn gateway(c: &Control, dns: Option<&DnsServer>, state: &std::path::Path) -> Proxy {
    let token = c.join_token(GATEWAY);
    let resolver = dns.map(|d| d.addr.to_string());
    let state = state.to_str().unwrap();
    let mut args = vec![
        "gateway",
        "--control",
        &c.sync,
        "--token",
        &token,
        "--state-dir",
        state,
        "--identity",
        GATEWAY,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    if let Some(r) = &resolver {
        args.extend_from_slice(&["--dns-resolver", r]);
    }
    Proxy::start(&args, &["gateway", "admin"])
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// One request through the gateway: (status, body).
fn get(g: &Proxy) -> (u16, String) {
    match client().get(g.url("gateway", "/")).send() {
        Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// Sends requests until one is answered 200 by `name`; panics after `secs`.
fn until_answered_by(g: &Proxy, name: &str, secs: u64) {
    let start = Instant::now();
    let mut last = (0, String::new());
    while start.elapsed() < Duration::from_secs(secs) {
        last = get(g);
        if last == (200, name.to_owned()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no answer from {name} within {secs} s; last: {last:?}");
}

fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// The gateway's `endpoint_healthy` gauge for `endpoint`, from `/stats`.
fn healthy_gauge(g: &Proxy, endpoint: &str) -> Option<i64> {
    let text = client()
        .get(g.url("admin", "/stats"))
        .send()
        .ok()?
        .text()
        .ok()?;
    let needle = format!("endpoint=\"{endpoint}\"");
    text.lines()
        .filter(|l| l.contains("endpoint_healthy") && l.contains(&needle))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

// === dns ===

/// ENDPOINTS: the name resolves to 127.0.0.2 and 127.0.0.3 and only .2 serves. Both are
/// endpoints with their own health check: .3 fails its own and gets nothing, .2 gets every
/// request; once .3 comes up its check brings it in and requests are balanced over both.
#[test]
fn dns_endpoints_makes_every_address_an_endpoint_with_its_own_health() {
    let dns = DnsServer::start(&["127.0.0.2", "127.0.0.3"], 5);
    let two = Upstream::start("127.0.0.2:0", "two");
    let port = two.addr.port();
    let c = Control::start();
    let api = Api::new(&c);
    let check = r#","healthCheck":{"protocol":"http","path":"/ping","healthyThreshold":2,"unhealthyThreshold":2,"intervalMillis":5000,"timeoutMillis":2000}"#;
    mesh(
        &api,
        "{}",
        port,
        check,
        &format!(r#"{{"dns":{{"hostname":"{NAME}","responseType":"ENDPOINTS"}}}}"#),
    );
    let tmp = tempfile::tempdir().unwrap();
    let g = gateway(&c, Some(&dns), tmp.path());
    let (ep2, ep3) = (format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}"));
    wait_until(".2 passing and .3 failing their own checks", 30, || {
        healthy_gauge(&g, &ep2) == Some(1) && healthy_gauge(&g, &ep3) == Some(0)
    });
    for i in 0..20 {
        assert_eq!(get(&g), (200, "two".to_owned()), "request {i}");
    }
    let _three = Upstream::start(&ep3, "three");
    wait_until(".3 passing its check", 30, || {
        healthy_gauge(&g, &ep3) == Some(1)
    });
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..20 {
        let (status, body) = get(&g);
        assert_eq!(status, 200, "{body}");
        *seen.entry(body).or_default() += 1;
    }
    assert_eq!(seen.len(), 2, "balanced over both addresses: {seen:?}");
    assert!(seen.values().all(|n| *n >= 5), "round robin: {seen:?}");
}

/// LOADBALANCER (the default): one endpoint, the first address of the answer, though both
/// serve. Every request opens a new upstream connection, yet the name is looked up at most
/// once per TTL, not per connection; when the answer changes, traffic follows it.
#[test]
fn dns_loadbalancer_uses_the_first_address_and_caches_the_answer_for_its_ttl() {
    const TTL: u64 = 2;
    let dns = DnsServer::start(&["127.0.0.2", "127.0.0.3"], TTL as u32);
    let two = Upstream::start("127.0.0.2:0", "two");
    let port = two.addr.port();
    let _three = Upstream::start(&format!("127.0.0.3:{port}"), "three");
    let c = Control::start();
    let api = Api::new(&c);
    mesh(
        &api,
        "{}",
        port,
        "",
        &format!(r#"{{"dns":{{"hostname":"{NAME}"}}}}"#),
    );
    let tmp = tempfile::tempdir().unwrap();
    let g = gateway(&c, Some(&dns), tmp.path());
    until_answered_by(&g, "two", 30);
    let (before, start) = (dns.queries(), Instant::now());
    for i in 0..30 {
        assert_eq!(get(&g), (200, "two".to_owned()), "request {i}");
    }
    let (queries, periods) = (dns.queries() - before, start.elapsed().as_secs() / TTL + 1);
    // A lookup is an A and an AAAA query; at most one lookup per TTL.
    assert!(
        queries <= 2 * periods as usize,
        "{queries} DNS queries for 30 new connections in {:?} (TTL {TTL} s)",
        start.elapsed()
    );
    dns.answer(&["127.0.0.3"]);
    until_answered_by(&g, "three", 10 * TTL);
}

/// `ipPreference`: with none set the name's IPv6 address is used (App Mesh's DNS default:
/// IPv6 first); the mesh's IPv4_ONLY applies to the node; the node's own IPv6_ONLY overrides
/// the mesh's.
#[test]
fn dns_ip_preference_of_node_overrides_mesh_and_the_default_prefers_ipv6() {
    let dns = DnsServer::start(&["::1", "127.0.0.2"], 1);
    let six = Upstream::start("[::1]:0", "six");
    let port = six.addr.port();
    let _four = Upstream::start(&format!("127.0.0.2:{port}"), "four");
    let c = Control::start();
    let api = Api::new(&c);
    let plain = format!(r#"{{"dns":{{"hostname":"{NAME}"}}}}"#);
    mesh(&api, "{}", port, "", &plain);
    let tmp = tempfile::tempdir().unwrap();
    let g = gateway(&c, Some(&dns), tmp.path());
    until_answered_by(&g, "six", 30);
    put(
        &api,
        "/v20190125/meshes/m",
        r#"{"spec":{"serviceDiscovery":{"ipPreference":"IPv4_ONLY"}}}"#,
    );
    until_answered_by(&g, "four", 30);
    update_node(
        &api,
        port,
        &format!(r#"{{"dns":{{"hostname":"{NAME}","ipPreference":"IPv6_ONLY"}}}}"#),
    );
    until_answered_by(&g, "six", 30);
    for i in 0..10 {
        assert_eq!(get(&g), (200, "six".to_owned()), "request {i}");
    }
}

// === awsCloudMap ===

/// A sidecar of node `app` in front of `app`, reporting `attributes`.
fn sidecar(c: &Control, state: &std::path::Path, app: SocketAddr, attributes: &[&str]) -> Proxy {
    let identity = "mesh/m/virtualNode/app";
    let token = c.join_token(identity);
    let listen = format!("127.0.0.1:{}", free_port());
    let (state, app) = (state.to_str().unwrap().to_owned(), app.to_string());
    let mut args = vec![
        "sidecar",
        "--control",
        &c.sync,
        "--token",
        &token,
        "--state-dir",
        &state,
        "--identity",
        identity,
        "--app",
        &app,
        "--listen",
        &listen,
        "--egress-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    for a in attributes {
        args.extend_from_slice(&["--attribute", a]);
    }
    Proxy::start(&args, &["sidecar-inbound"])
}

/// awsCloudMap: the node's endpoints are its registered sidecars whose reported attributes
/// include every pair of `attributes` (Cloud Map's DiscoverInstances); changing the pairs
/// changes which sidecars get traffic, and with none every sidecar does.
#[test]
fn cloud_map_endpoints_are_the_registered_sidecars_with_every_queried_attribute() {
    let apps = spawn_upstreams(&[("canary", Behaviour::Color), ("prod", Behaviour::Color)]);
    let c = Control::start();
    let api = Api::new(&c);
    let cloud_map = |attributes: &str| {
        format!(
            r#"{{"awsCloudMap":{{"namespaceName":"appliance.test","serviceName":"app"{attributes}}}}}"#
        )
    };
    mesh(
        &api,
        "{}",
        9080,
        "",
        &cloud_map(r#","attributes":[{"key":"stage","value":"canary"}]"#),
    );
    let tmp = tempfile::tempdir().unwrap();
    let _canary = sidecar(
        &c,
        &tmp.path().join("canary"),
        apps[0],
        &["stage=canary", "team=a"],
    );
    let _prod = sidecar(
        &c,
        &tmp.path().join("prod"),
        apps[1],
        &["stage=prod", "team=a"],
    );
    let g = gateway(&c, None, &tmp.path().join("gw"));
    until_answered_by(&g, "canary", 30);
    for i in 0..10 {
        assert_eq!(get(&g), (200, "canary".to_owned()), "request {i}");
    }
    update_node(
        &api,
        9080,
        &cloud_map(r#","attributes":[{"key":"team","value":"a"},{"key":"stage","value":"prod"}]"#),
    );
    until_answered_by(&g, "prod", 30);
    for i in 0..10 {
        assert_eq!(get(&g), (200, "prod".to_owned()), "request {i}");
    }
    update_node(&api, 9080, &cloud_map(""));
    until_answered_by(&g, "canary", 30);
    until_answered_by(&g, "prod", 30);
}

/// `--attribute` must be KEY=VALUE with Cloud Map's key and value rules, each key once: a
/// sidecar given anything else exits at once with an error naming the flag and the fault.
#[test]
fn a_sidecar_attribute_with_bad_syntax_is_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().to_str().unwrap();
    for (attributes, want) in [
        (&["stage"][..], "is not KEY=VALUE"),
        (&["sta ge=canary"][..], "key \"sta ge\""),
        (&["stage= canary"][..], "value \" canary\""),
        (&["stage=a", "stage=b"][..], "key \"stage\" is given twice"),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "sidecar",
            "--control",
            "127.0.0.1:9",
            "--state-dir",
            state,
            "--identity",
            "mesh/m/virtualNode/app",
            "--app",
            "127.0.0.1:9",
            "--listen",
            "127.0.0.1:9",
        ]);
        for a in attributes {
            cmd.args(["--attribute", a]);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{attributes:?} was accepted: {stderr}"
        );
        assert!(
            stderr.contains("--attribute") && stderr.contains(want),
            "{attributes:?}: the error names the flag and says {want:?}: {stderr}"
        );
    }
}
