//! Conformance, transparent interception (App Mesh on EC2/ECS): `appliance sidecar
//! --intercept` installs App Mesh's iptables rules in its network namespace, and an app with
//! no proxy settings calls its backends by name. Two namespaces on a veth pair, both made
//! here: `a` holds the sidecar (root) and the app (uid 65534, so its traffic is redirected),
//! `b` holds the backends. Needs root, `ip` and `iptables` (.ci/run installs them): without
//! them these tests fail, they do not skip. Everything made is deleted on drop, even on panic.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Api, Control, BIN};

const A_IP: &str = "10.213.0.1";
const B_IP: &str = "10.213.0.2";
/// The app's user in namespace `a`: not the sidecar's (root), so its TCP is redirected.
const APP_UID: &str = "65534";

/// A command that must succeed, with its output in the failure message.
fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces joined by a veth pair, and `/etc/netns/<a>/hosts` naming the backends
/// (`ip netns exec` mounts it over /etc/hosts). Dropping deletes all of it.
struct Net {
    a: String,
    b: String,
    etc: PathBuf,
}

impl Net {
    fn new() -> Net {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "apx{}{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let net = Net {
            a: format!("{id}a"),
            b: format!("{id}b"),
            etc: PathBuf::from(format!("/etc/netns/{id}a")),
        };
        sh("ip", &["netns", "add", &net.a]);
        sh("ip", &["netns", "add", &net.b]);
        sh(
            "ip",
            &[
                "-n", &net.a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
                "netns", &net.b,
            ],
        );
        for (ns, ip) in [(&net.a, A_IP), (&net.b, B_IP)] {
            let dev = if *ns == net.a { "veth0" } else { "veth1" };
            sh(
                "ip",
                &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev],
            );
            sh("ip", &["-n", ns, "link", "set", dev, "up"]);
            sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        std::fs::create_dir_all(&net.etc).unwrap();
        std::fs::write(
            net.etc.join("hosts"),
            format!("127.0.0.1 localhost\n{B_IP} web.mesh.local db.mesh.local outside.test\n"),
        )
        .unwrap();
        net
    }

    /// `program args` in namespace `ns` (as `uid` when given), with an empty environment:
    /// no proxy variables reach the app.
    fn exec(&self, ns: &str, uid: Option<&str>, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
        c.args(["netns", "exec", ns]);
        if let Some(uid) = uid {
            c.args(["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups"]);
        }
        c.arg(program).args(args);
        c
    }

    fn nat_rules(&self) -> String {
        sh(
            "ip",
            &[
                "netns", "exec", &self.a, "iptables", "-w", "-t", "nat", "-S",
            ],
        )
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

/// A child process killed and reaped on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Backends in `b`: HTTP on 80 and 8080 answering `port N from PEER host HOST`, raw TCP on
/// 5432 and 7000 greeting with `port N` and echoing.
const BACKENDS: &str = r#"
import socket, sys, threading
HTTP = {80, 8080}
def handle(c, port, peer):
    try:
        if port in HTTP:
            data = b''
            while b'\r\n\r\n' not in data:
                d = c.recv(4096)
                if not d:
                    return
                data += d
            host = [l[5:].strip().decode() for l in data.split(b'\r\n') if l.lower().startswith(b'host:')]
            body = ('port %d from %s host %s' % (port, peer[0], host[0] if host else '-')).encode()
            c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n' % len(body) + body)
        else:
            c.sendall(b'port %d\n' % port)
            while True:
                d = c.recv(4096)
                if not d:
                    break
                c.sendall(d)
    finally:
        c.close()
def serve(s, port):
    while True:
        c, peer = s.accept()
        threading.Thread(target=handle, args=(c, port, peer), daemon=True).start()
socks = []
for port in [int(p) for p in sys.argv[2:]]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port))
    s.listen(64)
    socks.append((s, port))
for s, port in socks:
    threading.Thread(target=serve, args=(s, port), daemon=True).start()
print('ready', flush=True)
threading.Event().wait()
"#;

/// A raw TCP client: connects to HOST PORT by name, sends `ping\n`, half-closes, prints what
/// came back (empty when the connection was closed without a byte). With `server-first` it
/// reads the greeting line before sending anything, as a client of SMTP or MySQL would.
const TCP_CLIENT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
first = b''
if sys.argv[3:] == ['server-first']:
    while not first.endswith(b'\n'):
        d = c.recv(1)
        if not d:
            break
        first += d
c.sendall(b'ping\n')
c.shutdown(socket.SHUT_WR)
out = b''
while True:
    try:
        d = c.recv(4096)
    except ConnectionResetError:
        break
    if not d:
        break
    out += d
sys.stdout.write((first + out).decode())
"#;

/// Starts a python3 script in `ns` and waits for its `ready` line.
fn python(net: &Net, ns: &str, uid: Option<&str>, script: &str, args: &[&str]) -> Running {
    let mut all = vec!["-c", script];
    all.extend(args);
    let mut child = net
        .exec(ns, uid, "python3", &all)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the backends did not start");
    Running(child)
}

