//! Endpoints that come, go or die under load, on the walkthrough fleet (four colour sidecars
//! and a gateway, all enrolled over QUIC, App Mesh's default retries, no outlier detection):
//! no request may fail because of it. Each test prints its counts (`--nocapture`). The tests
//! take turns (one fleet at a time): the machine is small and shared.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{walkthrough, Api, Control, Proxy};
use serde_json::Value;

const COLORS: [&str; 4] = ["white", "blue", "black", "red"];
const GATEWAY: &str = "mesh/ColorApp/virtualGateway/colorgateway-vg";
/// Threads of load: enough for requests in flight at every change, few enough for 2 cores.
const LOAD_THREADS: usize = 2;

static SERIAL: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// === the fleet ===

fn node(color: &str) -> String {
    format!("mesh/ColorApp/virtualNode/colorteller-{color}-vn")
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A sidecar for `color` listening on `listen`; `token` only for its first start.
fn sidecar(
    c: &Control,
    token: Option<&str>,
    state: &Path,
    color: &str,
    app: SocketAddr,
    listen: SocketAddr,
) -> Proxy {
    let (state, identity, app, listen) = (
        state.to_str().unwrap().to_owned(),
        node(color),
        app.to_string(),
        listen.to_string(),
    );
    let mut args = vec![
        "sidecar",
        "--control",
        &c.sync,
        "--state-dir",
        &state,
        "--identity",
        &identity,
        "--app",
        &app,
        "--listen",
        &listen,
        "--egress-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    if let Some(t) = token {
        args.extend_from_slice(&["--token", t]);
    }
    Proxy::start(&args, &["sidecar-inbound"])
}

/// A test app on `addr` that answers every request 200 with its name, until stopped. Stopping
/// it closes its listener and every connection, as a crashed app's would be.
struct App {
    rt: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
}

impl App {
    fn start(addr: SocketAddr, name: &'static str) -> App {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(async {
            // The port may be in TIME_WAIT from a previous run of this app: retry briefly.
            let start = Instant::now();
            loop {
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => break l,
                    Err(e) if start.elapsed() < Duration::from_secs(10) => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("binding the app {name} to {addr}: {e}"),
                }
            }
        });
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(name.as_bytes())),
                        ))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
                });
            }
        });
        App { rt: Some(rt), addr }
    }

    fn stop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Fleet {
    c: Control,
    tmp: tempfile::TempDir,
    sidecars: HashMap<&'static str, (Proxy, SocketAddr)>,
    apps: HashMap<&'static str, App>,
    gateway: Proxy,
    url: String,
}

