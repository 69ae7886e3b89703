//! mTLS in the data plane, with the real binary on loopback: leaves issued by the appliance
//! CA (through the library, on keys made here), written to `--credentials-dir`s, and checked
//! with real clients (`curl`, `openssl s_client`, rustls through reqwest).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appliance::ca::CERTS_DIR;
use appliance::compile::{
    CertificateSource, ClientTlsConfig, ClusterConfig, GatewayRouteConfig, ListenerConfig,
    ListenerRole, ListenerTlsConfig, PeerName, ProxyConfig, RetryConfig, RouteConfig, ServerCheck,
    ServiceConfig, TrustSource, ValidationConfig, WeightedCluster,
};
use appliance::model::spec::{
    HttpGatewayRouteMatch, HttpRouteMatch, ListenerTlsMode, PortProtocol,
};
use appliance::model::Identity;
use common::pki::{spiffe, write_credentials, Pki};
use common::{render, spawn_upstreams, Api, Behaviour, Control, Proxy};
use serde_json::{json, Value};

const D: &str = "default.svc.cluster.local";
const MESH: &str = "ColorApp";
const GATEWAY: &str = "mesh/ColorApp/virtualGateway/colorgateway-vg";

// === clients ===

fn https(bundle: &str) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .tls_built_in_root_certs(false);
    for cert in reqwest::Certificate::from_pem_bundle(bundle.as_bytes()).unwrap() {
        b = b.add_root_certificate(cert);
    }
    b.build().unwrap()
}

fn port(addr: &str) -> u16 {
    addr.parse::<SocketAddr>().unwrap().port()
}

/// Runs curl; returns (exit code, HTTP status or 0, body).
fn curl(args: &[&str]) -> (i32, u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        out.status.code().unwrap_or(-1),
        code.trim().parse().unwrap_or(0),
        format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

fn stats(proxy: &Proxy) -> String {
    reqwest::blocking::get(proxy.url("admin", "/stats"))
        .unwrap()
        .text()
        .unwrap()
}

// === the walkthrough, through the API ===

fn call(api: &Api, method: &str, path: &str, body: Value) {
    let (s, _, b) = api.call(method, path, Some(&body.to_string()));
    assert_eq!(s, 200, "{method} {path}: {b}");
}

/// A fixture's `spec`, its jq variables bound.
fn spec(file: &str, vars: &[(&str, &str)]) -> Value {
    let v: Value = serde_json::from_str(&render(file, vars)).unwrap();
    v["spec"].clone()
}

fn host(color: &str) -> String {
    format!("colorteller-{color}.{D}")
}

/// `mesh.sh up`: the whole mesh; the gateway listener is STRICT already.
fn mesh_up(api: &Api, cert_arn: &str) {
    let m = format!("/v20190125/meshes/{MESH}");
    call(
        api,
        "PUT",
        "/v20190125/meshes",
        json!({"meshName": MESH, "spec": {}}),
    );
    for color in ["white", "blue", "black", "red"] {
        let s = spec(
            &format!("colorteller-{color}-vn.json"),
            &[("DNS_HOSTNAME", &host(color))],
        );
        call(
            api,
            "PUT",
            &format!("{m}/virtualNodes"),
            json!({"virtualNodeName": format!("colorteller-{color}-vn"), "spec": s}),
        );
    }
    for i in 1..=2 {
        let vr = format!("colorteller-vr-{i}");
        call(
            api,
            "PUT",
            &format!("{m}/virtualRouters"),
            json!({"virtualRouterName": vr, "spec": spec(&format!("colorteller-vr-{i}.json"), &[])}),
        );
        call(
            api,
            "PUT",
            &format!("{m}/virtualRouter/{vr}/routes"),
            json!({"routeName": format!("colorteller-route-{i}"), "spec": spec(&format!("colorteller-route-{i}.json"), &[])}),
        );
        call(
            api,
            "PUT",
            &format!("{m}/virtualServices"),
            json!({"virtualServiceName": format!("colorteller-{i}.{D}"), "spec": spec(&format!("colorteller-vs-{i}.json"), &[])}),
        );
    }
    call(
        api,
        "PUT",
        &format!("{m}/virtualGateways"),
        json!({"virtualGatewayName": "colorgateway-vg", "spec": spec("colorgateway-vg.json", &[("CERTIFICATE_ARN", cert_arn)])}),
    );
    for i in 1..=2 {
        let vs = format!("colorteller-{i}.{D}");
        call(
            api,
            "PUT",
            &format!("{m}/virtualGateway/colorgateway-vg/gatewayRoutes"),
            json!({"gatewayRouteName": format!("colorgateway-route-{i}"), "spec": spec(&format!("colorgateway-route-{i}.json"), &[("VIRTUALSERVICE_NAME", &vs)])}),
        );
    }
}

/// `update-virtual-node` with the color's `-vn-tls.json`.
fn node_tls(api: &Api, color: &str, cert_arn: &str) {
    let s = spec(
        &format!("colorteller-{color}-vn-tls.json"),
        &[
            ("DNS_HOSTNAME", &host(color)),
            ("CERTIFICATE_ARN", cert_arn),
        ],
    );
    call(
        api,
        "PUT",
        &format!("/v20190125/meshes/{MESH}/virtualNodes/colorteller-{color}-vn"),
        json!({"spec": s}),
    );
}

fn ctl_json(c: &Control, args: &[&str]) -> Value {
    let out = c.ctl(args);
    assert_eq!(out.code, 0, "ctl {args:?}: {}", out.stderr);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("ctl {args:?}: {e}: {}", out.stdout))
}

