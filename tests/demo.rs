//! `appliance demo` as a user runs it: one command, then the walkthrough's checks through
//! the gateway over TLS (curl and an HTTPS client trusting only the printed CA bundle), a
//! weight change with the real AWS CLI, and a clean stop that leaves nothing running.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{aws_cli, free_port, BIN};

/// A debug build on a shared two-core machine starts six processes and enrols five.
const STARTUP: Duration = Duration::from_secs(240);

/// A running `appliance demo` and what it printed; killed on drop if the test failed.
struct Demo {
    child: Child,
    dir: PathBuf,
    gateway: String,
    bundle: PathBuf,
    admin: String,
    credentials: PathBuf,
    /// The admin page's user and password, as printed.
    admin_login: (String, String),
    pids: Vec<(String, u32)>,
    _tmp: Option<tempfile::TempDir>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The value after `label` on the line that starts with it (`  gateway URL   https://...`).
fn field(lines: &[String], label: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no `{label}` in the demo's output:\n{}", lines.join("\n")))
}

fn start_demo() -> Demo {
    start_demo_with(&[])
}

fn start_demo_with(extra: &[&str]) -> Demo {
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = start_demo_in(&tmp.path().join("demo"), tmp.path(), extra);
    demo._tmp = Some(tmp);
    demo
}

/// Starts the demo on `dir` (new or used before), its stderr in `logs/demo.stderr`.
fn start_demo_in(dir: &Path, logs: &Path, extra: &[&str]) -> Demo {
    let dir = dir.to_path_buf();
    let stderr = logs.join(format!("demo-{}.stderr", free_port()));
    let mut child = Command::new(BIN)
        .args(["demo", "--data-dir"])
        .arg(&dir)
        .args(["--api-listen", "127.0.0.1:0", "--gateway-listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(extra)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("spawn appliance demo");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            eprintln!("[demo] {line}");
            // Keep reading after the test stops listening: a closed pipe would fail the
            // demo's next write.
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + STARTUP;
    while !lines.iter().any(|l: &String| l.starts_with("Ctrl-C stops")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(e) => panic!(
                "the demo did not report it was running ({e}); output:\n{}\nstderr:\n{}",
                lines.join("\n"),
                std::fs::read_to_string(&stderr).unwrap_or_default()
            ),
        }
    }
    let pids = field(&lines, "processes")
        .split_whitespace()
        .map(|p| {
            let (name, pid) = p.split_once('=').expect("name=pid");
            (name.to_owned(), pid.parse().expect("pid"))
        })
        .collect();
    Demo {
        gateway: field(&lines, "gateway URL"),
        bundle: PathBuf::from(field(&lines, "CA bundle")),
        admin: field(&lines, "admin page"),
        credentials: PathBuf::from(field(&lines, "credentials")),
        admin_login: field(&lines, "admin login")
            .split_once(" / ")
            .map(|(u, p)| (u.to_owned(), p.to_owned()))
            .expect("admin login is `USER / PASSWORD`"),
        child,
        dir,
        pids,
        _tmp: None,
    }
}

fn https(bundle: &Path, gateway: &str) -> reqwest::blocking::Client {
    let port: u16 = gateway.rsplit(':').next().unwrap().parse().unwrap();
    let pem = std::fs::read(bundle).unwrap();
    let mut b = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .tls_built_in_root_certs(false)
        .resolve("localhost", ([127, 0, 0, 1], port).into());
    for cert in reqwest::Certificate::from_pem_bundle(&pem).unwrap() {
        b = b.add_root_certificate(cert);
    }
    b.build().unwrap()
}

/// `curl --cacert BUNDLE URL`, as the demo prints it; returns the body.
fn curl(bundle: &Path, url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
        .arg(bundle)
        .arg(url)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn get(client: &reqwest::blocking::Client, url: &str) -> String {
    let r = client
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(r.status(), 200, "{url}");
    r.text().unwrap()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

/// Processes whose command line names the demo's data directory.
fn pgrep(dir: &Path) -> String {
    let out = Command::new("pgrep")
        .args(["-af"])
        .arg(dir)
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

#[test]
fn demo_serves_the_walkthrough_over_tls_follows_weight_changes_and_stops_cleanly() {
    let mut demo = start_demo();
    let client = https(&demo.bundle, &demo.gateway);
    let color1 = format!("{}/color1/tell", demo.gateway);
    let color2 = format!("{}/color2/tell", demo.gateway);

    // /color1: white and blue, evenly (the route's 1:1 weights). Some with the real curl.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..20 {
        *seen.entry(curl(&demo.bundle, &color1)).or_default() += 1;
    }
    for _ in 0..180 {
        *seen.entry(get(&client, &color1)).or_default() += 1;
    }
    eprintln!("/color1/tell x200: {seen:?}");
    let mut colors: Vec<&String> = seen.keys().collect();
    colors.sort();
    assert_eq!(colors, ["blue", "white"], "{seen:?}");
    for (color, n) in &seen {
        // Binomial(200, 1/2): 60..=140 is 5.7 standard deviations out (one run in 10^8).
        assert!((60..=140).contains(n), "{color}: {n} of 200: {seen:?}");
    }

    // /color2: black and red only.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..100 {
        *seen.entry(get(&client, &color2)).or_default() += 1;
    }
    let mut colors: Vec<&String> = seen.keys().collect();
    colors.sort();
    assert_eq!(colors, ["black", "red"], "{seen:?}");

    // Plain text to the STRICT listener gets no colour.
    let plain = demo
        .gateway
        .replace("https://localhost", "http://127.0.0.1");
    let r = reqwest::blocking::get(format!("{plain}/color1/tell"))
        .expect("a STRICT listener answers plain text with an error, not a reset");
    assert_eq!(r.status(), 400, "plain text to a STRICT listener");
    let body = r.text().unwrap();
    assert!(
        !["white", "blue"].contains(&body.trim()),
        "plain text got a colour: {body}"
    );

    // The admin page is up.
    // No redirects followed: the sign-in page itself must answer, not whatever a redirect hits.
    let no_redirects = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signin = no_redirects
        .get(format!("{}signin", demo.admin))
        .send()
        .unwrap();
    assert_eq!(signin.status(), 200, "GET /signin");
    assert!(
        signin.text().unwrap().contains("<title>Sign in"),
        "the sign-in page"
    );
    let index = no_redirects.get(&demo.admin).send().unwrap();
    assert_eq!(
        index.status(),
        303,
        "an unauthenticated GET / goes to the sign-in page"
    );
    assert_eq!(index.headers()["location"], "/signin");

    // 100:0 with the AWS CLI: all of /color1 goes to white, within a second.
    let spec = r#"{"httpRoute":{"match":{"prefix":"/tell"},"action":{"weightedTargets":[{"virtualNode":"colorteller-white-vn","weight":100},{"virtualNode":"colorteller-blue-vn","weight":0}]}}}"#;
    let out = Command::new(aws_cli())
        .args(["appmesh", "update-route", "--endpoint-url"])
        .arg(demo.admin.trim_end_matches('/'))
        .args([
            "--mesh-name",
            "ColorApp-Ingress",
            "--virtual-router-name",
            "colorteller-vr-1",
            "--route-name",
            "colorteller-route-1",
            "--spec",
            spec,
        ])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env("AWS_SHARED_CREDENTIALS_FILE", &demo.credentials)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_DEFAULT_REGION", "us-west-2")
        .output()
        .expect("aws runs");
    assert!(
        out.status.success(),
        "update-route: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let changed = Instant::now();
    // From here on, 30 answers in a row must all be white; time when that run began.
    let mut run_start = None;
    let mut run = 0;
    while run < 30 {
        assert!(
            changed.elapsed() < Duration::from_secs(10),
            "never all white"
        );
        if get(&client, &color1) == "white" {
            run_start.get_or_insert_with(Instant::now);
            run += 1;
        } else {
            run_start = None;
            run = 0;
        }
    }
    let took = run_start.unwrap().duration_since(changed);
    eprintln!("all of /color1 went to white {took:?} after update-route returned");
    // A convergence bound with room for a loaded machine; the speed is sync_push's figure.
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // Ctrl-C: the demo stops everything it started.
    let status = Command::new("kill")
        .args(["-INT", &demo.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        wait_until(Duration::from_secs(30), || matches!(
            demo.child.try_wait(),
            Ok(Some(_))
        )),
        "the demo did not exit after SIGINT"
    );
    assert_eq!(demo.child.try_wait().unwrap().unwrap().code(), Some(0));
    for (name, pid) in &demo.pids {
        assert!(!alive(*pid), "{name} ({pid}) still runs after the demo");
    }
    assert_eq!(pgrep(&demo.dir), "", "left running");
}

#[test]
fn children_exit_on_their_own_when_the_demo_is_killed() {
    let mut demo = start_demo();
    // SIGKILL: the demo gets no chance to stop anything; its children see their stdin close.
    demo.child.kill().unwrap();
    demo.child.wait().unwrap();
    let left = || demo.pids.iter().filter(|(_, p)| alive(*p)).count();
    assert!(
        wait_until(Duration::from_secs(20), || left() == 0),
        "still running 20 s after the demo was killed: {:?}",
        demo.pids
            .iter()
            .filter(|(_, p)| alive(*p))
            .collect::<Vec<_>>()
    );
    assert_eq!(pgrep(&demo.dir), "", "left running");
}

/// Issue #6's rotation check on the whole TLS mesh: leaves of 60 s renewed every 40 s, and
/// one CA rotation half-way, while clients send requests for three minutes (half on kept
/// connections, half on a new TLS connection each time). Not one request may fail.
#[test]
fn leaves_renewed_every_40_s_and_a_ca_rotation_under_three_minutes_of_load_fail_no_request() {
    let demo = start_demo_with(&["--leaf-ttl", "60"]);
    let (bundle, gateway) = (demo.bundle.clone(), demo.gateway.clone());
    let load = Load::start(&demo, move || https(&bundle, &gateway));
    let ctl = |args: &[&str]| demo_ctl(&demo, args);
    let expiries = || leaf_expiries(&demo);
    let first = expiries();
    assert_eq!(first.len(), 5, "{first:?}");
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(90));
    ctl(&["rotate-certificate-authority"]);
    std::thread::sleep(Duration::from_secs(90));
    let last = expiries();
    let (ok, failed) = load.stop();
    eprintln!(
        "{:?} of load with 60 s leaves and one CA rotation: {ok} requests ok, {} failed; leaf expiries {first:?} -> {last:?}",
        started.elapsed(),
        failed.len()
    );
    // Every proxy has renewed several times (a 60 s leaf lives at most 60 s).
    assert_eq!(first.len(), 5, "four sidecars and the gateway: {first:?}");
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        last.keys().collect::<Vec<_>>(),
        "the same proxies before and after"
    );
    for (identity, before) in &first {
        assert_ne!(&last[identity], before, "{identity} renewed its leaf");
    }
    assert!(ok > 1000, "{ok}");
    assert!(
        failed.is_empty(),
        "{} failed, first: {:?}",
        failed.len(),
        failed.first()
    );
}

/// Stops a demo as Ctrl-C would and waits for it to exit.
fn interrupt(mut demo: Demo) {
    let status = Command::new("kill")
        .args(["-INT", &demo.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while demo.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_second_demo_on_the_same_directory_keeps_the_ca_and_serves_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let first = start_demo_in(&dir, tmp.path(), &[]);
    let bundle_before = std::fs::read_to_string(&first.bundle).unwrap();
    let credentials_before = std::fs::read_to_string(&first.credentials).unwrap();
    interrupt(first);

    let second = start_demo_in(&dir, tmp.path(), &[]);
    let bundle_after = std::fs::read_to_string(&second.bundle).unwrap();
    assert_eq!(
        bundle_after, bundle_before,
        "the second run keeps the CA: the same trust bundle"
    );
    assert_eq!(
        std::fs::read_to_string(&second.credentials).unwrap(),
        credentials_before,
        "the same API credentials"
    );
    // And it serves the walkthrough again, on certificates under that root.
    let body = curl(&second.bundle, &format!("{}/color1/tell", second.gateway));
    assert!(["white", "blue"].contains(&body.trim()), "{body}");
    interrupt(second);
}

/// A new root under load: every proxy of the demo (enrolled over QUIC) renews onto it while
/// the old root is still trusted, so no hop of the mesh fails a request. The outside
/// clients accept any server certificate: giving them the new bundle is the operator's step
/// (the bundle holds both roots until the old one's leaves are gone), not what is tested.
#[test]
fn a_root_rotation_under_load_renews_every_proxy_and_fails_no_request() {
    let demo = start_demo();
    let port: u16 = demo.gateway.rsplit(':').next().unwrap().parse().unwrap();
    let load = Load::start(&demo, move || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .danger_accept_invalid_certs(true)
            .resolve("localhost", ([127, 0, 0, 1], port).into())
            .build()
            .unwrap()
    });
    let url = format!("{}/color1/tell", demo.gateway);
    let ctl = |args: &[&str]| demo_ctl(&demo, args);
    let leaves = || leaf_expiries(&demo);
    let before = leaves();
    assert_eq!(before.len(), 5, "four sidecars and the gateway: {before:?}");
    let bundle_before = ctl(&["get-ca-bundle"]);
    // Leaf expiries are whole seconds: a renewal right away would look unchanged.
    std::thread::sleep(Duration::from_secs(3));
    ctl(&["rotate-certificate-authority", "--root"]);
    let renewed = wait_until(Duration::from_secs(60), || {
        let now = leaves();
        now.len() == 5
            && now
                .iter()
                .all(|(id, at)| before.get(id).is_some_and(|b| b != at))
    });
    // Traffic on the new leaves for a while, old connections and new ones.
    std::thread::sleep(Duration::from_secs(3));
    let (ok, failed) = load.stop();
    eprintln!(
        "root rotation under load: {ok} requests ok, {} failed",
        failed.len()
    );
    assert!(
        renewed,
        "not every proxy renewed onto the new root: {before:?} -> {:?}",
        leaves()
    );
    // The bundle now holds the new root beside the old, and the gateway's new leaf chains
    // to it.
    let bundle = ctl(&["get-ca-bundle"]);
    let certs = |pem: &str| -> Vec<String> {
        pem.split_inclusive("-----END CERTIFICATE-----")
            .map(|c| c.trim().to_owned())
            .filter(|c| c.starts_with("-----BEGIN"))
            .collect()
    };
    let (old, new) = (certs(&bundle_before), certs(&bundle));
    assert!(
        old.iter().all(|c| new.contains(c)) && new.len() > old.len(),
        "the old trust stays and a new root joins it: {} -> {} certificates",
        old.len(),
        new.len()
    );
    let fresh = demo.dir.join("bundle-after-rotation.pem");
    std::fs::write(&fresh, &bundle).unwrap();
    let body = curl(&fresh, &url);
    assert!(["white", "blue"].contains(&body.trim()), "{body}");
    assert!(ok > 100, "{ok}");
    assert!(
        failed.is_empty(),
        "{} failed, first: {:?}",
        failed.len(),
        failed.first()
    );
}

/// The admin page's live view on real proxies: the demo's five proxies, enrolled over QUIC,
/// report their stats to the control plane while traffic flows through the gateway, and
/// the page (headless Chromium, tests/browser/live.mjs) turns them into rates and colours.
#[test]
fn the_admin_pages_live_view_shows_the_demos_real_proxies() {
    let demo = start_demo();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, bundle, gateway) = (stop.clone(), demo.bundle.clone(), demo.gateway.clone());
        std::thread::spawn(move || {
            let client = https(&bundle, &gateway);
            let mut ok = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if client
                    .get(format!("{gateway}/color1/tell"))
                    .send()
                    .is_ok_and(|r| r.status() == 200)
                {
                    ok += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            ok
        })
    };
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules is missing: run `npm ci` in tests/browser (as .ci/run does)"
    );
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let out = Command::new("node")
        .arg(browser.join("live.mjs"))
        .arg(demo.admin.trim_end_matches('/'))
        .arg(&demo.admin_login.0)
        .arg(&demo.admin_login.1)
        .arg(&shots)
        .output()
        .expect("node runs (install nodejs, as .ci/run does)");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ok = load.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser test failed after {ok} requests:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "PASS real proxies' stats become rates on the edges",
        "PASS connected, healthy proxies colour their boxes green",
        "PASS the proxies view lists the five enrolled proxies",
        "ALL PASSED",
    ] {
        assert!(stdout.contains(step), "missing `{step}` in:\n{stdout}");
    }
}

/// Two clients sending `GET /color1/tell` to the demo's gateway until stopped: one on a kept
/// connection, one on a new connection (a new TLS handshake) every request.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    workers: Vec<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

impl Load {
    fn start(
        demo: &Demo,
        client: impl Fn() -> reqwest::blocking::Client + Clone + Send + 'static,
    ) -> Load {
        let url = format!("{}/color1/tell", demo.gateway);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers = (0..2)
            .map(|i| {
                let (stop, url, client) = (stop.clone(), url.clone(), client.clone());
                std::thread::spawn(move || {
                    let (mut ok, mut failed) = (0usize, Vec::new());
                    let mut http = client();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if i == 1 {
                            http = client();
                        }
                        match http.get(&url).send() {
                            Ok(r) if r.status() == 200 => ok += 1,
                            Ok(r) => failed.push(format!(
                                "{} {}",
                                r.status(),
                                r.text().unwrap_or_default()
                            )),
                            Err(e) => failed.push(format!("{e:?}")),
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        Load { stop, workers }
    }

    /// Stops both clients: requests answered 200, and every other outcome.
    fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut ok, mut failed) = (0, Vec::new());
        for w in self.workers {
            let (o, f) = w.join().unwrap();
            ok += o;
            failed.extend(f);
        }
        (ok, failed)
    }
}

/// `appliance ctl ARGS` against the demo's control plane; its stdout.
fn demo_ctl(demo: &Demo, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("ctl")
        .args(args)
        .args([
            "--endpoint-url",
            demo.admin.trim_end_matches('/'),
            "--data-dir",
        ])
        .arg(demo.credentials.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Identity -> its leaf's expiry, for every proxy connected to the demo's control plane.
fn leaf_expiries(demo: &Demo) -> std::collections::BTreeMap<String, String> {
    let v: serde_json::Value = serde_json::from_str(&demo_ctl(demo, &["list-proxies"])).unwrap();
    v["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let id = p["identity"].as_str().unwrap_or_default().to_owned();
            (
                id,
                p["certificateExpiresAt"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}
