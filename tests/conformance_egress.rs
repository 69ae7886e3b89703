//! Conformance, egress: the mesh's `egressFilter` on a sidecar's HTTP egress listener. A
//! destination that is none of the node's backends is refused under DROP_ALL and passed
//! through under ALLOW_ALL, and a change of the filter reaches a running sidecar. One
//! real-process test per row of `docs/field-support.md`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{spawn_upstreams, Api, Behaviour, Control, Proxy};

fn put(api: &Api, path: &str, body: &str) {
    let (s, _, b) = api.call("PUT", path, Some(body));
    assert_eq!(s, 200, "PUT {path} {body}: {b}");
}

/// Mesh `m` with `egress_filter` and node `app`, which declares no backends.
fn mesh(api: &Api, egress_filter: &str) {
    put(
        api,
        "/v20190125/meshes",
        &format!(r#"{{"meshName":"m","spec":{{"egressFilter":{{"type":"{egress_filter}"}}}}}}"#),
    );
    put(
        api,
        "/v20190125/meshes/m/virtualNodes",
        r#"{"virtualNodeName":"app","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}}"#,
    );
}

fn sidecar_from_file(c: &Control, dir: &Path) -> Proxy {
    let out = c.ctl(&["compile", "--identity", "mesh/m/virtualNode/app"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cfg = dir.join("app.json");
    std::fs::write(&cfg, out.stdout).unwrap();
    let app = spawn_upstreams(&[("app", Behaviour::Color)])[0].to_string();
    Proxy::start(
        &[
            "sidecar",
            "--config",
            cfg.to_str().unwrap(),
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

fn sidecar_enrolled(c: &Control, state: &Path) -> Proxy {
    let token = c.join_token("mesh/m/virtualNode/app");
    let app = spawn_upstreams(&[("app", Behaviour::Color)])[0].to_string();
    Proxy::start(
        &[
            "sidecar",
            "--control",
            &c.sync,
            "--token",
            &token,
            "--state-dir",
            state.to_str().unwrap(),
            "--identity",
            "mesh/m/virtualNode/app",
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

/// GET `http://{destination}/` the way an app uses its sidecar: the egress listener as its
/// HTTP proxy. Status and body.
fn via_egress(sidecar: &Proxy, destination: SocketAddr) -> (u16, String) {
    let proxy = format!("http://{}", sidecar.addrs["sidecar-egress"]);
    let client = reqwest::blocking::Client::builder()
        .proxy(reqwest::Proxy::http(proxy).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let r = client.get(format!("http://{destination}/")).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn metric(p: &Proxy, prefix: &str) -> f64 {
    let stats = reqwest::blocking::get(p.url("admin", "/stats"))
        .unwrap()
        .text()
        .unwrap();
    stats
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn drop_all_refuses_an_undeclared_http_destination_with_a_reason() {
    let c = Control::start();
    mesh(&Api::new(&c), "DROP_ALL");
    let tmp = tempfile::tempdir().unwrap();
    let sidecar = sidecar_from_file(&c, tmp.path());
    let outside = spawn_upstreams(&[("outside", Behaviour::Color)])[0];
    let (status, body) = via_egress(&sidecar, outside);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("is not a backend of"), "{body}");
    assert_eq!(
        metric(
            &sidecar,
            "appliance_local_errors_total{reason=\"not_a_backend\"}"
        ),
        1.0
    );
}

#[test]
fn allow_all_passes_an_undeclared_http_destination_through() {
    let c = Control::start();
    mesh(&Api::new(&c), "ALLOW_ALL");
    let tmp = tempfile::tempdir().unwrap();
    let sidecar = sidecar_from_file(&c, tmp.path());
    let outside = spawn_upstreams(&[("outside", Behaviour::Color)])[0];
    assert_eq!(via_egress(&sidecar, outside), (200, "outside".into()));
    assert_eq!(
        metric(&sidecar, "appliance_egress_passthrough_requests_total"),
        1.0
    );
}

#[test]
fn an_egress_filter_change_reaches_a_running_sidecar() {
    let c = Control::start();
    let api = Api::new(&c);
    mesh(&api, "DROP_ALL");
    let tmp = tempfile::tempdir().unwrap();
    let sidecar = sidecar_enrolled(&c, tmp.path());
    let outside = spawn_upstreams(&[("outside", Behaviour::Color)])[0];
    wait_until(
        "the sidecar refuses under DROP_ALL",
        Duration::from_secs(30),
        || via_egress(&sidecar, outside).0 == 403,
    );
    let filter = |t: &str| {
        put(
            &api,
            "/v20190125/meshes/m",
            &format!(r#"{{"spec":{{"egressFilter":{{"type":"{t}"}}}}}}"#),
        )
    };
    filter("ALLOW_ALL");
    wait_until(
        "ALLOW_ALL reaches the sidecar",
        Duration::from_secs(15),
        || via_egress(&sidecar, outside) == (200, "outside".into()),
    );
    filter("DROP_ALL");
    wait_until(
        "DROP_ALL reaches the sidecar",
        Duration::from_secs(15),
        || via_egress(&sidecar, outside).0 == 403,
    );
}

#[test]
fn allow_all_refuses_a_destination_that_is_the_egress_listener_itself() {
    let c = Control::start();
    mesh(&Api::new(&c), "ALLOW_ALL");
    let tmp = tempfile::tempdir().unwrap();
    let sidecar = sidecar_from_file(&c, tmp.path());
    let itself: SocketAddr = sidecar.addrs["sidecar-egress"].parse().unwrap();
    let (status, body) = via_egress(&sidecar, itself);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("would loop"), "{body}");
    assert_eq!(
        metric(&sidecar, "appliance_egress_passthrough_requests_total"),
        0.0
    );
}
