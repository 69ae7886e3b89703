//! Shared helpers for integration tests: start the real `appliance` binary on loopback,
//! read its address from its `listening on <addr>` log line, and stop it on drop.
#![allow(dead_code)]

pub mod pki;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_appliance");

/// A running `appliance control`, killed (and reaped) when dropped.
pub struct Control {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
    /// Every line the process has logged so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub scheme: &'static str,
    /// The sync listener (QUIC), `127.0.0.1:PORT`.
    pub sync: String,
    _tmp: Option<tempfile::TempDir>,
}

impl Control {
    /// Starts a control plane on a fresh data directory and a free port.
    pub fn start() -> Control {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let mut c = Control::start_in(&dir);
        c._tmp = Some(tmp);
        c
    }

    /// Starts a control plane on an existing (or new) data directory.
    pub fn start_in(dir: &Path) -> Control {
        Control::start_with(dir, &[])
    }

    /// Starts a control plane with extra flags (`--api-tls`, ...).
    pub fn start_with(dir: &Path, extra: &[&str]) -> Control {
        let mut cmd = Command::new(BIN);
        cmd.args(["control", "--data-dir"])
            .arg(dir)
            .args(["--api-listen", "127.0.0.1:0"]);
        if !extra.contains(&"--sync-listen") {
            cmd.args(["--sync-listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn appliance control");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let addr = wait_for_listen_logged(&mut child, "api", Some(log.clone()));
        let scheme = if extra.contains(&"--api-tls") {
            "https"
        } else {
            "http"
        };
        let sync = log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("role=\"sync\""))
            .find_map(|l| l.split("listening on ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .map(|a| a.trim_end_matches("/udp").to_owned())
            .unwrap_or_default();
        Control {
            child,
            addr,
            data_dir: dir.to_path_buf(),
            log,
            scheme,
            sync,
            _tmp: None,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Everything the process has logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Runs `appliance ctl` against this control plane, with its credentials.
    pub fn ctl(&self, args: &[&str]) -> Out {
        let mut all: Vec<String> = vec!["ctl".into()];
        all.extend(args.iter().map(|s| s.to_string()));
        all.extend(["--endpoint-url".to_string(), self.endpoint()]);
        run_cli(Path::new(BIN), &all, self)
    }

    /// A join token for `identity`, from `ctl create-join-token`.
    pub fn join_token(&self, identity: &str) -> String {
        let out = self.ctl(&[
            "create-join-token",
            "--identity",
            identity,
            "--query",
            "token",
            "--output",
            "text",
        ]);
        assert_eq!(out.code, 0, "create-join-token: {}", out.stderr);
        out.stdout.trim().to_owned()
    }

    pub fn credentials(&self) -> PathBuf {
        self.data_dir.join("credentials")
    }

    /// Stops it the hard way, as a crash or OOM kill would.
    pub fn kill9(mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Reads the child's stderr until a `listening on ADDR` line with `role="<role>"` shows up,
/// then keeps draining stderr in the background so the child never blocks on a full pipe.
pub fn wait_for_listen(child: &mut Child, role: &str) -> String {
    wait_for_listen_logged(child, role, None)
}

/// Like `wait_for_listen`, keeping every line in `log`.
pub fn wait_for_listen_logged(
    child: &mut Child,
    role: &str,
    log: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
) -> String {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    let role = role.to_owned();
    let early = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let kept = early.clone();
    let wanted = role.clone();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !sent {
                kept.lock().unwrap().push(line.clone());
            }
            if std::env::var_os("APPLIANCE_TEST_LOG").is_some() {
                eprintln!("[child] {line}");
            }
            if let Some(log) = &log {
                log.lock().unwrap().push(line.clone());
            }
            if !sent && line.contains(&format!("role=\"{role}\"")) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    tx.send(addr).ok();
                    sent = true;
                }
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => addr,
        Err(e) => {
            let status = exit_reason(child, e);
            panic!(
                "the child did not report `listening on` for role {wanted:?} ({e}); {status}; \
                 it logged:\n{}",
                early.lock().unwrap().join("\n")
            );
        }
    }
}

/// The AWS CLI to test against: `$APPLIANCE_AWS_CLI`, the repo's `.venv/bin/aws` (made by
/// `.ci/run`), or `aws` on PATH.
pub fn aws_cli() -> PathBuf {
    if let Some(p) = std::env::var_os("APPLIANCE_AWS_CLI") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/aws");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("aws")
}

/// Output of one CLI call.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command with the environment an App Mesh user has: the control plane's
/// credentials file and a region, and nothing inherited from this machine's AWS setup.
pub fn run_cli(program: &Path, args: &[String], control: &Control) -> Out {
    let out = Command::new(program)
        .args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env("AWS_SHARED_CREDENTIALS_FILE", control.credentials())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_DEFAULT_REGION", "us-west-2")
        .env("AWS_PAGER", "")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A walkthrough spec template with its jq variables bound, as `jq -n --arg` would: every
/// `$NAME` becomes a JSON string.
pub fn render(file: &str, vars: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("demo/walkthrough")
        .join(file);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Longest names first, so $DNS_HOSTNAME is not eaten by a shorter $DNS.
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    for (k, v) in vars {
        text = text.replace(&format!("${k}"), &serde_json::to_string(v).unwrap());
    }
    assert!(
        !text.contains('$'),
        "{file}: unbound jq variable left in {text}"
    );
    text
}

pub fn fixture_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("demo/walkthrough")
        .join(file)
}

/// A SigV4-signing HTTP client for the API, for tests that need many fast calls.
pub struct Api {
    http: reqwest::blocking::Client,
    endpoint: String,
    key_id: String,
    secret: String,
}

impl Api {
    pub fn new(control: &Control) -> Api {
        let text = std::fs::read_to_string(control.credentials()).expect("credentials file");
        let field = |name: &str| {
            text.lines()
                .find_map(|l| {
                    l.split_once('=')
                        .filter(|(k, _)| k.trim() == name)
                        .map(|(_, v)| v.trim().to_owned())
                })
                .expect("credential field")
        };
        Api {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            endpoint: control.endpoint(),
            key_id: field("aws_access_key_id"),
            secret: field("aws_secret_access_key"),
        }
    }

    /// Sends a signed request; returns (status, x-amzn-ErrorType, body as JSON or text).
    pub fn call(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&str>,
    ) -> (u16, Option<String>, serde_json::Value) {
        self.call_with(
            method,
            path_and_query,
            body.map(|b| b.as_bytes().to_vec()),
            &self.secret.clone(),
        )
    }

    /// Like `call`, signing with the given secret (to test bad signatures).
    pub fn call_with(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        secret: &str,
    ) -> (u16, Option<String>, serde_json::Value) {
        self.try_call_with(method, path_and_query, body, secret)
            .expect("request sent")
    }

    /// Like `call`, but a connection failure is an `Err` rather than a panic.
    pub fn try_call(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&str>,
    ) -> Result<(u16, Option<String>, serde_json::Value), String> {
        self.try_call_with(
            method,
            path_and_query,
            body.map(|b| b.as_bytes().to_vec()),
            &self.secret.clone(),
        )
    }

    fn try_call_with(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        secret: &str,
    ) -> Result<(u16, Option<String>, serde_json::Value), String> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let url = format!("{}{}", self.endpoint, path_and_query);
        let host = self.endpoint.trim_start_matches("http://").to_owned();
        let body = body.unwrap_or_default();
        let identity =
            aws_credential_types::Credentials::new(&self.key_id, secret, None, None, "test").into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-west-2")
            .name("appmesh")
            .time(std::time::SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let headers = [
            ("host", host.as_str()),
            ("content-type", "application/json"),
        ];
        let signable = SignableRequest::new(
            method,
            &url,
            headers.into_iter(),
            SignableBody::Bytes(&body),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut req = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json");
        for (name, value) in instructions.headers() {
            req = req.header(name, value);
        }
        let req = req.body(body).unwrap();
        let (parts, body) = req.into_parts();
        let mut rb = self.http.request(parts.method, &url).body(body);
        for (k, v) in parts.headers.iter() {
            rb = rb.header(k, v);
        }
        let resp = rb.send().map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let kind = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.text().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Ok((status, kind, json))
    }
}

/// How a test upstream answers.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// 200 with its name as the body; `/ping` is 200 empty (the walkthrough's colorteller).
    Color,
    /// Answers after the given delay.
    Slow(Duration),
    /// 503 for every other request, 200 for the rest.
    Flaky,
    /// Like `Color`, but `/ping` fails (500) while the flag is false.
    Health(&'static std::sync::atomic::AtomicBool),
}

/// Test upstream servers on 127.0.0.1, run on their own runtime thread until the process
/// exits. Each echoes the path and Host it saw in `x-seen-path` / `x-seen-host`.
pub fn spawn_upstreams(specs: &[(&str, Behaviour)]) -> Vec<std::net::SocketAddr> {
    let (tx, rx) = mpsc::channel();
    let specs: Vec<(String, Behaviour)> = specs.iter().map(|(n, b)| (n.to_string(), *b)).collect();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut addrs = Vec::new();
            for (name, behaviour) in specs {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addrs.push(listener.local_addr().unwrap());
                let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
                tokio::spawn(async move {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let (name, counter) = (name.clone(), counter.clone());
                        tokio::spawn(async move {
                            let svc = hyper::service::service_fn(
                                move |mut req: hyper::Request<hyper::body::Incoming>| {
                                    let (name, counter) = (name.clone(), counter.clone());
                                    async move {
                                        if let Some(proto) = req.headers().get("upgrade").cloned() {
                                            // An upgrade: agree, then echo whatever arrives.
                                            let on = hyper::upgrade::on(&mut req);
                                            tokio::spawn(async move {
                                                if let Ok(up) = on.await {
                                                    let io = hyper_util::rt::TokioIo::new(up);
                                                    let (mut r, mut w) = tokio::io::split(io);
                                                    let _ = tokio::io::copy(&mut r, &mut w).await;
                                                }
                                            });
                                            let resp = hyper::Response::builder()
                                                .status(101)
                                                .header("connection", "upgrade")
                                                .header("upgrade", proto)
                                                .body(
                                                    http_body_util::Full::new(bytes::Bytes::new()),
                                                )
                                                .unwrap();
                                            return Ok::<_, std::convert::Infallible>(resp);
                                        }
                                        let path = req.uri().path().to_owned();
                                        let host = req
                                            .headers()
                                            .get("host")
                                            .and_then(|h| h.to_str().ok())
                                            .unwrap_or("")
                                            .to_owned();
                                        let n = counter
                                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                        let (status, body) = match behaviour {
                                            Behaviour::Slow(d) => {
                                                tokio::time::sleep(d).await;
                                                (200, name.clone())
                                            }
                                            Behaviour::Health(up)
                                                if path == "/ping"
                                                    && !up.load(
                                                        std::sync::atomic::Ordering::Relaxed,
                                                    ) =>
                                            {
                                                (500, "unhealthy".to_owned())
                                            }
                                            Behaviour::Flaky if n % 2 == 0 => {
                                                (503, "try again".to_owned())
                                            }
                                            _ if path == "/ping" => (200, String::new()),
                                            _ => (200, name.clone()),
                                        };
                                        let resp = hyper::Response::builder()
                                            .status(status)
                                            .header("x-seen-path", path)
                                            .header("x-seen-host", host)
                                            .body(http_body_util::Full::new(bytes::Bytes::from(
                                                body,
                                            )))
                                            .unwrap();
                                        Ok::<_, std::convert::Infallible>(resp)
                                    }
                                },
                            );
                            let _ = hyper_util::server::conn::auto::Builder::new(
                                hyper_util::rt::TokioExecutor::new(),
                            )
                            .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tcp), svc)
                            .await;
                        });
                    }
                });
            }
            tx.send(addrs).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("upstreams started")
}

/// A running proxy (`appliance gateway` or `sidecar`), killed on drop.
pub struct Proxy {
    pub child: Child,
    /// role -> address, for every `listening on` line seen at start.
    pub addrs: std::collections::HashMap<String, String>,
    /// What it logged so far (the first 20,000 lines).
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proxy {
    /// Starts `appliance <args>` and waits for the listed roles to report their addresses.
    pub fn start(args: &[&str], roles: &[&str]) -> Proxy {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn appliance proxy");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let kept = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("APPLIANCE_TEST_LOG").is_some() {
                    eprintln!("[proxy] {line}");
                }
                {
                    // For the failure message of a proxy that exits early, and `wait_for_log`.
                    let mut kept = kept.lock().unwrap();
                    if kept.len() < 20_000 {
                        kept.push(line.clone());
                    }
                }
                if let (Some(role), Some(rest)) = (
                    line.split("role=\"").nth(1),
                    line.split("listening on ").nth(1),
                ) {
                    let role = role.split('"').next().unwrap_or_default().to_owned();
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    tx.send((role, addr)).ok();
                }
            }
        });
        let mut addrs = std::collections::HashMap::new();
        while !roles.iter().all(|r| addrs.contains_key(*r)) {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok((role, addr)) => {
                    addrs.insert(role, addr);
                }
                Err(e) => {
                    // Say why: the exit status if it died, and what it logged.
                    let status = exit_reason(&mut child, e);
                    panic!(
                        "`appliance {}` did not report its listeners {roles:?} ({e}); {status}; \
                         it logged:\n{}",
                        args.join(" "),
                        seen.lock()
                            .unwrap()
                            .iter()
                            .take(200)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join("\n")
                    );
                }
            }
        }
        Proxy {
            child,
            addrs,
            log: seen,
        }
    }

    /// The first line of the proxy's log containing every one of `needles`, waited for up
    /// to 10 s.
    pub fn wait_for_log(&self, needles: &[&str]) -> String {
        let start = std::time::Instant::now();
        loop {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no log line with {needles:?} in:\n{}",
                self.log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A sidecar run from the compiled config file `config`, in front of `app`, every
    /// listener on a port of its own choosing; waits for `roles` (of `sidecar-inbound`,
    /// `sidecar-egress`, `admin`).
    pub fn sidecar_from_file(config: &Path, app: &str, roles: &[&str]) -> Proxy {
        Proxy::start(
            &[
                "sidecar",
                "--config",
                config.to_str().expect("a UTF-8 path"),
                "--app",
                app,
                "--listen",
                "127.0.0.1:0",
                "--egress-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ],
            roles,
        )
    }

    pub fn url(&self, role: &str, path: &str) -> String {
        format!("http://{}{path}", self.addrs[role])
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

pub const D: &str = "default.svc.cluster.local";

pub fn ok(api: &Api, method: &str, path: &str, body: String) {
    let (s, _, b) = api.call(method, path, Some(&body));
    assert_eq!(s, 200, "{path}: {b}");
}

/// The walkthrough mesh (without TLS); `route1`, when not empty, replaces router 1's route spec.
pub fn walkthrough(api: &Api, route1: &str) {
    ok(
        api,
        "PUT",
        "/v20190125/meshes",
        r#"{"meshName":"ColorApp"}"#.into(),
    );
    for color in ["white", "blue", "black", "red"] {
        ok(
            api,
            "PUT",
            "/v20190125/meshes/ColorApp/virtualNodes",
            format!(
                r#"{{"virtualNodeName":"colorteller-{color}-vn","spec":{{"listeners":[{{"portMapping":{{"port":9080,"protocol":"http"}},"healthCheck":{{"healthyThreshold":2,"intervalMillis":5000,"path":"/ping","protocol":"http","timeoutMillis":2000,"unhealthyThreshold":2}}}}],"serviceDiscovery":{{"dns":{{"hostname":"colorteller-{color}.{D}"}}}},"backends":[{{"virtualService":{{"virtualServiceName":"colorteller-2.{D}"}}}}]}}}}"#
            ),
        );
    }
    for (i, a, b) in [(1, "white", "blue"), (2, "black", "red")] {
        ok(
            api,
            "PUT",
            "/v20190125/meshes/ColorApp/virtualRouters",
            format!(
                r#"{{"virtualRouterName":"colorteller-vr-{i}","spec":{{"listeners":[{{"portMapping":{{"port":9080,"protocol":"http"}}}}]}}}}"#
            ),
        );
        let spec = if i == 1 && !route1.is_empty() {
            route1.to_owned()
        } else {
            format!(
                r#"{{"httpRoute":{{"match":{{"prefix":"/tell"}},"action":{{"weightedTargets":[{{"virtualNode":"colorteller-{a}-vn","weight":1}},{{"virtualNode":"colorteller-{b}-vn","weight":1}}]}}}}}}"#
            )
        };
        ok(
            api,
            "PUT",
            &format!("/v20190125/meshes/ColorApp/virtualRouter/colorteller-vr-{i}/routes"),
            format!(r#"{{"routeName":"colorteller-route-{i}","spec":{spec}}}"#),
        );
        ok(
            api,
            "PUT",
            "/v20190125/meshes/ColorApp/virtualServices",
            format!(
                r#"{{"virtualServiceName":"colorteller-{i}.{D}","spec":{{"provider":{{"virtualRouter":{{"virtualRouterName":"colorteller-vr-{i}"}}}}}}}}"#
            ),
        );
    }
    ok(api, "PUT", "/v20190125/meshes/ColorApp/virtualGateways", r#"{"virtualGatewayName":"colorgateway-vg","spec":{"listeners":[{"portMapping":{"port":9080,"protocol":"http"}}]}}"#.into());
    for i in 1..=2 {
        ok(
            api,
            "PUT",
            "/v20190125/meshes/ColorApp/virtualGateway/colorgateway-vg/gatewayRoutes",
            format!(
                r#"{{"gatewayRouteName":"colorgateway-route-{i}","spec":{{"httpRoute":{{"match":{{"prefix":"/color{i}"}},"action":{{"target":{{"virtualService":{{"virtualServiceName":"colorteller-{i}.{D}"}}}}}}}}}}}}"#
            ),
        );
    }
}

/// A port on 127.0.0.1 for a child that must be told its port before it binds (a sidecar
/// advertises `--listen` as its node's endpoint before it has a config to bind from, so it
/// cannot take port 0). Ports come from below the kernel's ephemeral range, which `bind(0)`
/// and outgoing connections never use, so no other socket on the machine takes one between
/// this check and the child's bind; within this process each port is handed out once, and the
/// start is spread by pid so two test processes running at once rarely probe the same ports.
/// Where a child can bind port 0 and report it, use that instead.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (base, span) = (
        low.saturating_sub(12_000).max(1024),
        low.saturating_sub(1024).min(12_000),
    );
    let offset = (std::process::id() * 997) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (base + (offset + n) % span) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range ({low})");
}

impl Api {
    /// The SigV4 headers (with `host` and `content-type`) for a request, for tests that send
    /// it by hand over a raw socket.
    pub fn signed_headers(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Vec<(String, String)> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let url = format!("{}{}", self.endpoint, path_and_query);
        let host = self.endpoint.trim_start_matches("http://").to_owned();
        let identity =
            aws_credential_types::Credentials::new(&self.key_id, &self.secret, None, None, "test")
                .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-west-2")
            .name("appmesh")
            .time(std::time::SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let headers = [
            ("host", host.as_str()),
            ("content-type", "application/json"),
        ];
        let signable =
            SignableRequest::new(method, &url, headers.into_iter(), SignableBody::Bytes(body))
                .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut out: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (name, value) in instructions.headers() {
            out.push((name.to_owned(), value.to_owned()));
        }
        out
    }
}

/// Why a child never reported its listeners: its exit status if its stderr closed (it is
/// exiting, so the wait is short), else it is killed after the 30 s wait.
fn exit_reason(child: &mut Child, e: mpsc::RecvTimeoutError) -> String {
    match e {
        mpsc::RecvTimeoutError::Disconnected => match child.wait() {
            Ok(s) => format!("it exited with {s}"),
            Err(e) => format!("its status is unknown ({e})"),
        },
        mpsc::RecvTimeoutError::Timeout => {
            child.kill().ok();
            child.wait().ok();
            "it was still running after 30 s and was killed".to_owned()
        }
    }
}