fn compile(c: &Control, identity: &str, endpoints: &[(String, String)], dir: &Path) -> String {
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

fn start_gateway(config: &str, creds: &Path) -> Proxy {
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

fn start_sidecar(config: &str, app: SocketAddr, creds: &Path) -> Proxy {
    Proxy::start(
        &[
            "sidecar",
            "--config",
            config,
            "--app",
            &app.to_string(),
            "--listen",
            "127.0.0.1:0",
            "--egress-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--credentials-dir",
            &creds.to_string_lossy(),
        ],
        &["sidecar-inbound", "admin"],
    )
}

/// GETs `path` on the gateway `n` times; returns body (or `503: <reason>`) -> count.
fn tally(
    client: &reqwest::blocking::Client,
    gateway: &str,
    path: &str,
    n: usize,
) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = client
            .get(format!("https://localhost:{}{path}", port(gateway)))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().unwrap();
        let key = if status == 200 {
            body
        } else {
            format!("{status}: {}", body.trim())
        };
        *seen.entry(key).or_default() += 1;
    }
    seen
}

#[test]
fn walkthrough_tls_stages_strict_gateway_then_partial_then_full_tls() {
    let c = Control::start();
    let api = Api::new(&c);
    let ca_arn = ctl_json(&c, &["describe-certificate-authority"])["CertificateAuthority"]["Arn"]
        .as_str()
        .unwrap()
        .to_owned();
    // The walkthrough's certificate is for *.<domain>; localhost is added so curl can check it.
    let cert_arn = ctl_json(
        &c,
        &[
            "request-certificate",
            "--domain-name",
            &format!("*.{D}"),
            "--subject-alternative-names",
            "localhost",
        ],
    )["CertificateArn"]
        .as_str()
        .unwrap()
        .to_owned();
    mesh_up(&api, &cert_arn);

    let pki = Pki::open(&c.data_dir.join(CERTS_DIR));
    let tmp = tempfile::tempdir().unwrap();
    let bundle = pki.ca.bundle_pem();
    let ca_pem = tmp.path().join("ca.pem");
    std::fs::write(&ca_pem, &bundle).unwrap();
    let names = [format!("*.{D}"), "localhost".to_owned()];
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let gw_creds = pki.credentials(tmp.path(), GATEWAY, &names);
    let colors = ["white", "blue", "black", "red"];
    let apps: HashMap<&str, SocketAddr> = colors
        .into_iter()
        .zip(spawn_upstreams(&colors.map(|c| (c, Behaviour::Color))))
        .collect();
    let node = |color: &str| format!("colorteller-{color}-vn");
    let direct: Vec<(String, String)> = colors
        .iter()
        .map(|c| (node(c), apps[c].to_string()))
        .collect();

    // Stage `up`: the gateway's listener is STRICT; nodes are plain text.
    let cfg = compile(&c, GATEWAY, &direct, tmp.path());
    let gateway = start_gateway(&cfg, &gw_creds);
    let gw = gateway.addrs["gateway"].clone();
    let url = format!("https://localhost:{}/color1/tell", port(&gw));
    let (code, status, body) = curl(&["--cacert", &ca_pem.to_string_lossy(), &url]);
    assert_eq!((code, status), (0, 200), "curl over TLS: {body}");
    assert!(
        body.starts_with("white") || body.starts_with("blue"),
        "{body}"
    );
    // Plain text to a STRICT listener is refused, with a reason for an HTTP client.
    let plain = reqwest::blocking::get(format!("http://{gw}/color1/tell")).unwrap();
    assert_eq!(plain.status(), 400);
    assert!(plain.text().unwrap().contains("requires TLS"));
    let (code, _, _) = curl(&[&format!("http://{gw}/color1/tell")]);
    assert_eq!(code, 0, "curl got the 400 answer, not a hang");
    // openssl shows the chain: the leaf and the intermediate that signed it, verified.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &gw,
            "-servername",
            "localhost",
            "-showcerts",
            "-CAfile",
        ])
        .arg(&ca_pem)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" 0 s:") && text.contains(" 1 s:"), "{text}");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(
        text.contains("appliance intermediate") || text.contains("i:"),
        "{text}"
    );
    let s = stats(&gateway);
    assert!(
        s.contains(
            "appliance_listener_tls_handshakes_total{listener=\"0.0.0.0_9080\",peer=\"none\"}"
        ),
        "{s}"
    );
    assert!(s.contains("appliance_listener_tls_failures_total{listener=\"0.0.0.0_9080\",reason=\"plaintext\"} 2"), "{s}");
    drop(gateway);

    // Stage `partial_tls_up`: white terminates TLS; the gateway originates TLS to every backend.
    node_tls(&api, "white", &cert_arn);
    call(
        &api,
        "PUT",
        &format!("/v20190125/meshes/{MESH}/virtualGateways/colorgateway-vg"),
        json!({"spec": spec("colorgateway-vg-backendDefaults.json", &[("CERTIFICATE_ARN", &cert_arn), ("ROOT_CA_ARN", &ca_arn)])}),
    );
    let mut sidecars = HashMap::new();
    let mut sidecar = |color: &str| {
        let id = format!("mesh/{MESH}/virtualNode/{}", node(color));
        let creds = pki.credentials(tmp.path(), &id, &[&format!("*.{D}")]);
        let cfg = compile(&c, &id, &[], tmp.path());
        let p = start_sidecar(&cfg, apps[color], &creds);
        let addr = p.addrs["sidecar-inbound"].clone();
        sidecars.insert(color.to_owned(), p);
        addr
    };
    let white = sidecar("white");
    let mut eps = direct.clone();
    eps[0].1 = white.clone();
    let cfg = compile(&c, GATEWAY, &eps, tmp.path());
    let gateway = start_gateway(&cfg, &gw_creds);
    let client = https(&bundle);
    // Blue's endpoint is new and its health check, which goes over the cluster's TLS, never
    // passes; like Envoy's new hosts it never takes a request, so every answer is white's.
    let blue_failures = format!(
        "appliance_upstream_tls_failures_total{{cluster=\"cds_egress_{MESH}_colorteller-blue-vn_http_9080\""
    );
    // Until white's first check passes too, every endpoint is failing and panic mode would
    // send requests to blue as well.
    let white_healthy = format!(
        "appliance_endpoint_healthy{{cluster=\"cds_egress_{MESH}_colorteller-white-vn_http_9080\",endpoint=\"{white}\"}} 1"
    );
    let start = Instant::now();
    loop {
        let s = stats(&gateway);
        if s.contains(&blue_failures) && s.contains(&white_healthy) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "blue's check never failed its TLS handshake, or white's never passed: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = tally(&client, &gateway.addrs["gateway"], "/color1/tell", 30);
    eprintln!("partial TLS, /color1/tell x30: {seen:?}");
    assert_eq!(seen.get("white"), Some(&30), "{seen:?}");
    let s = stats(&gateway);
    let white_cluster = format!("cds_egress_{MESH}_colorteller-white-vn_http_9080");
    let white_id = spiffe(&format!("mesh/{MESH}/virtualNode/colorteller-white-vn"));
    assert!(s.contains(&format!("appliance_upstream_tls_handshakes_total{{cluster=\"{white_cluster}\",peer=\"{white_id}\"}}")), "{s}");
    assert!(s.contains(&format!("appliance_upstream_tls_failures_total{{cluster=\"cds_egress_{MESH}_colorteller-blue-vn_http_9080\"")), "{s}");
    drop(gateway);

    // Stage `full_tls_up`: every node terminates TLS; every hop is TLS.
    for color in ["blue", "black", "red"] {
        node_tls(&api, color, &cert_arn);
    }
    let mut eps = vec![(node("white"), white)];
    for color in ["blue", "black", "red"] {
        eps.push((node(color), sidecar(color)));
    }
    let cfg = compile(&c, GATEWAY, &eps, tmp.path());
    let gateway = start_gateway(&cfg, &gw_creds);
    let gw = gateway.addrs["gateway"].clone();
    // Each endpoint takes requests from its first passing check (Envoy's new hosts).
    let start = Instant::now();
    loop {
        let s = stats(&gateway);
        let pending: Vec<&(String, String)> = eps
            .iter()
            .filter(|(n, addr)| {
                !s.contains(&format!(
                    "appliance_endpoint_healthy{{cluster=\"cds_egress_{MESH}_{n}_http_9080\",endpoint=\"{addr}\"}} 1"
                ))
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never passed a check: {pending:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut seen = tally(&client, &gw, "/color1/tell", 100);
    seen.extend(tally(&client, &gw, "/color2/tell", 100));
    let mut keys: Vec<&String> = seen.keys().collect();
    keys.sort();
    assert_eq!(keys, ["black", "blue", "red", "white"], "{seen:?}");
    let s = stats(&gateway);
    for color in colors {
        let id = spiffe(&format!("mesh/{MESH}/virtualNode/{}", node(color)));
        assert!(s.contains(&format!("peer=\"{id}\"")), "{color}: {s}");
    }
    assert!(!s.contains("appliance_upstream_tls_failures_total"), "{s}");
    // Each sidecar's listener saw the gateway's handshakes (no client certificate: the
    // walkthrough's policy has none).
    let s = stats(&sidecars["white"]);
    assert!(
        s.contains(
            "appliance_listener_tls_handshakes_total{listener=\"0.0.0.0_9080\",peer=\"none\"}"
        ),
        "{s}"
    );
}

// === hand-made configs for one gateway and one sidecar ===

const GW: &str = "mesh/m/virtualGateway/gw";
const NODE: &str = "mesh/m/virtualNode/n";

fn own_trust(sans: &[&str]) -> ValidationConfig {
    ValidationConfig {
        trust: TrustSource::Own,
        subject_alternative_names: sans.iter().map(|s| s.to_string()).collect(),
    }
}

fn gateway_config(
    tls: ListenerTlsConfig,
    endpoint: &str,
    cluster_tls: Option<ClientTlsConfig>,
) -> ProxyConfig {
    let listener = ListenerConfig {
        port: 9080,
        protocol: PortProtocol::Http,
        per_request_timeout_ms: 15_000,
        idle_timeout_ms: 300_000,
        role: ListenerRole::Gateway {
            routes: vec![GatewayRouteConfig {
                name: "all".into(),
                r#match: HttpGatewayRouteMatch {
                    prefix: Some("/".into()),
                    ..Default::default()
                },
                rewrite: None,
                service: "svc".into(),
            }],
            health_check: None,
        },
        tls: Some(tls),
        connection_pool: None,
    };
    let route = RouteConfig {
        name: "virtualNode/n".into(),
        r#match: HttpRouteMatch {
            prefix: Some("/".into()),
            ..Default::default()
        },
        targets: vec![WeightedCluster {
            cluster: "c".into(),
            weight: 1,
        }],
        per_request_timeout_ms: 15_000,
        idle_timeout_ms: 300_000,
        retry: RetryConfig::app_mesh_default(),
    };
    let cluster = ClusterConfig {
        node: "n".into(),
        port: 9080,
        protocol: PortProtocol::Http,
        endpoints: vec![endpoint.to_owned()],
        dns: None,
        health_check: None,
        tls: cluster_tls,
        outlier_detection: None,
        connection_pool: None,
        unavailable: None,
    };
    ProxyConfig::new(
        Identity::parse(GW).unwrap(),
        1,
        vec![listener],
        BTreeMap::from([(
            "svc".to_owned(),
            ServiceConfig {
                routes: vec![route],
            },
        )]),
        BTreeMap::from([("c".to_owned(), cluster)]),
    )
    .unwrap()
}

fn sidecar_config(tls: ListenerTlsConfig) -> ProxyConfig {
    let listener = ListenerConfig {
        port: 9080,
        protocol: PortProtocol::Http,
        per_request_timeout_ms: 15_000,
        idle_timeout_ms: 300_000,
        role: ListenerRole::Inbound { health_check: None },
        tls: Some(tls),
        connection_pool: None,
    };
    ProxyConfig::new(
        Identity::parse(NODE).unwrap(),
        1,
        vec![listener],
        BTreeMap::new(),
        BTreeMap::new(),
    )
    .unwrap()
}

fn write_config(dir: &Path, name: &str, config: &ProxyConfig) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string(config).unwrap()).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn mutual_tls_listener_refuses_a_foreign_ca_an_unlisted_san_and_no_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::open(&tmp.path().join("ca"));
    let other = Pki::open(&tmp.path().join("other-ca"));
    let app = spawn_upstreams(&[("app", Behaviour::Color)])[0];
    let allowed = "mesh/m/virtualNode/frontend";
    let creds = pki.credentials(tmp.path(), GW, &["localhost"]);
    let config = gateway_config(
        ListenerTlsConfig {
            mode: ListenerTlsMode::Strict,
            certificate: CertificateSource::Own,
            validation: Some(own_trust(&[&spiffe(allowed)])),
        },
        &app.to_string(),
        None,
    );
    let gateway = start_gateway(&write_config(tmp.path(), "gw.json", &config), &creds);
    let url = format!("https://localhost:{}/x", port(&gateway.addrs["gateway"]));
    let ca_pem = creds.join("ca.pem").to_string_lossy().into_owned();
    let client = |p: &Pki, identity: &str, name: &str| {
        let (chain, key) = p.leaf(identity, &[]);
        let (c, k) = (
            tmp.path().join(format!("{name}.pem")),
            tmp.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, chain).unwrap();
        std::fs::write(&k, key).unwrap();
        (
            c.to_string_lossy().into_owned(),
            k.to_string_lossy().into_owned(),
        )
    };
    let (good_c, good_k) = client(&pki, allowed, "good");
    let (code, status, body) = curl(&[
        "--cacert", &ca_pem, "--cert", &good_c, "--key", &good_k, &url,
    ]);
    assert_eq!((code, status, body.trim()), (0, 200, "app"));

    let (foreign_c, foreign_k) = client(&other, allowed, "foreign");
    let (code, status, body) = curl(&[
        "--cacert", &ca_pem, "--cert", &foreign_c, "--key", &foreign_k, &url,
    ]);
    assert!(
        code != 0 && status == 0,
        "a certificate from another CA: {code} {status} {body}"
    );
    let (unlisted_c, unlisted_k) = client(&pki, "mesh/m/virtualNode/intruder", "unlisted");
    let (code, status, body) = curl(&[
        "--cacert",
        &ca_pem,
        "--cert",
        &unlisted_c,
        "--key",
        &unlisted_k,
        &url,
    ]);
    assert!(
        code != 0 && status == 0,
        "a SAN the policy does not list: {code} {status} {body}"
    );
    let (code, status, body) = curl(&["--cacert", &ca_pem, &url]);
    assert!(
        code != 0 && status == 0,
        "no client certificate: {code} {status} {body}"
    );

    let s = stats(&gateway);
    for (reason, n) in [
        ("unknown_ca", 1),
        ("san_mismatch", 1),
        ("no_peer_certificate", 1),
    ] {
        assert!(s.contains(&format!("appliance_listener_tls_failures_total{{listener=\"0.0.0.0_9080\",reason=\"{reason}\"}} {n}")), "{reason}: {s}");
    }
    assert!(
        s.contains(&format!(
            "appliance_listener_tls_handshakes_total{{listener=\"0.0.0.0_9080\",peer=\"{}\"}} 1",
            spiffe(allowed)
        )),
        "{s}"
    );
}

