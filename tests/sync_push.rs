//! The config push over QUIC with real processes on loopback: proxies enrol with join
//! tokens, get their configs and follow API writes, sidecars become their nodes' endpoints,
//! and everything keeps serving while the control plane is away.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, spawn_upstreams, walkthrough, Api, Behaviour, Control, Proxy, BIN};
use serde_json::Value;

const COLORS: [&str; 4] = ["white", "blue", "black", "red"];
const GATEWAY: &str = "mesh/ColorApp/virtualGateway/colorgateway-vg";

fn node(color: &str) -> String {
    format!("mesh/ColorApp/virtualNode/colorteller-{color}-vn")
}

fn token(c: &Control, identity: &str, extra: &[&str]) -> String {
    let mut args = vec!["create-join-token", "--identity", identity];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--query", "token", "--output", "text"]);
    let out = c.ctl(&args);
    assert_eq!(out.code, 0, "create-join-token: {}", out.stderr);
    out.stdout.trim().to_owned()
}

fn sidecar(
    sync: &str,
    token: &str,
    state: &Path,
    color: &str,
    app: std::net::SocketAddr,
) -> (Proxy, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let p = Proxy::start(
        &[
            "sidecar",
            "--control",
            sync,
            "--token",
            token,
            "--state-dir",
            state.to_str().unwrap(),
            "--identity",
            &node(color),
            "--app",
            &app.to_string(),
            "--listen",
            &listen,
            "--egress-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &["sidecar-inbound"],
    );
    (p, listen)
}

fn gateway(sync: &str, token: Option<&str>, state: &Path, listen: &str) -> Proxy {
    let mut args = vec![
        "gateway",
        "--control",
        sync,
        "--state-dir",
        state.to_str().unwrap(),
        "--identity",
        GATEWAY,
        "--listen",
        listen,
        "--admin-listen",
        "127.0.0.1:0",
    ];
    if let Some(t) = token {
        args.extend_from_slice(&["--token", t]);
    }
    Proxy::start(&args, &["gateway", "admin"])
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Sends `n` requests; colour -> count, with failures under "error:<status>".
fn tally(url: &str, n: usize) -> HashMap<String, usize> {
    let http = client();
    let mut out = HashMap::new();
    for _ in 0..n {
        let key = match http.get(url).send() {
            Ok(r) if r.status() == 200 => r.text().unwrap_or_default(),
            Ok(r) => format!("error:{}", r.status().as_u16()),
            Err(e) => format!("error:{e}"),
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

fn proxies(c: &Control) -> Vec<Value> {
    let out = c.ctl(&["list-proxies"]);
    assert_eq!(out.code, 0, "list-proxies: {}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    v["proxies"].as_array().cloned().unwrap_or_default()
}

fn route_weights(api: &Api, white: u32, blue: u32) {
    let body = format!(
        r#"{{"spec":{{"httpRoute":{{"match":{{"prefix":"/tell"}},"action":{{"weightedTargets":[{{"virtualNode":"colorteller-white-vn","weight":{white}}},{{"virtualNode":"colorteller-blue-vn","weight":{blue}}}]}}}}}}}}"#
    );
    let (s, _, b) = api.call(
        "PUT",
        "/v20190125/meshes/ColorApp/virtualRouter/colorteller-vr-1/routes/colorteller-route-1",
        Some(&body),
    );
    assert_eq!(s, 200, "update-route: {b}");
}

/// The walkthrough with four sidecars and a gateway, all enrolled over QUIC.
struct Mesh {
    tmp: tempfile::TempDir,
    sidecars: HashMap<&'static str, Proxy>,
    gateway: Proxy,
    gateway_url: String,
    apps: Vec<std::net::SocketAddr>,
}

fn mesh(c: &Control) -> Mesh {
    let api = Api::new(c);
    walkthrough(&api, "");
    let apps = spawn_upstreams(&COLORS.map(|c| (c, Behaviour::Color)));
    let tmp = tempfile::tempdir().unwrap();
    let mut sidecars = HashMap::new();
    for (color, app) in COLORS.into_iter().zip(&apps) {
        let t = token(c, &node(color), &[]);
        let (p, _) = sidecar(&c.sync, &t, &tmp.path().join(color), color, *app);
        sidecars.insert(color, p);
    }
    let t = token(c, GATEWAY, &[]);
    // A fixed port (not 0): one test restarts this gateway on the same address.
    let listen = format!("127.0.0.1:{}", free_port());
    let gateway = gateway(&c.sync, Some(&t), &tmp.path().join("gateway"), &listen);
    let gateway_url = format!("http://{listen}");
    // Every colour reachable through the gateway once the sidecars have registered.
    wait_until(
        "all four colours through the gateway",
        Duration::from_secs(20),
        || {
            let a = tally(&format!("{gateway_url}/color1/tell"), 8);
            let b = tally(&format!("{gateway_url}/color2/tell"), 8);
            a.contains_key("white")
                && a.contains_key("blue")
                && b.contains_key("black")
                && b.contains_key("red")
        },
    );
    Mesh {
        tmp,
        sidecars,
        gateway,
        gateway_url,
        apps,
    }
}

#[test]
fn proxies_enrol_get_their_configs_and_follow_route_changes() {
    let c = Control::start();
    let api = Api::new(&c);
    let m = mesh(&c);

    let counts = tally(&format!("{}/color1/tell", m.gateway_url), 200);
    let (white, blue) = (
        counts.get("white").copied().unwrap_or(0),
        counts.get("blue").copied().unwrap_or(0),
    );
    assert_eq!(white + blue, 200, "only white and blue: {counts:?}");
    assert!(
        // Binomial(200, 1/2) has a standard deviation of 7; 60..=140 is 5.7 of them out,
        // about one run in 10^8, where 80..=120 failed about one run in 200.
        (60..=140).contains(&white),
        "1:1 split within 30..70 %: {counts:?}"
    );
    let counts = tally(&format!("{}/color2/tell", m.gateway_url), 100);
    assert_eq!(
        counts.get("black").copied().unwrap_or(0) + counts.get("red").copied().unwrap_or(0),
        100,
        "{counts:?}"
    );

    // Every proxy is listed, has acked what it was sent, and has a certificate.
    let list = proxies(&c);
    assert_eq!(list.len(), 5, "{list:?}");
    for p in &list {
        assert_eq!(p["configVersionSent"], p["configVersionAcked"], "{p}");
        assert!(p["certificateExpiresAt"].is_string(), "{p}");
        assert!(p["lastNack"].is_null(), "{p}");
    }
    let sidecar = list
        .iter()
        .find(|p| p["identity"] == node("white"))
        .unwrap();
    assert!(sidecar["advertise"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let before = list.iter().find(|p| p["identity"] == GATEWAY).unwrap()["configVersionAcked"]
        .as_u64()
        .unwrap();

    // A write that changes no proxy's config pushes nothing: the control plane logs every push
    // by identity, so after the tag and then a route change, the gateway has exactly one more.
    let pushes = |c: &Control| {
        c.log_text()
            .lines()
            .filter(|l| l.contains("config changed; pushing") && l.contains(GATEWAY))
            .count()
    };
    let pushes_before = pushes(&c);
    assert!(
        pushes_before >= 1,
        "the gateway's first config is logged as a push"
    );
    let out = c.ctl(&[
        "tag-resource",
        "--resource-arn",
        &format!("arn:aws:appmesh:us-east-1:{}:mesh/ColorApp", account(&c)),
        "--tags",
        "key=team,value=colour",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Not a judgement: it lets the change feed handle the tag on its own before the route
    // change below, rather than both in one wake-up.
    std::thread::sleep(Duration::from_millis(500));
    let same = proxies(&c)
        .iter()
        .find(|p| p["identity"] == GATEWAY)
        .unwrap()["configVersionSent"]
        .as_u64()
        .unwrap();
    assert_eq!(
        same, before,
        "a tag changes no config, so nothing is pushed"
    );

    // Weights to 100:0: all traffic moves to white, quickly.
    route_weights(&api, 100, 0);
    let took = wait_until("all white", Duration::from_secs(5), || {
        tally(&format!("{}/color1/tell", m.gateway_url), 10).get("white") == Some(&10)
    });
    eprintln!("route change to all-white traffic: {took:?}");
    assert_eq!(
        pushes(&c),
        pushes_before + 1,
        "one push for the route change and none for the tag"
    );
    assert!(
        took < Duration::from_secs(10),
        "a bound for a loaded machine: {took:?}"
    );
    let after = proxies(&c)
        .iter()
        .find(|p| p["identity"] == GATEWAY)
        .unwrap()["configVersionAcked"]
        .as_u64()
        .unwrap();
    assert!(
        after > before,
        "the gateway acked a newer version ({before} -> {after})"
    );

    // What lets a proxy restart without a token (and serve from cache) is private to it.
    let state = m.tmp.path().join("gateway");
    for f in ["key.pem", "cert.pem", "ca.pem", "config.json"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(state.join(f)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    drop(m);
}

fn account(c: &Control) -> String {
    let out = c.ctl(&[
        "describe-mesh",
        "--mesh-name",
        "ColorApp",
        "--query",
        "mesh.metadata.arn",
        "--output",
        "text",
    ]);
    out.stdout.split(':').nth(4).unwrap_or_default().to_owned()
}

/// Runs a proxy that must fail to enrol; returns its stderr.
fn refused(c_sync: &str, token: &str, identity: &str, state: &Path) -> String {
    let out = Command::new(BIN)
        .args([
            "gateway",
            "--control",
            c_sync,
            "--token",
            token,
            "--identity",
            identity,
        ])
        .arg("--state-dir")
        .arg(state)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(out, Duration::from_secs(20));
    assert!(
        !out.status.success(),
        "a refused enrolment must exit non-zero"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn wait_output(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            child.kill().ok();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tokens_enrol_only_their_identity_once_in_time_and_until_revoked() {
    let c = Control::start();
    let api = Api::new(&c);
    walkthrough(&api, "");
    let tmp = tempfile::tempdir().unwrap();
    let dir = |n: &str| -> PathBuf { tmp.path().join(n) };

    // A token for the gateway cannot enrol a virtual node's identity... (the gateway role
    // takes gateway identities only, so ask as another gateway).
    let (s, _, b) = api.call(
        "PUT",
        "/v20190125/meshes/ColorApp/virtualGateways",
        Some(r#"{"virtualGatewayName":"other-vg","spec":{"listeners":[{"portMapping":{"port":9080,"protocol":"http"}}]}}"#),
    );
    assert_eq!(s, 200, "{b}");
    let t = token(&c, GATEWAY, &[]);
    let e = refused(
        &c.sync,
        &t,
        "mesh/ColorApp/virtualGateway/other-vg",
        &dir("a"),
    );
    assert!(
        e.contains(&format!(
            "is for {GATEWAY}, not mesh/ColorApp/virtualGateway/other-vg"
        )),
        "{e}"
    );

    // Expired.
    let t = token(&c, GATEWAY, &["--ttl-seconds", "1"]);
    std::thread::sleep(Duration::from_millis(2100));
    let e = refused(&c.sync, &t, GATEWAY, &dir("b"));
    assert!(e.contains("expired"), "{e}");

    // Single use: the first enrolment works, the second is refused.
    let t = token(&c, GATEWAY, &["--single-use"]);
    let first = gateway(&c.sync, Some(&t), &dir("c"), "127.0.0.1:0");
    let e = refused(&c.sync, &t, GATEWAY, &dir("d"));
    assert!(e.contains("single-use and was used"), "{e}");
    drop(first);

    // Revoked.
    let out = c.ctl(&["create-join-token", "--identity", GATEWAY]);
    let created: Value = serde_json::from_str(&out.stdout).unwrap();
    let (t, id) = (
        created["token"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    );
    let listed = c.ctl(&["list-join-tokens"]);
    assert!(listed.stdout.contains(&id));
    assert!(
        !listed.stdout.contains(t.rsplit('.').next().unwrap()),
        "secrets are never listed"
    );
    assert_eq!(c.ctl(&["revoke-join-token", "--token-id", &id]).code, 0);
    let e = refused(&c.sync, &t, GATEWAY, &dir("e"));
    assert!(e.contains("revoked"), "{e}");

    // Not a token at all, and a token from another control plane (its CA pin differs).
    let e = refused(&c.sync, "hello", GATEWAY, &dir("f"));
    assert!(e.contains("join token: expected"), "{e}");
    let other = Control::start();
    walkthrough(&Api::new(&other), "");
    let foreign = token(&other, GATEWAY, &[]);
    let e = refused(&c.sync, &foreign, GATEWAY, &dir("g"));
    assert!(e.contains("not the one the token was made by"), "{e}");

    // No token and no saved certificate: say what to do.
    let out = Command::new(BIN)
        .args([
            "gateway",
            "--control",
            &c.sync,
            "--identity",
            GATEWAY,
            "--state-dir",
        ])
        .arg(dir("h"))
        .env_remove("APPLIANCE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no join token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A state dir is bound to its identity.
    let out = Command::new(BIN)
        .args([
            "gateway",
            "--control",
            &c.sync,
            "--identity",
            "mesh/ColorApp/virtualGateway/other-vg",
            "--state-dir",
        ])
        .arg(dir("c"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("belongs to mesh/ColorApp/virtualGateway/colorgateway-vg"));
}

/// Load through the gateway on a thread: (ok, failed) counts, stopped by the flag.
fn load(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let http = client();
        let (mut ok, mut failed) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match http.get(&url).send() {
                Ok(r) if r.status() == 200 => ok += 1,
                Ok(r) => failed.push(format!("{} {}", r.status(), r.text().unwrap_or_default())),
                Err(e) => failed.push(e.to_string()),
            }
        }
        (ok, failed)
    })
}

#[test]
fn proxies_serve_through_a_control_plane_outage_and_converge_when_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("control");
    let sync_port = free_port();
    let sync_flag = format!("127.0.0.1:{sync_port}");
    let c = Control::start_with(&data, &["--sync-listen", &sync_flag]);
    let mut m = mesh(&c);
    let url = format!("{}/color1/tell", m.gateway_url);

    // kill -9 the control plane under load: not one request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let worker = load(url.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    c.kill9();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = worker.join().unwrap();
    eprintln!(
        "control plane killed under load: {ok} requests ok, {} failed",
        failed.len()
    );
    assert!(ok > 100, "{ok}");
    assert!(failed.is_empty(), "{failed:?}");

    // Restart the gateway while the control plane is down: it serves from its cache.
    let listen = m.gateway_url.trim_start_matches("http://").to_owned();
    m.gateway.child.kill().ok();
    m.gateway.child.wait().ok();
    let restarted = gateway(&sync_flag, None, &m.tmp.path().join("gateway"), &listen);
    let counts = tally(&url, 20);
    assert_eq!(
        counts.get("white").copied().unwrap_or(0) + counts.get("blue").copied().unwrap_or(0),
        20,
        "from cache: {counts:?}"
    );
    m.gateway = restarted;

    // Bring the control plane back on the same data and address: everyone reconnects, and a
    // change made now reaches the gateway.
    let c = Control::start_with(&data, &["--sync-listen", &sync_flag]);
    let took = wait_until("five proxies reconnected", Duration::from_secs(30), || {
        proxies(&c).len() == 5
    });
    eprintln!("all five proxies reconnected {took:?} after the control plane came back");
    route_weights(&Api::new(&c), 0, 100);
    let took = wait_until("all blue", Duration::from_secs(10), || {
        tally(&url, 10).get("blue") == Some(&10)
    });
    eprintln!("converged on the new route {took:?} after the write");
}

/// The gateway's running config: cluster name -> endpoints, from its admin `/config`.
fn gateway_endpoints(g: &Proxy, node: &str) -> Option<Vec<String>> {
    let v: Value = client()
        .get(format!("http://{}/config", g.addrs["admin"]))
        .send()
        .ok()?
        .json()
        .ok()?;
    let clusters = v["clusters"].as_object()?;
    let c = clusters.values().find(|c| c["node"] == node)?;
    Some(
        c["endpoints"]
            .as_array()?
            .iter()
            .filter_map(|e| e.as_str().map(str::to_owned))
            .collect(),
    )
}

#[test]
fn sidecar_endpoints_follow_their_sessions_and_drain_without_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start_with(&tmp.path().join("control"), &["--sync-grace-ms", "1000"]);
    let mut m = mesh(&c);

    // kill -9 white's sidecar: its endpoint stays through the 1 s grace (it may only be
    // reconnecting), then leaves.
    let white_before = gateway_endpoints(&m.gateway, "colorteller-white-vn").unwrap();
    assert_eq!(white_before.len(), 1, "{white_before:?}");
    m.sidecars.remove("white").unwrap().child.kill().ok();
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        gateway_endpoints(&m.gateway, "colorteller-white-vn").unwrap(),
        white_before,
        "kept within the grace"
    );
    // A killed process says nothing over UDP: the session's idle timeout (1.5 s) notices.
    // The node's sidecars registered before, so the registry stays its truth: with none
    // left it has no endpoints, not its DNS hostname.
    wait_until("white's endpoint gone", Duration::from_secs(20), || {
        gateway_endpoints(&m.gateway, "colorteller-white-vn").is_some_and(|e| e.is_empty())
    });
    eprintln!(
        "a killed sidecar's endpoint left after {:?} (idle timeout 1.5 s + grace 1 s)",
        start.elapsed()
    );

    // A second sidecar for black (a replica): both are endpoints.
    let t = token(&c, &node("black"), &[]);
    let (replica, replica_addr) = sidecar(
        &c.sync,
        &t,
        &m.tmp.path().join("black-2"),
        "black",
        m.apps[2],
    );
    wait_until("two black endpoints", Duration::from_secs(10), || {
        gateway_endpoints(&m.gateway, "colorteller-black-vn").is_some_and(|e| e.len() == 2)
    });

    // SIGTERM the replica under load: it says it is draining, leaves the endpoints at once,
    // and not one request through the gateway fails.
    let stop = Arc::new(AtomicBool::new(false));
    let worker = load(format!("{}/color2/tell", m.gateway_url), stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let pid = replica.child.id().to_string();
    let start = Instant::now();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    wait_until(
        "the replica out of rotation",
        Duration::from_secs(5),
        || {
            gateway_endpoints(&m.gateway, "colorteller-black-vn")
                .is_some_and(|e| !e.contains(&replica_addr))
        },
    );
    let took = start.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = worker.join().unwrap();
    eprintln!(
        "SIGTERM to a sidecar under load: out of rotation in {took:?}; {ok} ok, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert!(
        took < Duration::from_millis(1000),
        "before its listeners close: {took:?}"
    );
    drop(replica);
}

static RED_HEALTHY: AtomicBool = AtomicBool::new(true);

#[test]
fn a_sidecar_whose_app_fails_its_health_check_takes_its_endpoint_out() {
    let c = Control::start();
    let api = Api::new(&c);
    walkthrough(&api, "");
    let apps = spawn_upstreams(&[
        ("black", Behaviour::Color),
        ("red", Behaviour::Health(&RED_HEALTHY)),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let mut keep = Vec::new();
    for (color, app) in ["black", "red"].into_iter().zip(&apps) {
        let t = token(&c, &node(color), &[]);
        keep.push(sidecar(&c.sync, &t, &tmp.path().join(color), color, *app).0);
    }
    let t = token(&c, GATEWAY, &[]);
    let g = gateway(&c.sync, Some(&t), &tmp.path().join("gw"), "127.0.0.1:0");
    let url = g.url("gateway", "/color2/tell");
    wait_until("red reachable", Duration::from_secs(20), || {
        tally(&url, 6).contains_key("red")
    });
    RED_HEALTHY.store(false, Ordering::Relaxed);
    // The walkthrough's check: every 5 s, 2 failures in a row: out within ~15 s.
    let took = wait_until("red out", Duration::from_secs(30), || {
        proxies(&c)
            .iter()
            .any(|p| p["identity"] == node("red") && p["healthy"] == false)
            && gateway_endpoints(&g, "colorteller-red-vn").is_some_and(|e| e.is_empty())
    });
    eprintln!("an unhealthy app's endpoint left after {took:?}");
    RED_HEALTHY.store(true, Ordering::Relaxed);
    wait_until("red back", Duration::from_secs(30), || {
        gateway_endpoints(&g, "colorteller-red-vn").is_some_and(|e| e.len() == 1)
    });
}

#[test]
fn a_config_the_proxy_cannot_apply_is_nacked_and_the_previous_one_keeps_serving() {
    let c = Control::start();
    let api = Api::new(&c);
    let m = mesh(&c);
    // An access log under a path that cannot exist: the gateway cannot open it.
    let (s, _, b) = api.call(
        "PUT",
        "/v20190125/meshes/ColorApp/virtualGateways/colorgateway-vg",
        Some(r#"{"spec":{"listeners":[{"portMapping":{"port":9080,"protocol":"http"}}],"logging":{"accessLog":{"file":{"path":"/nonexistent/dir/access.log"}}}}}"#),
    );
    assert_eq!(s, 200, "{b}");
    let mut nack = Value::Null;
    wait_until("a nack", Duration::from_secs(10), || {
        nack = proxies(&c)
            .into_iter()
            .find(|p| p["identity"] == GATEWAY)
            .unwrap()["lastNack"]
            .clone();
        !nack.is_null()
    });
    assert!(
        nack["error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/dir/access.log"),
        "{nack}"
    );
    let counts = tally(&format!("{}/color1/tell", m.gateway_url), 20);
    assert_eq!(
        counts.get("white").copied().unwrap_or(0) + counts.get("blue").copied().unwrap_or(0),
        20,
        "{counts:?}"
    );
}

#[test]
fn revoking_an_identity_closes_its_session_and_rotation_renews_every_leaf() {
    let c = Control::start();
    let m = mesh(&c);
    let expiry = |c: &Control, id: &str| -> String {
        proxies(c)
            .into_iter()
            .find(|p| p["identity"] == id)
            .map(|p| {
                p["certificateExpiresAt"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_default()
    };
    let before = expiry(&c, GATEWAY);
    // Every proxy renews, not only the one under load.
    let all = [GATEWAY.to_owned()]
        .into_iter()
        .chain(COLORS.iter().map(|c| node(c)))
        .collect::<Vec<_>>();
    let befores: Vec<String> = all.iter().map(|id| expiry(&c, id)).collect();
    std::thread::sleep(Duration::from_millis(1100));
    let stop = Arc::new(AtomicBool::new(false));
    let worker = load(format!("{}/color1/tell", m.gateway_url), stop.clone());
    assert_eq!(c.ctl(&["rotate-certificate-authority"]).code, 0);
    wait_until(
        "the gateway's renewed leaf",
        Duration::from_secs(10),
        || expiry(&c, GATEWAY) != before,
    );
    wait_until("every leaf renewed", Duration::from_secs(10), || {
        all.iter()
            .zip(&befores)
            .all(|(id, b)| expiry(&c, id) != *b && !expiry(&c, id).is_empty())
    });
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = worker.join().unwrap();
    eprintln!("CA rotation under load: {ok} ok, {} failed", failed.len());
    assert!(failed.is_empty(), "{failed:?}");

    assert_eq!(
        c.ctl(&["revoke-identity", "--identity", &node("red")]).code,
        0
    );
    wait_until("red's session closed", Duration::from_secs(10), || {
        !proxies(&c).iter().any(|p| p["identity"] == node("red"))
    });
    // It stays out: its reconnects are refused.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!proxies(&c).iter().any(|p| p["identity"] == node("red")));
    assert!(c.log_text().contains("is revoked"), "the refusal is logged");
}

#[test]
fn malformed_and_oversized_frames_close_only_their_connection() {
    let c = Control::start();
    let m = mesh(&c);
    let t = token(&c, GATEWAY, &[]);
    let pin = appliance::sync::JoinToken::parse(&t).unwrap().ca_pin;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sync: std::net::SocketAddr = c.sync.parse().unwrap();
    // Each bad frame, and the reason the control plane must give when it closes the connection.
    let draining = appliance::sync::frame::encode(appliance::sync::frame::ToControl::Draining);
    // This protocol version (a one-byte varint), then an `Ack` of version 3, then two bytes.
    let version = u8::try_from(appliance::sync::frame::PROTOCOL_VERSION).unwrap();
    let bad: [(&[u8], &str); 4] = [
        (
            &[0, 0, 0, 5, version, 2, 3, 4, 5],
            "trailing bytes after the message",
        ),
        (&[0xff, 0xff, 0xff, 0xff], "over the limit"),
        (&[0, 0, 0, 100, 1, 2], "in the middle of a frame"),
        (&draining, "the first frame must be Enrol or Hello"),
    ];
    for (bytes, expected) in bad {
        let reason = rt.block_on(async {
            let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            let cfg = appliance::sync::tls::enrol_client_config(pin).unwrap();
            let conn = ep
                .connect_with(cfg, sync, "appliance-control")
                .unwrap()
                .await
                .unwrap();
            let (mut send, _recv) = conn.open_bi().await.unwrap();
            send.write_all(bytes).await.unwrap();
            let _ = send.finish();
            tokio::time::timeout(Duration::from_secs(15), conn.closed())
                .await
                .expect("closed by the control plane")
        });
        eprintln!("bad frame {:?}: {reason}", &bytes[..bytes.len().min(6)]);
        let quinn::ConnectionError::ApplicationClosed(close) = &reason else {
            panic!("bad frame {bytes:?}: closed by the control plane, got {reason}");
        };
        let text = String::from_utf8_lossy(&close.reason);
        assert!(
            text.contains(expected),
            "bad frame {bytes:?}: reason {text:?} should say {expected:?}"
        );
        // The close reaches the client before the control plane's log line may be read.
        let logged = Instant::now();
        while !c.log_text().contains(expected) {
            assert!(
                logged.elapsed() < Duration::from_secs(10),
                "bad frame {bytes:?}: the control plane logs {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Everyone else carries on.
    assert_eq!(proxies(&c).len(), 5);
    let counts = tally(&format!("{}/color1/tell", m.gateway_url), 10);
    assert_eq!(
        counts.get("white").copied().unwrap_or(0) + counts.get("blue").copied().unwrap_or(0),
        10
    );
}