/// What the app gets: an HTTP GET with curl (status and body) ...
fn app_http(net: &Net, url: &str) -> (u16, String) {
    let out = net
        .exec(
            &net.a,
            Some(APP_UID),
            "curl",
            &["-s", "--max-time", "15", "-w", "\n%{http_code}", url],
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// ... and a raw TCP exchange (what came back).
fn app_tcp(net: &Net, host: &str, port: u16) -> String {
    app_tcp_with(net, host, port, &[])
}

fn app_tcp_with(net: &Net, host: &str, port: u16, extra: &[&str]) -> String {
    let port = port.to_string();
    let mut args = vec!["-c", TCP_CLIENT, host, &port];
    args.extend(extra);
    let out = net
        .exec(&net.a, Some(APP_UID), "python3", &args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The sidecar in `a`, with `--intercept`, and what it logs.
struct Sidecar {
    child: Running,
    log: Arc<Mutex<Vec<String>>>,
}

impl Sidecar {
    fn start(net: &Net, config: &Path, env: &[(&str, &str)]) -> Sidecar {
        let cfg = config.to_str().unwrap();
        let mut cmd = net.exec(
            &net.a,
            None,
            BIN,
            &[
                "sidecar",
                "--config",
                cfg,
                "--app",
                "127.0.0.1:8080",
                "--listen",
                "0.0.0.0:15000",
                "--egress-listen",
                "127.0.0.1:15001",
                "--admin-listen",
                "127.0.0.1:9901",
                "--intercept",
            ],
        );
        cmd.env("RUST_LOG", "info").env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the sidecar");
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Sidecar {
            child: Running(child),
            log,
        }
    }

    fn wait_log(&mut self, needle: &str) {
        let start = Instant::now();
        while !self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                panic!(
                    "the sidecar exited ({status}) before logging {needle:?}:\n{}",
                    self.log.lock().unwrap().join("\n")
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no {needle:?} in:\n{}",
                self.log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status once it has exited by itself.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.0.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the sidecar did not exit"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// A metric's value from the sidecar's /stats (summed over its label sets).
fn metric(net: &Net, prefix: &str) -> f64 {
    let stats = sh(
        "ip",
        &[
            "netns",
            "exec",
            &net.a,
            "curl",
            "-s",
            "http://127.0.0.1:9901/stats",
        ],
    );
    stats
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn put(api: &Api, path: &str, body: &str) {
    let (s, _, b) = api.call("PUT", path, Some(body));
    assert_eq!(s, 200, "PUT {path} {body}: {b}");
}

/// Mesh `m` with `filter`; node `app` declares `web.mesh.local` (http, 8080) and
/// `db.mesh.local` (tcp, 5432), whose nodes are in namespace `b`. The sidecar's config file.
fn mesh(filter: &str, dir: &Path) -> (Control, PathBuf) {
    let c = Control::start();
    let api = Api::new(&c);
    put(
        &api,
        "/v20190125/meshes",
        &format!(r#"{{"meshName":"m","spec":{{"egressFilter":{{"type":"{filter}"}}}}}}"#),
    );
    for (node, port, protocol, host) in [
        ("web-vn", 8080, "http", "web.mesh.local"),
        ("db-vn", 5432, "tcp", "db.mesh.local"),
    ] {
        put(
            &api,
            "/v20190125/meshes/m/virtualNodes",
            &format!(
                r#"{{"virtualNodeName":"{node}","spec":{{"listeners":[{{"portMapping":{{"port":{port},"protocol":"{protocol}"}}}}],"serviceDiscovery":{{"dns":{{"hostname":"{host}"}}}}}}}}"#
            ),
        );
        put(
            &api,
            "/v20190125/meshes/m/virtualServices",
            &format!(
                r#"{{"virtualServiceName":"{host}","spec":{{"provider":{{"virtualNode":{{"virtualNodeName":"{node}"}}}}}}}}"#
            ),
        );
    }
    put(
        &api,
        "/v20190125/meshes/m/virtualNodes",
        r#"{"virtualNodeName":"app","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],"serviceDiscovery":{"dns":{"hostname":"app.local"}},"backends":[{"virtualService":{"virtualServiceName":"web.mesh.local"}},{"virtualService":{"virtualServiceName":"db.mesh.local"}}]}}"#,
    );
    let web = format!("web-vn={B_IP}:8080");
    let db = format!("db-vn={B_IP}:5432");
    let out = c.ctl(&[
        "compile",
        "--identity",
        "mesh/m/virtualNode/app",
        "--endpoint",
        &web,
        "--endpoint",
        &db,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let path = dir.join("app.json");
    std::fs::write(&path, out.stdout).unwrap();
    (c, path)
}

/// Namespaces, backends in `b`, the app's own server in `a` (port 8080, as uid 65534).
fn world() -> (Net, Running, Running) {
    let net = Net::new();
    let backends = python(
        &net,
        &net.b.clone(),
        None,
        BACKENDS,
        &[B_IP, "80", "8080", "5432", "7000"],
    );
    let app = python(
        &net,
        &net.a.clone(),
        Some(APP_UID),
        BACKENDS,
        &["127.0.0.1", "8080"],
    );
    (net, backends, app)
}

#[test]
fn an_intercepted_app_reaches_its_backends_by_name_and_drop_all_refuses_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let (_c, config) = mesh("DROP_ALL", tmp.path());
    let (net, _backends, _app) = world();
    let mut sidecar = Sidecar::start(&net, &config, &[("APPMESH_APP_PORTS", "8080")]);
    sidecar.wait_log("interception rules installed");

    let (status, body) = app_http(&net, "http://web.mesh.local:8080/hello");
    assert_eq!(status, 200, "{body}\n{}", sidecar.log_text());
    assert!(
        body.starts_with("port 8080") && body.contains("host web.mesh.local:8080"),
        "{body}"
    );
    assert!(
        metric(&net, "appliance_responses_total") >= 1.0,
        "the web request went through the mesh"
    );
    assert_eq!(
        app_tcp(&net, "db.mesh.local", 5432),
        "port 5432\nping\n",
        "{}",
        sidecar.log_text()
    );
    assert!(
        metric(&net, "appliance_tcp_connections_total") >= 1.0,
        "the db connection went through the mesh"
    );

    let (status, body) = app_http(&net, "http://outside.test/");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("is not a backend of"), "{body}");
    assert_eq!(
        app_tcp(&net, "outside.test", 7000),
        "",
        "DROP_ALL closes an undeclared tcp destination"
    );
    sidecar.wait_log("is none of the node's backends and the mesh's egress filter is DROP_ALL");
    assert_eq!(
        metric(
            &net,
            "appliance_local_errors_total{reason=\"not_a_backend\"}"
        ),
        2.0
    );

    // Inbound: a connection from `b` to the app's port goes through the sidecar, so the app
    // sees the sidecar (127.0.0.1) as its client.
    let out = sh(
        "ip",
        &[
            "netns",
            "exec",
            &net.b,
            "curl",
            "-s",
            "--max-time",
            "15",
            &format!("http://{A_IP}:8080/"),
        ],
    );
    assert!(out.starts_with("port 8080 from 127.0.0.1"), "{out}");
}

#[test]
fn allow_all_passes_intercepted_http_and_tcp_through_to_the_original_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let (_c, config) = mesh("ALLOW_ALL", tmp.path());
    let (net, _backends, _app) = world();
    let mut sidecar = Sidecar::start(&net, &config, &[]);
    sidecar.wait_log("interception rules installed");

    let (status, body) = app_http(&net, "http://outside.test/");
    assert_eq!(status, 200, "{body}\n{}", sidecar.log_text());
    assert_eq!(body, format!("port 80 from {A_IP} host outside.test"));
    assert_eq!(
        app_tcp(&net, "outside.test", 7000),
        "port 7000\nping\n",
        "{}",
        sidecar.log_text()
    );
    assert_eq!(
        metric(&net, "appliance_egress_passthrough_requests_total"),
        1.0
    );
    // A client that waits for the server to speak: after the sniff gives up, passed through.
    assert_eq!(
        app_tcp_with(&net, "outside.test", 7000, &["server-first"]),
        "port 7000\nping\n"
    );
    assert_eq!(
        metric(&net, "appliance_egress_passthrough_connections_total"),
        2.0
    );
}

#[test]
fn interception_is_removed_on_stop_and_a_bad_setting_stops_the_sidecar_with_nothing_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let (_c, config) = mesh("ALLOW_ALL", tmp.path());
    let net = Net::new();

    let mut bad = Sidecar::start(
        &net,
        &config,
        &[("APPMESH_EGRESS_IGNORED_IP", "10.0.0.0/99")],
    );
    assert!(!bad.wait_exit().success());
    assert!(
        bad.log_text()
            .contains("APPMESH_EGRESS_IGNORED_IP: \"10.0.0.0/99\""),
        "{}",
        bad.log_text()
    );
    assert!(!net.nat_rules().contains("APPMESH"), "{}", net.nat_rules());

    let mut sidecar = Sidecar::start(&net, &config, &[("APPMESH_APP_PORTS", "8080")]);
    sidecar.wait_log("interception rules installed");
    let rules = net.nat_rules();
    assert!(
        rules.contains("-j APPMESH_EGRESS") && rules.contains("--to-ports 15000"),
        "{rules}"
    );
    sh("kill", &["-TERM", &sidecar.child.0.id().to_string()]);
    assert!(sidecar.wait_exit().success(), "{}", sidecar.log_text());
    assert!(!net.nat_rules().contains("APPMESH"), "{}", net.nat_rules());
}