#[test]
fn permissive_listener_takes_tls_and_plain_text_on_one_port() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::open(&tmp.path().join("ca"));
    let app = spawn_upstreams(&[("app", Behaviour::Color)])[0];
    let creds = pki.credentials(tmp.path(), GW, &["localhost"]);
    let config = gateway_config(
        ListenerTlsConfig {
            mode: ListenerTlsMode::Permissive,
            certificate: CertificateSource::Own,
            validation: None,
        },
        &app.to_string(),
        None,
    );
    let gateway = start_gateway(&write_config(tmp.path(), "gw.json", &config), &creds);
    let gw = gateway.addrs["gateway"].clone();
    let tls = https(&pki.ca.bundle_pem());
    let plain = reqwest::blocking::Client::new();
    for _ in 0..5 {
        let r = tls
            .get(format!("https://localhost:{}/x", port(&gw)))
            .send()
            .unwrap();
        assert_eq!(r.text().unwrap(), "app");
        let r = plain.get(format!("http://{gw}/x")).send().unwrap();
        assert_eq!(r.text().unwrap(), "app");
    }
    // h2 over TLS is offered only where the listener speaks HTTP/2; curl negotiates 1.1 here.
    let (code, status, _) = curl(&[
        "--cacert",
        &creds.join("ca.pem").to_string_lossy(),
        &format!("https://localhost:{}/x", port(&gw)),
    ]);
    assert_eq!((code, status), (0, 200));
    let s = stats(&gateway);
    assert!(
        s.contains("appliance_listener_plaintext_connections_total{listener=\"0.0.0.0_9080\"}"),
        "{s}"
    );
    assert!(
        s.contains(
            "appliance_listener_tls_handshakes_total{listener=\"0.0.0.0_9080\",peer=\"none\"}"
        ),
        "{s}"
    );
}

