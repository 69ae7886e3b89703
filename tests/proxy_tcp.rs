//! Raw TCP through `appliance sidecar`, real processes on 127.0.0.1: inbound `tcp` listeners
//! spliced to the app (with the listener's pool and idle timeout), and `--egress-tcp` ports
//! routed by a virtual service's tcp route (weights, idle timeout, connect retries, and a
//! config push that leaves open connections alone).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{Api, Control, Proxy, BIN};

fn ok(api: &Api, method: &str, path: &str, body: &str) {
    let (s, _, b) = api.call(method, path, Some(body));
    assert_eq!(s, 200, "{path}: {b}");
}

/// An echo server that first writes `<name>\n`, so a client knows which one it reached.
fn echo_server(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            std::thread::spawn(move || {
                if s.write_all(format!("{name}\n").as_bytes()).is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A port nothing listens on: connecting to it is refused.
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A virtual node with one tcp listener on `port`, reached at 127.0.0.1:`port` (DNS).
fn tcp_node(api: &Api, name: &str, port: u16, extra: &str) {
    ok(
        api,
        "PUT",
        "/v20190125/meshes/m/virtualNodes",
        &format!(
            r#"{{"virtualNodeName":"{name}","spec":{{"listeners":[{{"portMapping":{{"port":{port},"protocol":"tcp"}}{extra}}}],"serviceDiscovery":{{"dns":{{"hostname":"127.0.0.1"}}}}}}}}"#
        ),
    );
}

/// A router-provided service whose one tcp route has these targets and spec extras.
fn tcp_service(api: &Api, service: &str, router: &str, targets: &[(&str, u32)], extra: &str) {
    ok(
        api,
        "PUT",
        "/v20190125/meshes/m/virtualRouters",
        &format!(
            r#"{{"virtualRouterName":"{router}","spec":{{"listeners":[{{"portMapping":{{"port":9000,"protocol":"tcp"}}}}]}}}}"#
        ),
    );
    ok(
        api,
        "PUT",
        &format!("/v20190125/meshes/m/virtualRouter/{router}/routes"),
        &format!(
            r#"{{"routeName":"r","spec":{}}}"#,
            route_spec(targets, extra)
        ),
    );
    ok(
        api,
        "PUT",
        "/v20190125/meshes/m/virtualServices",
        &format!(
            r#"{{"virtualServiceName":"{service}","spec":{{"provider":{{"virtualRouter":{{"virtualRouterName":"{router}"}}}}}}}}"#
        ),
    );
}

fn route_spec(targets: &[(&str, u32)], extra: &str) -> String {
    let t: Vec<String> = targets
        .iter()
        .map(|(n, w)| format!(r#"{{"virtualNode":"{n}","weight":{w}}}"#))
        .collect();
    format!(
        r#"{{"tcpRoute":{{"action":{{"weightedTargets":[{}]}}{extra}}}}}"#,
        t.join(",")
    )
}

/// A client node whose backends are `services`.
fn client_node(api: &Api, name: &str, services: &[&str], listener: &str) {
    let b: Vec<String> = services
        .iter()
        .map(|s| format!(r#"{{"virtualService":{{"virtualServiceName":"{s}"}}}}"#))
        .collect();
    ok(
        api,
        "PUT",
        "/v20190125/meshes/m/virtualNodes",
        &format!(
            r#"{{"virtualNodeName":"{name}","spec":{{"listeners":[{listener}],"backends":[{}]}}}}"#,
            b.join(",")
        ),
    );
}

fn mesh() -> (Control, Api) {
    let c = Control::start();
    let api = Api::new(&c);
    ok(&api, "PUT", "/v20190125/meshes", r#"{"meshName":"m"}"#);
    (c, api)
}

fn compile(c: &Control, identity: &str, dir: &std::path::Path) -> String {
    let out = c.ctl(&["compile", "--identity", identity]);
    assert_eq!(out.code, 0, "compile: {}", out.stderr);
    let path = dir.join("config.json");
    std::fs::write(&path, &out.stdout).unwrap();
    path.to_string_lossy().into_owned()
}

fn sidecar_args<'a>(config: &'a str, app: &'a str, egress: &'a [String]) -> Vec<&'a str> {
    let mut args = vec![
        "sidecar",
        "--config",
        config,
        "--app",
        app,
        "--listen",
        "127.0.0.1:0",
        "--egress-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    for e in egress {
        args.extend(["--egress-tcp", e.as_str()]);
    }
    args
}

/// Connects and reads the server's name line.
fn hello(addr: &str) -> (BufReader<TcpStream>, String) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s);
    let mut name = String::new();
    r.read_line(&mut name).unwrap();
    (r, name.trim().to_owned())
}

/// Writes `msg` and reads it back.
fn echo(r: &mut BufReader<TcpStream>, msg: &str) -> String {
    r.get_mut().write_all(msg.as_bytes()).unwrap();
    let mut back = vec![0u8; msg.len()];
    r.read_exact(&mut back).unwrap();
    String::from_utf8(back).unwrap()
}

/// Whether the proxy closed the connection: a read gets EOF or a reset, not a timeout.
fn closed(r: &mut BufReader<TcpStream>, within: Duration) -> bool {
    r.get_ref().set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1];
    match r.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn stats(p: &Proxy) -> String {
    reqwest::blocking::get(p.url("admin", "/stats"))
        .unwrap()
        .text()
        .unwrap()
}

fn metric(stats: &str, prefix: &str) -> f64 {
    stats
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn inbound_tcp_listener_splices_to_the_app_within_its_pool_and_idle_timeout() {
    let (c, api) = mesh();
    let app = echo_server("app");
    tcp_node(
        &api,
        "app",
        7000,
        r#","connectionPool":{"tcp":{"maxConnections":1}},"timeout":{"tcp":{"idle":{"unit":"s","value":1}}}"#,
    );
    let tmp = tempfile::tempdir().unwrap();
    let cfg = compile(&c, "mesh/m/virtualNode/app", tmp.path());
    let app = app.to_string();
    let p = Proxy::start(
        &sidecar_args(&cfg, &app, &[]),
        &["sidecar-inbound", "admin"],
    );
    let inbound = p.addrs["sidecar-inbound"].clone();

    let (mut first, name) = hello(&inbound);
    assert_eq!(name, "app");
    assert_eq!(
        echo(&mut first, "ping through the sidecar"),
        "ping through the sidecar"
    );

    // maxConnections 1: a second connection is closed at once and counted.
    let second = TcpStream::connect(&inbound).unwrap();
    let mut second = BufReader::new(second);
    assert!(closed(&mut second, Duration::from_secs(3)), "over the pool");
    let s = stats(&p);
    assert_eq!(
        metric(
            &s,
            "appliance_overflows_total{target=\"cds_ingress_m_app_tcp_7000\""
        ),
        1.0,
        "{s}"
    );
    // Traffic keeps it open past the idle timeout; silence closes it.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(echo(&mut first, "still here"), "still here");
    }
    let quiet = Instant::now();
    assert!(
        closed(&mut first, Duration::from_secs(5)),
        "idle connection"
    );
    assert!(
        quiet.elapsed() >= Duration::from_millis(800),
        "{:?}",
        quiet.elapsed()
    );

    let s = stats(&p);
    let cluster = "cluster=\"cds_ingress_m_app_tcp_7000\"";
    assert_eq!(
        metric(&s, &format!("appliance_tcp_connections_total{{{cluster}}}")),
        1.0,
        "{s}"
    );
    assert_eq!(
        metric(
            &s,
            &format!("appliance_tcp_active_connections{{{cluster}}}")
        ),
        0.0,
        "{s}"
    );
    let bytes_in = metric(
        &s,
        &format!("appliance_tcp_bytes_total{{{cluster},direction=\"in\"}}"),
    );
    assert_eq!(bytes_in, 24.0 + 3.0 * 10.0, "{s}");
}

#[test]
fn egress_tcp_splits_connections_by_weight_retries_connect_failures_and_closes_idle_ones() {
    let (c, api) = mesh();
    let (a, b) = (echo_server("a"), echo_server("b"));
    tcp_node(&api, "a", a.port(), "");
    tcp_node(&api, "b", b.port(), "");
    tcp_node(&api, "dead", dead_port(), "");
    tcp_service(
        &api,
        "split.local",
        "vr-split",
        &[("a", 1), ("b", 1)],
        r#","timeout":{"idle":{"unit":"s","value":1}}"#,
    );
    tcp_service(
        &api,
        "flaky.local",
        "vr-flaky",
        &[("dead", 1), ("b", 1)],
        "",
    );
    client_node(&api, "client", &["split.local", "flaky.local"], "");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = compile(&c, "mesh/m/virtualNode/client", tmp.path());
    let egress = [
        "split.local=127.0.0.1:0".to_owned(),
        "flaky.local=127.0.0.1:0".to_owned(),
    ];
    let app = dead_port().to_string();
    let app = format!("127.0.0.1:{app}");
    let p = Proxy::start(
        &sidecar_args(&cfg, &app, &egress),
        &["egress-tcp/split.local", "egress-tcp/flaky.local", "admin"],
    );

    // 1:1 weights, picked per connection.
    let split = p.addrs["egress-tcp/split.local"].clone();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..200 {
        let (mut conn, name) = hello(&split);
        assert_eq!(echo(&mut conn, "x"), "x");
        *seen.entry(name).or_default() += 1;
    }
    for name in ["a", "b"] {
        let n = seen.get(name).copied().unwrap_or(0);
        // Binomial(200, 1/2): 60..=140 is 5.7 standard deviations out (one run in 10^8).
        assert!((60..=140).contains(&n), "{name}: {n} of 200: {seen:?}");
    }

    // Half the picks land on a refused port: each is retried on the other target.
    let flaky = p.addrs["egress-tcp/flaky.local"].clone();
    for i in 0..40 {
        let (_conn, name) = hello(&flaky);
        assert_eq!(name, "b", "connection {i}");
    }
    let s = stats(&p);
    assert!(metric(&s, "appliance_retries_total") >= 5.0, "{s}");
    assert_eq!(
        metric(
            &s,
            "appliance_tcp_connections_total{cluster=\"cds_egress_m_b_tcp_"
        ),
        40.0 + seen["b"] as f64,
        "{s}"
    );

    // The route's timeout.idle (1 s) closes a silent connection.
    let (mut conn, _) = hello(&split);
    let quiet = Instant::now();
    assert!(closed(&mut conn, Duration::from_secs(5)), "idle connection");
    assert!(
        quiet.elapsed() >= Duration::from_millis(800),
        "{:?}",
        quiet.elapsed()
    );
}

#[test]
fn egress_tcp_for_a_service_the_node_does_not_declare_is_refused_at_startup() {
    let (c, api) = mesh();
    tcp_node(&api, "a", 7001, "");
    tcp_service(&api, "declared.local", "vr", &[("a", 1)], "");
    tcp_service(&api, "other.local", "vr2", &[("a", 1)], "");
    client_node(&api, "client", &["declared.local"], "");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = compile(&c, "mesh/m/virtualNode/client", tmp.path());
    let egress = ["other.local=127.0.0.1:0".to_owned()];
    let out = std::process::Command::new(BIN)
        .args(sidecar_args(&cfg, "127.0.0.1:1", &egress))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--egress-tcp other.local") && stderr.contains("does not declare"),
        "{stderr}"
    );
}

#[test]
fn a_pushed_route_change_leaves_an_open_tcp_connection_alone() {
    let (c, api) = mesh();
    let (a, b) = (echo_server("a"), echo_server("b"));
    tcp_node(&api, "a", a.port(), "");
    tcp_node(&api, "b", b.port(), "");
    tcp_service(&api, "svc.local", "vr", &[("a", 1)], "");
    client_node(
        &api,
        "client",
        &["svc.local"],
        r#"{"portMapping":{"port":7002,"protocol":"tcp"}}"#,
    );
    let identity = "mesh/m/virtualNode/client";
    let out = c.ctl(&[
        "create-join-token",
        "--identity",
        identity,
        "--query",
        "token",
        "--output",
        "text",
    ]);
    assert_eq!(out.code, 0, "create-join-token: {}", out.stderr);
    let token = out.stdout.trim().to_owned();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let app = echo_server("app").to_string();
    let p = Proxy::start(
        &[
            "sidecar",
            "--control",
            &c.sync,
            "--token",
            &token,
            "--state-dir",
            state.to_str().unwrap(),
            "--identity",
            identity,
            "--app",
            &app,
            "--listen",
            "127.0.0.1:0",
            "--egress-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--egress-tcp",
            "svc.local=127.0.0.1:0",
        ],
        &["egress-tcp/svc.local", "admin"],
    );
    let egress = p.addrs["egress-tcp/svc.local"].clone();
    let (mut open, name) = hello(&egress);
    assert_eq!(name, "a");
    assert_eq!(echo(&mut open, "before"), "before");

    ok(
        &api,
        "PUT",
        "/v20190125/meshes/m/virtualRouter/vr/routes/r",
        &format!(r#"{{"spec":{}}}"#, route_spec(&[("b", 1)], "")),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, name) = hello(&egress);
        if name == "b" {
            break;
        }
        assert!(Instant::now() < deadline, "the new route never applied");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The connection opened on the old route still reaches a, both ways.
    assert_eq!(echo(&mut open, "after the push"), "after the push");
}

// === TLS on a tcp listener ===

const TLS_NODE: &str = "mesh/m/virtualNode/app";

/// A credentials directory for `TLS_NODE` (leaf with DNS name `localhost`) from a fresh CA;
/// returns it and the CA bundle.
fn tls_credentials(root: &std::path::Path) -> (std::path::PathBuf, String) {
    use appliance::ca::{Ca, CaConfig, DEFAULT_TRUST_DOMAIN};
    let config = CaConfig {
        trust_domain: DEFAULT_TRUST_DOMAIN.into(),
        region: "us-east-1".into(),
        account: "000000000000".into(),
        leaf_ttl: time::Duration::hours(24),
    };
    let now = time::OffsetDateTime::now_utc();
    let ca = Ca::open_or_create(&root.join("ca"), config, now).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let id = appliance::model::Identity::parse(TLS_NODE).unwrap();
    let leaf = ca
        .issue_leaf(&id, &csr, &["localhost".to_owned()], now)
        .unwrap();
    let dir = root.join("creds");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), &leaf.chain_pem).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.bundle_pem()).unwrap();
    (dir, ca.bundle_pem())
}

#[test]
fn strict_tls_on_a_tcp_listener_terminates_then_splices_and_refuses_plain_text() {
    use appliance::compile::{
        CertificateSource, ListenerConfig, ListenerRole, ListenerTlsConfig, ProxyConfig,
    };
    use appliance::model::spec::{ListenerTlsMode, PortProtocol};
    let tmp = tempfile::tempdir().unwrap();
    let (creds, bundle) = tls_credentials(tmp.path());
    let listener = ListenerConfig {
        port: 7443,
        protocol: PortProtocol::Tcp,
        per_request_timeout_ms: 15_000,
        idle_timeout_ms: 300_000,
        role: ListenerRole::Inbound { health_check: None },
        tls: Some(ListenerTlsConfig {
            mode: ListenerTlsMode::Strict,
            certificate: CertificateSource::Own,
            validation: None,
        }),
        connection_pool: None,
    };
    let config = ProxyConfig::new(
        appliance::model::Identity::parse(TLS_NODE).unwrap(),
        1,
        vec![listener],
        Default::default(),
        Default::default(),
    )
    .unwrap();
    let path = tmp.path().join("config.json");
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    let app = echo_server("app").to_string();
    let path = path.to_string_lossy().into_owned();
    let mut args = sidecar_args(&path, &app, &[]);
    let creds = creds.to_string_lossy().into_owned();
    args.extend(["--credentials-dir", creds.as_str()]);
    let p = Proxy::start(&args, &["sidecar-inbound"]);
    let inbound = p.addrs["sidecar-inbound"].clone();

    // A TLS client gets the app's bytes, decrypted by the sidecar and spliced.
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(client), name).unwrap();
    let tcp = TcpStream::connect(&inbound).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    let mut line = String::new();
    tls.read_line(&mut line).unwrap();
    assert_eq!(line, "app\n");
    tls.get_mut().write_all(b"secret").unwrap();
    let mut back = [0u8; 6];
    tls.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"secret");

    // STRICT: plain text never reaches the app.
    let mut plain = TcpStream::connect(&inbound).unwrap();
    plain.write_all(b"\x00hello").unwrap();
    assert!(closed(&mut BufReader::new(plain), Duration::from_secs(5)));
}
