//! Conformance, TLS negotiation: how a client proxy talks to a server listener when a
//! client policy applies and when none does (App Mesh's "How App Mesh configures Envoys to
//! negotiate TLS"), what name the server's certificate must carry, and TLS on raw TCP.
//! One real-process test per row of `docs/field-support.md`; leaves come from an appliance
//! CA opened here, so each test picks the names its certificates carry.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::pki::{spiffe, Pki};
use common::{spawn_upstreams, Api, Behaviour, Control, Proxy};

const GW: &str = "mesh/m/virtualGateway/gw";
const NODE: &str = "mesh/m/virtualNode/app";

fn put(api: &Api, path: &str, body: &str) {
    let (s, _, b) = api.call("PUT", path, Some(body));
    assert_eq!(s, 200, "PUT {path} {body}: {b}");
}

/// Mesh `m`: node `app` (its listener and `serviceDiscovery` as JSON, either may be empty)
/// providing `app.local`, behind gateway `gw` (http 8080, `backend_defaults` spliced into
/// its spec) with one route to it.
fn mesh(api: &Api, listener: &str, discovery: &str, backend_defaults: &str) {
    put(api, "/v20190125/meshes", r#"{"meshName":"m"}"#);
    put(
        api,
        "/v20190125/meshes/m/virtualNodes",
        &format!(r#"{{"virtualNodeName":"app","spec":{{"listeners":[{listener}]{discovery}}}}}"#),
    );
    put(
        api,
        "/v20190125/meshes/m/virtualServices",
        r#"{"virtualServiceName":"app.local","spec":{"provider":{"virtualNode":{"virtualNodeName":"app"}}}}"#,
    );
    put(
        api,
        "/v20190125/meshes/m/virtualGateways",
        &format!(
            r#"{{"virtualGatewayName":"gw","spec":{{"listeners":[{{"portMapping":{{"port":8080,"protocol":"http"}}}}]{backend_defaults}}}}}"#
        ),
    );
    put(
        api,
        "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
        r#"{"gatewayRouteName":"all","spec":{"httpRoute":{"match":{"prefix":"/"},"action":{"target":{"virtualService":{"virtualServiceName":"app.local"}}}}}}"#,
    );
}

fn http_listener(tls: &str) -> String {
    format!(r#"{{"portMapping":{{"port":8080,"protocol":"http"}},"tls":{tls}}}"#)
}

/// A STRICT or PERMISSIVE listener TLS block serving the proxy's own leaf.
fn own_cert(mode: &str) -> String {
    format!(r#"{{"mode":"{mode}","certificate":{{"sds":{{"secretName":"app"}}}}}}"#)
}

const DNS_APP: &str = r#","serviceDiscovery":{"dns":{"hostname":"app.local"}}"#;

/// `backendDefaults` whose client policy trusts the appliance CA and lists no SANs.
const TRUST_NO_SANS: &str = r#","backendDefaults":{"clientPolicy":{"tls":{"validation":{"trust":{"sds":{"secretName":"ca"}}}}}}"#;

/// `ctl compile` for `identity` (node `app` at `endpoint`, when given) into `dir`.
fn compile(c: &Control, dir: &Path, identity: &str, endpoint: Option<&str>) -> String {
    let mut args = vec!["compile".to_owned(), "--identity".into(), identity.into()];
    if let Some(e) = endpoint {
        args.extend(["--endpoint".into(), format!("app={e}")]);
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = c.ctl(&a);
    assert_eq!(out.code, 0, "compile {identity}: {}", out.stderr);
    let path = dir.join(format!("{}.json", identity.replace('/', "_")));
    std::fs::write(&path, out.stdout).unwrap();
    path.to_string_lossy().into_owned()
}

/// A sidecar from a compiled file, with an `--egress-tcp` port for each of `egress_tcp`.
fn sidecar(config: &str, app: SocketAddr, creds: &Path, egress_tcp: &[&str]) -> Proxy {
    let (app, creds) = (app.to_string(), creds.to_string_lossy().into_owned());
    let mut args: Vec<String> = [
        "sidecar",
        "--config",
        config,
        "--app",
        &app,
        "--listen",
        "127.0.0.1:0",
        "--egress-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--credentials-dir",
        &creds,
    ]
    .map(String::from)
    .to_vec();
    let mut roles = vec!["sidecar-inbound".to_owned(), "admin".to_owned()];
    for service in egress_tcp {
        args.extend(["--egress-tcp".into(), format!("{service}=127.0.0.1:0")]);
        roles.push(format!("egress-tcp/{service}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
    Proxy::start(&args, &roles)
}

fn gateway(config: &str, creds: &Path) -> Proxy {
    Proxy::start(
        &[
            "gateway",
            "--config",
            config,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--credentials-dir",
            &creds.to_string_lossy(),
        ],
        &["gateway", "admin"],
    )
}

struct Setup {
    _tmp: tempfile::TempDir,
    _control: Control,
    sidecar: Proxy,
    gateway: Proxy,
}

/// The mesh, node `app`'s sidecar holding `node_leaf` (identity and DNS names, from `pki`,
/// or from another CA when `foreign`), and the gateway (leaf from `pki`) compiled to reach
/// that sidecar. `listener_tls` may name `{dir}` for file paths in the temp directory.
fn setup(
    listener_tls: &str,
    discovery: &str,
    backend_defaults: &str,
    node_leaf: (&str, &[&str]),
    foreign: bool,
) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let control = Control::start();
    let api = Api::new(&control);
    let dir = tmp.path().to_string_lossy().into_owned();
    mesh(
        &api,
        &http_listener(&listener_tls.replace("{dir}", &dir)),
        discovery,
        backend_defaults,
    );
    let pki = Pki::open(&tmp.path().join("ca"));
    let other = Pki::open(&tmp.path().join("other-ca"));
    let app = spawn_upstreams(&[("app", Behaviour::Color)])[0];
    let node_creds = if foreign { &other } else { &pki }.credentials(
        &tmp.path().join("node"),
        node_leaf.0,
        node_leaf.1,
    );
    // The node's trust is always the mesh CA's, whoever signed its own leaf.
    std::fs::write(node_creds.join("ca.pem"), pki.ca.bundle_pem()).unwrap();
    let node_cfg = compile(&control, tmp.path(), NODE, None);
    let sidecar = sidecar(&node_cfg, app, &node_creds, &[]);
    let gw_creds = pki.credentials(&tmp.path().join("gw"), GW, &[]);
    let gw_cfg = compile(
        &control,
        tmp.path(),
        GW,
        Some(&sidecar.addrs["sidecar-inbound"]),
    );
    let gateway = gateway(&gw_cfg, &gw_creds);
    Setup {
        _tmp: tmp,
        _control: control,
        sidecar,
        gateway,
    }
}

/// GET / through the gateway: status and body.
fn through_gateway(s: &Setup) -> (u16, String) {
    let r = reqwest::blocking::Client::new()
        .get(format!("http://{}/", s.gateway.addrs["gateway"]))
        .timeout(Duration::from_secs(20))
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
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

// === no client policy ===

#[test]
fn no_client_policy_negotiates_tls_with_a_strict_listener() {
    let s = setup(
        &own_cert("STRICT"),
        DNS_APP,
        "",
        (NODE, &["app.local"]),
        false,
    );
    assert_eq!(through_gateway(&s), (200, "app".into()));
    let sidecar = stats(&s.sidecar);
    // The gateway offered no certificate: with no client policy it has none to offer.
    assert!(
        metric(
            &sidecar,
            "appliance_listener_tls_handshakes_total{listener=\"0.0.0.0_8080\",peer=\"none\"}"
        ) >= 1.0,
        "{sidecar}"
    );
}

#[test]
fn no_client_policy_negotiates_tls_with_a_permissive_listener() {
    let s = setup(
        &own_cert("PERMISSIVE"),
        DNS_APP,
        "",
        (NODE, &["app.local"]),
        false,
    );
    assert_eq!(through_gateway(&s), (200, "app".into()));
    let sidecar = stats(&s.sidecar);
    assert!(
        metric(&sidecar, "appliance_listener_tls_handshakes_total") >= 1.0,
        "{sidecar}"
    );
    assert_eq!(
        metric(&sidecar, "appliance_listener_plaintext_connections_total"),
        0.0,
        "{sidecar}"
    );
}

#[test]
fn no_client_policy_validates_an_own_certificate_against_the_mesh_ca() {
    // The node's leaf is from another CA: the gateway must refuse it, not just encrypt.
    let s = setup(
        &own_cert("STRICT"),
        DNS_APP,
        "",
        (NODE, &["app.local"]),
        true,
    );
    let (status, body) = through_gateway(&s);
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        "upstream connect error or disconnect/reset before headers\n"
    );
    s.gateway.wait_for_log(&["TLS handshake failed"]);
    let gw = stats(&s.gateway);
    assert!(
        gw.contains("reason=\"unknown_ca\""),
        "the failure is counted as an unknown CA: {gw}"
    );
}

#[test]
fn no_client_policy_does_not_validate_a_file_certificate() {
    // A file certificate from a CA the gateway does not trust, named for nothing: App Mesh
    // negotiates TLS with it and does not validate it.
    let tmp = tempfile::tempdir().unwrap();
    let other = Pki::open(&tmp.path().join("ca"));
    let (chain, key) = other.leaf("mesh/x/virtualNode/unrelated", &[]);
    let s = {
        let dir = tmp.path();
        std::fs::write(dir.join("file-cert.pem"), chain).unwrap();
        std::fs::write(dir.join("file-key.pem"), key).unwrap();
        let tls = format!(
            r#"{{"mode":"STRICT","certificate":{{"file":{{"certificateChain":"{0}/file-cert.pem","privateKey":"{0}/file-key.pem"}}}}}}"#,
            dir.display()
        );
        setup(&tls, DNS_APP, "", (NODE, &["app.local"]), false)
    };
    assert_eq!(through_gateway(&s), (200, "app".into()));
    let sidecar = stats(&s.sidecar);
    assert!(
        metric(&sidecar, "appliance_listener_tls_handshakes_total") >= 1.0,
        "{sidecar}"
    );
}

// === the server's name, with no SANs listed ===

#[test]
fn with_no_sans_listed_the_server_certificate_must_carry_its_discovery_name() {
    // Same CA, right trust, but the leaf names another host: refused.
    let s = setup(
        &own_cert("STRICT"),
        DNS_APP,
        TRUST_NO_SANS,
        (NODE, &["other.local"]),
        false,
    );
    let (status, body) = through_gateway(&s);
    assert_eq!(status, 503, "{body}");
    s.gateway.wait_for_log(&["service-discovery name"]);
    assert!(stats(&s.gateway).contains("reason=\"san_mismatch\""));
}

#[test]
fn with_no_sans_listed_a_certificate_naming_the_discovery_name_is_accepted() {
    let s = setup(
        &own_cert("STRICT"),
        DNS_APP,
        TRUST_NO_SANS,
        (NODE, &["app.local"]),
        false,
    );
    assert_eq!(through_gateway(&s), (200, "app".into()));
}

#[test]
fn a_wildcard_certificate_covers_the_discovery_name() {
    let s = setup(
        &own_cert("STRICT"),
        r#","serviceDiscovery":{"dns":{"hostname":"app.apps.local"}}"#,
        TRUST_NO_SANS,
        (NODE, &["*.apps.local"]),
        false,
    );
    assert_eq!(through_gateway(&s), (200, "app".into()));
}

#[test]
fn a_node_without_service_discovery_must_present_its_own_spiffe_id() {
    // Another node's leaf, from the same CA: with no DNS name to check, the SPIFFE id is.
    let s = setup(
        &own_cert("STRICT"),
        "",
        TRUST_NO_SANS,
        ("mesh/m/virtualNode/impostor", &[]),
        false,
    );
    let (status, body) = through_gateway(&s);
    assert_eq!(status, 503, "{body}");
    let ok = setup(&own_cert("STRICT"), "", TRUST_NO_SANS, (NODE, &[]), false);
    assert_eq!(through_gateway(&ok), (200, "app".into()));
}

// === raw TCP ===

/// A TCP server that writes `<name>\n` as soon as a client connects, then echoes.
fn speaks_first(name: &'static str) -> SocketAddr {
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
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Connects, reads the server's first line, echoes `msg`: what came back.
fn greet_and_echo(addr: &str, msg: &str) -> (String, String) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut r = BufReader::new(s);
    let mut first = String::new();
    r.read_line(&mut first).unwrap();
    r.get_mut().write_all(msg.as_bytes()).unwrap();
    let mut back = vec![0u8; msg.len()];
    r.read_exact(&mut back).unwrap();
    (first, String::from_utf8(back).unwrap())
}

/// Mesh `m`: node `db` (tcp 7000, STRICT with client validation against the mesh CA)
/// behind router `vr` as `db.local`, and node `client` with `db.local` as its backend and
/// a client policy offering its own certificate.
fn tcp_mesh(api: &Api) {
    put(api, "/v20190125/meshes", r#"{"meshName":"m"}"#);
    put(
        api,
        "/v20190125/meshes/m/virtualNodes",
        r#"{"virtualNodeName":"db","spec":{"listeners":[{"portMapping":{"port":7000,"protocol":"tcp"},
            "tls":{"mode":"STRICT","certificate":{"sds":{"secretName":"db"}},
                "validation":{"trust":{"sds":{"secretName":"ca"}}}}}],
            "serviceDiscovery":{"dns":{"hostname":"db.local"}}}}"#,
    );
    put(
        api,
        "/v20190125/meshes/m/virtualRouters",
        r#"{"virtualRouterName":"vr","spec":{"listeners":[{"portMapping":{"port":7000,"protocol":"tcp"}}]}}"#,
    );
    put(
        api,
        "/v20190125/meshes/m/virtualRouter/vr/routes",
        r#"{"routeName":"r","spec":{"tcpRoute":{"action":{"weightedTargets":[{"virtualNode":"db","weight":1}]}}}}"#,
    );
    put(
        api,
        "/v20190125/meshes/m/virtualServices",
        r#"{"virtualServiceName":"db.local","spec":{"provider":{"virtualRouter":{"virtualRouterName":"vr"}}}}"#,
    );
    put(
        api,
        "/v20190125/meshes/m/virtualNodes",
        r#"{"virtualNodeName":"client","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],
            "backends":[{"virtualService":{"virtualServiceName":"db.local"}}],
            "backendDefaults":{"clientPolicy":{"tls":{"certificate":{"sds":{"secretName":"client"}},
                "validation":{"trust":{"sds":{"secretName":"ca"}}}}}}}}"#,
    );
}

fn compile_with(c: &Control, dir: &Path, identity: &str, endpoints: &[(&str, &str)]) -> PathBuf {
    let mut args = vec!["compile".to_owned(), "--identity".into(), identity.into()];
    for (node, addr) in endpoints {
        args.extend(["--endpoint".into(), format!("{node}={addr}")]);
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = c.ctl(&a);
    assert_eq!(out.code, 0, "compile {identity}: {}", out.stderr);
    let path = dir.join(format!("{}.json", identity.replace('/', "_")));
    std::fs::write(&path, out.stdout).unwrap();
    path
}

#[test]
fn tcp_egress_originates_mutual_tls_to_a_strict_tcp_listener() {
    let tmp = tempfile::tempdir().unwrap();
    let control = Control::start();
    tcp_mesh(&Api::new(&control));
    let pki = Pki::open(&tmp.path().join("ca"));
    let db_id = "mesh/m/virtualNode/db";
    let client_id = "mesh/m/virtualNode/client";
    let db_cfg = compile_with(&control, tmp.path(), db_id, &[]);
    let db = sidecar(
        &db_cfg.to_string_lossy(),
        speaks_first("db"),
        &pki.credentials(tmp.path(), db_id, &["db.local"]),
        &[],
    );
    let client_cfg = compile_with(
        &control,
        tmp.path(),
        client_id,
        &[("db", &db.addrs["sidecar-inbound"])],
    );
    let client = sidecar(
        &client_cfg.to_string_lossy(),
        speaks_first("client-app"),
        &pki.credentials(tmp.path(), client_id, &[]),
        &["db.local"],
    );
    let egress = &client.addrs["egress-tcp/db.local"];
    assert_eq!(
        greet_and_echo(egress, "over mTLS"),
        ("db\n".into(), "over mTLS".into())
    );
    let s = stats(&db);
    assert!(
        metric(
            &s,
            &format!(
                "appliance_listener_tls_handshakes_total{{listener=\"0.0.0.0_7000\",peer=\"{}\"}}",
                spiffe(client_id)
            )
        ) >= 1.0,
        "the db sidecar saw the client's certificate: {s}"
    );
}

#[test]
fn a_permissive_tcp_listener_serves_an_app_that_speaks_first() {
    let tmp = tempfile::tempdir().unwrap();
    let control = Control::start();
    let api = Api::new(&control);
    put(&api, "/v20190125/meshes", r#"{"meshName":"m"}"#);
    put(
        &api,
        "/v20190125/meshes/m/virtualNodes",
        r#"{"virtualNodeName":"app","spec":{"listeners":[{"portMapping":{"port":7000,"protocol":"tcp"},
            "tls":{"mode":"PERMISSIVE","certificate":{"sds":{"secretName":"app"}}}}]}}"#,
    );
    let pki = Pki::open(&tmp.path().join("ca"));
    let cfg = compile(&control, tmp.path(), NODE, None);
    let p = sidecar(
        &cfg,
        speaks_first("greeting"),
        &pki.credentials(tmp.path(), NODE, &[]),
        &[],
    );
    // A plain client that waits for the server's greeting gets it: the listener stops
    // waiting for a TLS ClientHello and splices in plain text.
    assert_eq!(
        greet_and_echo(&p.addrs["sidecar-inbound"], "plain"),
        ("greeting\n".into(), "plain".into())
    );
    assert_eq!(
        metric(&stats(&p), "appliance_listener_plaintext_connections_total"),
        1.0
    );
}