#[test]
fn upstream_without_credentials_gets_a_clear_503_until_they_arrive() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::open(&tmp.path().join("ca"));
    let app = spawn_upstreams(&[("app", Behaviour::Color)])[0];
    // A sidecar with a STRICT mTLS listener, and a PERMISSIVE gateway whose cluster needs
    // the gateway's own credentials, which are missing at first.
    let sc_creds = pki.credentials(tmp.path(), NODE, &[]);
    let sidecar = start_sidecar(
        &write_config(
            tmp.path(),
            "sc.json",
            &sidecar_config(ListenerTlsConfig {
                mode: ListenerTlsMode::Strict,
                certificate: CertificateSource::Own,
                validation: Some(own_trust(&[&spiffe(GW)])),
            }),
        ),
        app,
        &sc_creds,
    );
    let config = gateway_config(
        ListenerTlsConfig {
            mode: ListenerTlsMode::Disabled,
            certificate: CertificateSource::Own,
            validation: None,
        },
        &sidecar.addrs["sidecar-inbound"],
        Some(ClientTlsConfig {
            certificate: Some(CertificateSource::Own),
            server: ServerCheck::Verify {
                validation: own_trust(&[&spiffe(NODE)]),
                // The listed SANs are what is checked; this name is not used.
                expected: PeerName::Dns("unused.local".into()),
            },
        }),
    );
    let gw_cfg = write_config(tmp.path(), "gw.json", &config);
    let gateway = Proxy::start(
        &[
            "gateway",
            "--config",
            &gw_cfg,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &["gateway", "admin"],
    );
    let r = reqwest::blocking::get(gateway.url("gateway", "/x")).unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("x-appliance-proxy"));
    assert_eq!(
        r.text().unwrap(),
        "upstream connect error or disconnect/reset before headers\n"
    );
    gateway.wait_for_log(&["no TLS to", "not loaded yet"]);
    drop(gateway);
    // With credentials: through, mutual TLS both ways with SANs checked both ways.
    let gw_creds = pki.credentials(tmp.path(), GW, &[]);
    let gateway = Proxy::start(
        &[
            "gateway",
            "--config",
            &gw_cfg,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--credentials-dir",
            &gw_creds.to_string_lossy(),
        ],
        &["gateway", "admin"],
    );
    let r = reqwest::blocking::get(gateway.url("gateway", "/x")).unwrap();
    assert_eq!(r.text().unwrap(), "app");
    let s = stats(&sidecar);
    assert!(s.contains(&format!("peer=\"{}\"", spiffe(GW))), "{s}");
}