/// The walkthrough with four sidecars and a gateway, every colour answering through it.
fn fleet() -> Fleet {
    let c = Control::start();
    walkthrough(&Api::new(&c), "");
    let tmp = tempfile::tempdir().unwrap();
    let mut sidecars = HashMap::new();
    let mut apps = HashMap::new();
    for color in COLORS {
        let app = App::start(free_addr(), color);
        let listen = free_addr();
        let t = c.join_token(&node(color));
        let p = sidecar(
            &c,
            Some(&t),
            &tmp.path().join(color),
            color,
            app.addr,
            listen,
        );
        sidecars.insert(color, (p, listen));
        apps.insert(color, app);
    }
    let t = c.join_token(GATEWAY);
    let listen = free_addr().to_string();
    let state = tmp.path().join("gateway");
    let gateway = Proxy::start(
        &[
            "gateway",
            "--control",
            &c.sync,
            "--token",
            &t,
            "--state-dir",
            state.to_str().unwrap(),
            "--identity",
            GATEWAY,
            "--listen",
            &listen,
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &["gateway", "admin"],
    );
    let url = format!("http://{listen}");
    let f = Fleet {
        c,
        tmp,
        sidecars,
        apps,
        gateway,
        url,
    };
    wait_until("all four colours through the gateway", 30, || {
        let a = tally(&format!("{}/color1/tell", f.url), 8);
        let b = tally(&format!("{}/color2/tell", f.url), 8);
        COLORS
            .iter()
            .all(|c| a.contains_key(*c) || b.contains_key(*c))
    });
    f
}

impl Fleet {
    /// The gateway's running endpoints of `color`'s node, from its admin `/config`.
    fn endpoints(&self, color: &str) -> Option<Vec<String>> {
        let v: Value = client()
            .get(format!("http://{}/config", self.gateway.addrs["admin"]))
            .send()
            .ok()?
            .json()
            .ok()?;
        let want = format!("colorteller-{color}-vn");
        let c = v["clusters"]
            .as_object()?
            .values()
            .find(|c| c["node"] == want.as_str())?;
        Some(
            c["endpoints"]
                .as_array()?
                .iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect(),
        )
    }

    /// Sessions of `color`'s node the control plane lists, with their health.
    fn sessions(&self, color: &str) -> Vec<bool> {
        let out = self.c.ctl(&["list-proxies"]);
        assert_eq!(out.code, 0, "list-proxies: {}", out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        v["proxies"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|p| p["identity"] == node(color).as_str())
            .map(|p| p["healthy"] == true)
            .collect()
    }

    fn sigterm(&mut self, color: &str) -> (Proxy, SocketAddr) {
        let (mut p, listen) = self.sidecars.remove(color).expect("a running sidecar");
        let pid = p.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        wait_until(&format!("{color}'s sidecar to exit"), 20, || {
            p.child.try_wait().ok().flatten().is_some()
        });
        (p, listen)
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Sends `n` requests; body -> count, failures as "error:<status>".
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

fn wait_until(what: &str, limit_s: u64, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(limit_s),
            "timed out after {limit_s} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

// === load ===

/// One answered (or failed) request: when it was sent, and what came back.
struct Sample {
    sent: Instant,
    answer: Result<String, String>,
}

/// A few threads sending requests round the given paths until stopped (or a bound on the
/// count, so a test that goes wrong cannot load the machine for ever).
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<Sample>>>,
    samples: Arc<Mutex<usize>>,
}

const MAX_REQUESTS_PER_THREAD: usize = 50_000;

impl Load {
    fn start(base: &str, paths: &[&str]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(0usize));
        let threads = (0..LOAD_THREADS)
            .map(|i| {
                let (stop, samples) = (stop.clone(), samples.clone());
                let urls: Vec<String> = paths.iter().map(|p| format!("{base}{p}")).collect();
                std::thread::spawn(move || {
                    let http = client();
                    let mut out = Vec::new();
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) && out.len() < MAX_REQUESTS_PER_THREAD {
                        let url = &urls[n % urls.len()];
                        n += 1;
                        let sent = Instant::now();
                        let answer = match http.get(url).send() {
                            Ok(r) if r.status() == 200 => Ok(r.text().unwrap_or_default()),
                            Ok(r) => Err(format!(
                                "{} {}",
                                r.status(),
                                r.text().unwrap_or_default().trim()
                            )),
                            Err(e) => Err(e.to_string()),
                        };
                        out.push(Sample { sent, answer });
                        *samples.lock().unwrap() += 1;
                    }
                    out
                })
            })
            .collect();
        Load {
            stop,
            threads,
            samples,
        }
    }

    fn count(&self) -> usize {
        *self.samples.lock().unwrap()
    }

    /// Waits until `more` further requests have been answered.
    fn wait_for(&self, more: usize) {
        let target = self.count() + more;
        wait_until(&format!("{more} more requests"), 120, || {
            self.count() >= target
        });
    }

    fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    }
}

fn failures(samples: &[Sample]) -> Vec<&str> {
    samples
        .iter()
        .filter_map(|s| s.answer.as_ref().err().map(String::as_str))
        .collect()
}

fn answered_by(samples: &[Sample], name: &str) -> usize {
    samples
        .iter()
        .filter(|s| s.answer.as_deref() == Ok(name))
        .count()
}

// === the issue's table ===

#[test]
fn a_sidecar_that_starts_before_its_app_costs_no_request() {
    let _turn = one_at_a_time();
    let f = fleet();
    let load = Load::start(&f.url, &["/color1/tell"]);
    load.wait_for(20);
    // The normal boot order on EC2: the sidecar first, its app later (here: not at all).
    let app = free_addr();
    let t = f.c.join_token(&node("white"));
    let listen = free_addr();
    let _second = sidecar(
        &f.c,
        Some(&t),
        &f.tmp.path().join("white-2"),
        "white",
        app,
        listen,
    );
    wait_until("the second white session", 20, || {
        f.sessions("white").len() == 2
    });
    load.wait_for(200);
    let still_one = f.endpoints("white");
    let samples = load.finish();
    let failed = failures(&samples);
    eprintln!(
        "a second white sidecar joined with no app: {} requests to /color1, {} failed, white sessions (healthy) {:?}",
        samples.len(),
        failed.len(),
        f.sessions("white")
    );
    assert_eq!(
        still_one.map(|e| e.len()),
        Some(1),
        "an app that never passed a check is no endpoint"
    );
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn an_app_that_comes_up_late_joins_only_after_its_first_passing_check() {
    let _turn = one_at_a_time();
    let f = fleet();
    let load = Load::start(&f.url, &["/color1/tell"]);
    let app_addr = free_addr();
    let t = f.c.join_token(&node("white"));
    let listen = free_addr();
    let _second = sidecar(
        &f.c,
        Some(&t),
        &f.tmp.path().join("white-2"),
        "white",
        app_addr,
        listen,
    );
    wait_until("the second white session", 20, || {
        f.sessions("white").len() == 2
    });
    assert_eq!(f.sessions("white").iter().filter(|h| **h).count(), 1);
    load.wait_for(50);
    assert!(
        !f.endpoints("white").unwrap().contains(&listen.to_string()),
        "not an endpoint before its app passed a check"
    );
    let started = Instant::now();
    let _late = App::start(app_addr, "white-late");
    let http = client();
    let took = wait_until("the late app to answer through the gateway", 30, || {
        http.get(format!("{}/color1/tell", f.url))
            .send()
            .and_then(|r| r.text())
            .is_ok_and(|t| t == "white-late")
    });
    load.wait_for(50);
    let samples = load.finish();
    let failed = failures(&samples);
    let late_before = samples
        .iter()
        .filter(|s| s.sent < started && s.answer.as_deref() == Ok("white-late"))
        .count();
    eprintln!(
        "late app: joined {took:?} after it started; {} requests, {} failed, {} answered by it",
        samples.len(),
        failed.len(),
        answered_by(&samples, "white-late")
    );
    assert_eq!(late_before, 0);
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn kill_9_of_the_only_blue_sidecar_and_its_app_costs_no_request_from_3_s_after() {
    let _turn = one_at_a_time();
    let mut f = fleet();
    let load = Load::start(&f.url, &["/color1/tell"]);
    load.wait_for(20);
    let (mut blue, _) = f.sidecars.remove("blue").unwrap();
    let killed = Instant::now();
    blue.child.kill().ok();
    blue.child.wait().ok();
    f.apps.get_mut("blue").unwrap().stop();
    // Past the QUIC idle timeout and the 10 s grace, so the registry's removal happens under
    // load too.
    wait_until("blue's endpoint gone from the gateway", 40, || {
        f.endpoints("blue").is_some_and(|e| e.is_empty())
    });
    load.wait_for(200);
    let samples = load.finish();
    let settle = killed + Duration::from_secs(3);
    let (early, late): (Vec<&Sample>, Vec<&Sample>) = samples
        .iter()
        .filter(|s| s.sent >= killed)
        .partition(|s| s.sent < settle);
    let early_failed = early.iter().filter(|s| s.answer.is_err()).count();
    let late_failed: Vec<&str> = late
        .iter()
        .filter_map(|s| s.answer.as_ref().err().map(String::as_str))
        .collect();
    eprintln!(
        "kill -9 of blue: {} requests in the first 3 s ({early_failed} failed), {} after ({} failed); removed from the gateway {:?} after the kill",
        early.len(),
        late.len(),
        late_failed.len(),
        killed.elapsed()
    );
    assert!(late.len() >= 200, "{}", late.len());
    assert!(late_failed.is_empty(), "{late_failed:?}");
}

#[test]
fn sigterm_of_the_only_black_sidecar_under_load_costs_no_request() {
    let _turn = one_at_a_time();
    let mut f = fleet();
    let load = Load::start(&f.url, &["/color2/tell"]);
    load.wait_for(20);
    let before = load.count();
    let (_black, _) = f.sigterm("black");
    load.wait_for(300usize.saturating_sub(load.count() - before));
    let samples = load.finish();
    let failed = failures(&samples);
    eprintln!(
        "SIGTERM of the only black sidecar: {} requests, {} failed; red answered {}",
        samples.len(),
        failed.len(),
        answered_by(&samples, "red")
    );
    assert_eq!(f.endpoints("black"), Some(Vec::new()), "no DNS fallback");
    assert!(failed.is_empty(), "{failed:?}");
}

// === beyond the table ===

#[test]
fn a_flapping_endpoint_costs_at_most_the_requests_in_flight_when_it_went_down() {
    let _turn = one_at_a_time();
    let f = fleet();
    let app = App::start(free_addr(), "white-2");
    let t = f.c.join_token(&node("white"));
    let listen = free_addr();
    let state = f.tmp.path().join("white-2");
    let mut second = Some(sidecar(&f.c, Some(&t), &state, "white", app.addr, listen));
    wait_until("two white endpoints", 30, || {
        f.endpoints("white").is_some_and(|e| e.len() == 2)
    });
    let load = Load::start(&f.url, &["/color1/tell"]);
    let downs = 3;
    for _ in 0..downs {
        load.wait_for(60);
        // Down the hard way, mid-request.
        if let Some(mut p) = second.take() {
            p.child.kill().ok();
            p.child.wait().ok();
        }
        load.wait_for(60);
        second = Some(sidecar(&f.c, None, &state, "white", app.addr, listen));
        wait_until("the second white sidecar back", 30, || {
            f.sessions("white").iter().filter(|h| **h).count() == 2
        });
    }
    load.wait_for(60);
    let samples = load.finish();
    let failed = failures(&samples);
    eprintln!(
        "a sidecar killed and restarted {downs} times under load: {} requests, {} failed (bound {}), {} answered by it",
        samples.len(),
        failed.len(),
        downs * LOAD_THREADS,
        answered_by(&samples, "white-2")
    );
    assert!(failed.len() <= downs * LOAD_THREADS, "{failed:?}");
}

#[test]
fn a_rolling_restart_of_all_four_sidecars_under_load_costs_no_request() {
    let _turn = one_at_a_time();
    let mut f = fleet();
    let load = Load::start(&f.url, &["/color1/tell", "/color2/tell"]);
    load.wait_for(20);
    for color in COLORS {
        let (_old, listen) = f.sigterm(color);
        let app = f.apps[color].addr;
        let p = sidecar(&f.c, None, &f.tmp.path().join(color), color, app, listen);
        wait_until(&format!("{color} back in the gateway"), 30, || {
            f.endpoints(color)
                .is_some_and(|e| e.contains(&listen.to_string()))
        });
        load.wait_for(40);
        f.sidecars.insert(color, (p, listen));
    }
    let samples = load.finish();
    let failed = failures(&samples);
    let by: Vec<(&str, usize)> = COLORS
        .iter()
        .map(|c| (*c, answered_by(&samples, c)))
        .collect();
    eprintln!(
        "rolling restart of four sidecars: {} requests, {} failed; by colour {by:?}",
        samples.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
}

// === panic: every endpoint failing its active check ===

/// Never set: `/ping` of the apps built on it always fails (500).
static PING_OK: AtomicBool = AtomicBool::new(false);

/// A gateway run from a compiled file, in front of the node `app-vn` (health check
/// `GET /ping`) at `endpoints`; returns it and its listener's URL.
fn checked_gateway(c: &Control, endpoints: &[SocketAddr], dir: &Path) -> (Proxy, String) {
    let api = Api::new(c);
    let put = |path: &str, body: String| {
        let (s, _, b) = api.call("PUT", path, Some(&body));
        assert_eq!(s, 200, "{path}: {b}");
    };
    put("/v20190125/meshes", r#"{"meshName":"Panic"}"#.into());
    put(
        "/v20190125/meshes/Panic/virtualNodes",
        r#"{"virtualNodeName":"app-vn","spec":{"listeners":[{"portMapping":{"port":9080,"protocol":"http"},"healthCheck":{"healthyThreshold":2,"intervalMillis":5000,"path":"/ping","protocol":"http","timeoutMillis":2000,"unhealthyThreshold":2}}],"serviceDiscovery":{"dns":{"hostname":"app.local"}}}}"#.into(),
    );
    put(
        "/v20190125/meshes/Panic/virtualServices",
        r#"{"virtualServiceName":"app.local","spec":{"provider":{"virtualNode":{"virtualNodeName":"app-vn"}}}}"#.into(),
    );
    put(
        "/v20190125/meshes/Panic/virtualGateways",
        r#"{"virtualGatewayName":"gw","spec":{"listeners":[{"portMapping":{"port":9080,"protocol":"http"}}]}}"#.into(),
    );
    put(
        "/v20190125/meshes/Panic/virtualGateway/gw/gatewayRoutes",
        r#"{"gatewayRouteName":"all","spec":{"httpRoute":{"match":{"prefix":"/"},"action":{"target":{"virtualService":{"virtualServiceName":"app.local"}}}}}}"#.into(),
    );
    let mut args = vec![
        "compile".to_owned(),
        "--identity".into(),
        "mesh/Panic/virtualGateway/gw".into(),
    ];
    for e in endpoints {
        args.push("--endpoint".into());
        args.push(format!("app-vn={e}"));
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = c.ctl(&a);
    assert_eq!(out.code, 0, "compile: {}", out.stderr);
    let path = dir.join("gw.json");
    std::fs::write(&path, &out.stdout).unwrap();
    let g = Proxy::start(
        &[
            "gateway",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &["gateway", "admin"],
    );
    let url = g.url("gateway", "/");
    (g, url)
}

/// The gateway's `endpoint_healthy` gauge for `endpoint`, from `/stats`.
fn healthy_gauge(g: &Proxy, endpoint: SocketAddr) -> Option<i64> {
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

#[test]
fn a_cluster_whose_every_endpoint_fails_its_check_sends_to_all_of_them() {
    let _turn = one_at_a_time();
    let apps = common::spawn_upstreams(&[
        ("one", common::Behaviour::Health(&PING_OK)),
        ("two", common::Behaviour::Health(&PING_OK)),
    ]);
    let c = Control::start();
    let tmp = tempfile::tempdir().unwrap();
    let (g, url) = checked_gateway(&c, &apps, tmp.path());
    wait_until("both endpoints failing their check", 30, || {
        apps.iter().all(|a| healthy_gauge(&g, *a) == Some(0))
    });
    let counts = tally(&url, 20);
    eprintln!("every endpoint failing its check (panic): {counts:?}");
    assert_eq!(
        counts.get("one").copied().unwrap_or(0) + counts.get("two").copied().unwrap_or(0),
        20,
        "{counts:?}"
    );
    assert!(
        counts.contains_key("one") && counts.contains_key("two"),
        "{counts:?}"
    );
}

#[test]
fn while_one_endpoint_passes_its_check_the_failing_ones_get_nothing() {
    let _turn = one_at_a_time();
    let apps = common::spawn_upstreams(&[
        ("failing", common::Behaviour::Health(&PING_OK)),
        ("passing", common::Behaviour::Color),
    ]);
    let c = Control::start();
    let tmp = tempfile::tempdir().unwrap();
    let (g, url) = checked_gateway(&c, &apps, tmp.path());
    wait_until("one endpoint passing, one failing", 30, || {
        healthy_gauge(&g, apps[0]) == Some(0) && healthy_gauge(&g, apps[1]) == Some(1)
    });
    let counts = tally(&url, 20);
    eprintln!("one of two endpoints passing its check (no panic, unlike Envoy's 50 %): {counts:?}");
    assert_eq!(counts.get("passing"), Some(&20), "{counts:?}");
}