/// `backendDefaults` whose client policy trusts the appliance CA and lists `sans` exactly.
fn trust_with_sans(sans: &str) -> String {
    format!(
        r#","backendDefaults":{{"clientPolicy":{{"tls":{{"validation":{{"trust":{{"sds":{{"secretName":"ca"}}}},"subjectAlternativeNames":{{"match":{{"exact":[{sans}]}}}}}}}}}}}}"#
    )
}

#[test]
fn listed_subject_alternative_names_accept_a_certificate_carrying_one_of_them() {
    let s = setup(
        &own_cert("STRICT"),
        DNS_APP,
        &trust_with_sans(r#""elsewhere.local","app.local""#),
        (NODE, &["app.local"]),
        false,
    );
    assert_eq!(through_gateway(&s), (200, "app".into()));
}

#[test]
fn listed_subject_alternative_names_refuse_a_certificate_carrying_none_of_them() {
    // The leaf carries the discovery name, but the policy lists another: its list decides.
    let s = setup(
        &own_cert("STRICT"),
        DNS_APP,
        &trust_with_sans(r#""elsewhere.local""#),
        (NODE, &["app.local"]),
        false,
    );
    let (status, body) = through_gateway(&s);
    assert_eq!(status, 503, "{body}");
    assert!(stats(&s.gateway).contains("reason=\"san_mismatch\""));
}