#[test]
fn swapping_credentials_and_rotating_the_ca_under_load_fails_no_request() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::open(&tmp.path().join("ca"));
    let app = spawn_upstreams(&[("app", Behaviour::Color)])[0];
    let gw_creds = pki.credentials(tmp.path(), GW, &["localhost"]);
    let sc_creds = pki.credentials(tmp.path(), NODE, &[]);
    // Renewals from the same CA, then a rotated root whose bundle carries both roots.
    let renewed = [pki.leaf(GW, &["localhost"]), pki.leaf(NODE, &[])];
    pki.ca.rotate_root(time::OffsetDateTime::now_utc()).unwrap();
    let both_bundle = pki.ca.bundle_pem();
    let rotated = [pki.leaf(GW, &["localhost"]), pki.leaf(NODE, &[])];
    let new_root = pki.ca.root_certs().last().unwrap().clone();

    let sidecar = start_sidecar(
        &write_config(
            tmp.path(),
            "sc.json",
            &sidecar_config(ListenerTlsConfig {
                mode: ListenerTlsMode::Strict,
                certificate: CertificateSource::Own,
                validation: Some(own_trust(&[&spiffe(GW)])),
            }),
        ),
        app,
        &sc_creds,
    );
    let config = gateway_config(
        ListenerTlsConfig {
            mode: ListenerTlsMode::Strict,
            certificate: CertificateSource::Own,
            validation: None,
        },
        &sidecar.addrs["sidecar-inbound"],
        Some(ClientTlsConfig {
            certificate: Some(CertificateSource::Own),
            server: ServerCheck::Verify {
                validation: own_trust(&[&spiffe(NODE)]),
                // The listed SANs are what is checked; this name is not used.
                expected: PeerName::Dns("unused.local".into()),
            },
        }),
    );
    let gateway = start_gateway(&write_config(tmp.path(), "gw.json", &config), &gw_creds);
    let url = format!("https://localhost:{}/x", port(&gateway.addrs["gateway"]));

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for i in 0..4 {
        let (stop, ok, failed, url, bundle) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            url.clone(),
            both_bundle.clone(),
        );
        load.push(std::thread::spawn(move || {
            // Half keep connections alive; half open a new one (a new handshake) per request.
            let mut b = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .tls_built_in_root_certs(false);
            for cert in reqwest::Certificate::from_pem_bundle(bundle.as_bytes()).unwrap() {
                b = b.add_root_certificate(cert);
            }
            if i % 2 == 1 {
                b = b.pool_max_idle_per_host(0);
            }
            let client = b.build().unwrap();
            let mut first_error = None;
            while !stop.load(Ordering::Relaxed) {
                match client
                    .get(&url)
                    .send()
                    .and_then(|r| Ok((r.status(), r.text()?)))
                {
                    Ok((s, body)) if s == 200 && body == "app" => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(format!("{other:?}"));
                    }
                }
            }
            first_error
        }));
    }
    let began = Instant::now();
    let at =
        |secs: u64| std::thread::sleep(Duration::from_secs(secs).saturating_sub(began.elapsed()));
    at(4);
    write_credentials(&gw_creds, Some((&renewed[0].0, &renewed[0].1)), None);
    write_credentials(&sc_creds, Some((&renewed[1].0, &renewed[1].1)), None);
    // Rotation: first every proxy trusts both roots, then the new leaves go out.
    at(8);
    write_credentials(&gw_creds, None, Some(&both_bundle));
    write_credentials(&sc_creds, None, Some(&both_bundle));
    at(12);
    write_credentials(&gw_creds, Some((&rotated[0].0, &rotated[0].1)), None);
    write_credentials(&sc_creds, Some((&rotated[1].0, &rotated[1].1)), None);
    at(20);
    stop.store(true, Ordering::Relaxed);
    let errors: Vec<String> = load.into_iter().filter_map(|t| t.join().unwrap()).collect();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("swap under load: {ok} requests succeeded, {failed} failed");
    assert!(ok > 200, "load ran: {ok}");
    assert_eq!(failed, 0, "{errors:?}");
    // The gateway now serves the rotated leaf: a client trusting only the new root gets in.
    let only_new = reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(new_root.as_ref()).unwrap())
        .build()
        .unwrap();
    assert_eq!(only_new.get(&url).send().unwrap().text().unwrap(), "app");
    // And the sidecar swapped too: a new gateway that trusts only the new root, on a leaf
    // only the new root vouches for, gets through it (mTLS with SANs both ways).
    let blocks: Vec<&str> = both_bundle
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    assert_eq!(
        blocks.len(),
        4,
        "old and new root, old and new intermediate"
    );
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let (chain, key) = pki.leaf(GW, &["localhost"]);
    write_credentials(
        &fresh,
        Some((&chain, &key)),
        Some(&format!("{}{}", blocks[1], blocks[3])),
    );
    let second = start_gateway(&write_config(tmp.path(), "gw.json", &config), &fresh);
    let r = https(&both_bundle)
        .get(format!(
            "https://localhost:{}/x",
            port(&second.addrs["gateway"])
        ))
        .send()
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().unwrap()),
        (200, "app".to_owned())
    );
    let s = stats(&sidecar);
    assert!(
        s.contains(&format!(
            "appliance_listener_tls_handshakes_total{{listener=\"0.0.0.0_9080\",peer=\"{}\"}}",
            spiffe(GW)
        )),
        "{s}"
    );
}
