//! The admin page, end to end: the real `appliance control` on loopback holding the
//! walkthrough mesh, driven in headless Chromium by tests/browser/admin.mjs (playwright-core
//! with Debian's `chromium`; `.ci/run` installs both). After the browser moves route 1's
//! weights to 100:0, a gateway compiled from the new config sends all traffic to white.
//!
//! The HTTP-level rules (sessions, CSRF, rate limiting, admin users) are checked here too,
//! without a browser, so they hold for any client.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{render, spawn_upstreams, Api, Behaviour, Control, Proxy};
use serde_json::{json, Value};

const D: &str = "default.svc.cluster.local";
const GATEWAY: &str = "mesh/ColorApp/virtualGateway/colorgateway-vg";
const COLORS: [&str; 4] = ["white", "blue", "black", "red"];

fn ok(api: &Api, method: &str, path: &str, body: &Value) {
    let (s, _, b) = api.call(method, path, Some(&body.to_string()));
    assert_eq!(s, 200, "{method} {path}: {b}");
}

/// A walkthrough fixture with its variables bound and the resource's name added, as the
/// walkthrough's `aws appmesh create-* --cli-input-json` calls send it.
fn fixture(file: &str, vars: &[(&str, &str)], name_field: &str, name: &str) -> Value {
    let mut body: Value = serde_json::from_str(&render(file, vars)).expect("fixture is JSON");
    body[name_field] = json!(name);
    body
}

/// The walkthrough's ColorApp mesh from demo/walkthrough, with a plain-HTTP
/// gateway listener (the fixture's needs an ACM certificate; TLS is not under test here).
fn walkthrough(api: &Api) {
    let m = "/v20190125/meshes";
    ok(
        api,
        "PUT",
        m,
        &fixture("mesh.json", &[], "meshName", "ColorApp"),
    );
    for color in COLORS {
        let host = format!("colorteller-{color}.{D}");
        let body = fixture(
            &format!("colorteller-{color}-vn.json"),
            &[("DNS_HOSTNAME", &host)],
            "virtualNodeName",
            &format!("colorteller-{color}-vn"),
        );
        ok(api, "PUT", &format!("{m}/ColorApp/virtualNodes"), &body);
    }
    for i in 1..=2 {
        let router = format!("colorteller-vr-{i}");
        let vr = fixture(&format!("{router}.json"), &[], "virtualRouterName", &router);
        ok(api, "PUT", &format!("{m}/ColorApp/virtualRouters"), &vr);
        let route = fixture(
            &format!("colorteller-route-{i}.json"),
            &[],
            "routeName",
            &format!("colorteller-route-{i}"),
        );
        let routes = format!("{m}/ColorApp/virtualRouter/{router}/routes");
        ok(api, "PUT", &routes, &route);
        let vs = fixture(
            &format!("colorteller-vs-{i}.json"),
            &[],
            "virtualServiceName",
            &format!("colorteller-{i}.{D}"),
        );
        ok(api, "PUT", &format!("{m}/ColorApp/virtualServices"), &vs);
    }
    let vg = json!({
        "virtualGatewayName": "colorgateway-vg",
        "spec": {"listeners": [{"portMapping": {"port": 9080, "protocol": "http"}}]}
    });
    ok(api, "PUT", &format!("{m}/ColorApp/virtualGateways"), &vg);
    for i in 1..=2 {
        let service = format!("colorteller-{i}.{D}");
        let gr = fixture(
            &format!("colorgateway-route-{i}.json"),
            &[("VIRTUALSERVICE_NAME", &service)],
            "gatewayRouteName",
            &format!("colorgateway-route-{i}"),
        );
        let path = format!("{m}/ColorApp/virtualGateway/colorgateway-vg/gatewayRoutes");
        ok(api, "PUT", &path, &gr);
    }
}

fn credential(c: &Control, field: &str) -> String {
    let text = std::fs::read_to_string(c.credentials()).expect("credentials file");
    text.lines()
        .find_map(|l| {
            l.split_once('=')
                .filter(|(k, _)| k.trim() == field)
                .map(|(_, v)| v.trim().to_owned())
        })
        .expect("credential field")
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// Signs in over HTTP; returns (status, session cookie, CSRF token).
fn sign_in(c: &Control, user: &str, secret: &str) -> (u16, Option<String>, Option<String>) {
    let r = http()
        .post(format!("{}/appliance/v1/admin/session", c.endpoint()))
        .json(&json!({ "user": user, "secret": secret }))
        .send()
        .expect("sign-in sent");
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let body: Value = r.json().unwrap_or(Value::Null);
    let csrf = body["csrfToken"].as_str().map(str::to_owned);
    (status, cookie, csrf)
}

/// Compiles the gateway's config against the upstreams and starts a gateway on it.
fn start_gateway(c: &Control, endpoints: &[(String, std::net::SocketAddr)], dir: &Path) -> Proxy {
    let mut args = vec!["compile".to_owned(), "--identity".into(), GATEWAY.into()];
    for (node, addr) in endpoints {
        args.extend(["--endpoint".into(), format!("{node}={addr}")]);
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = c.ctl(&a);
    assert_eq!(out.code, 0, "compile: {}", out.stderr);
    let path = dir.join("gateway.json");
    std::fs::write(&path, &out.stdout).expect("config written");
    let cfg = path.to_string_lossy().into_owned();
    Proxy::start(
        &[
            "gateway",
            "--config",
            &cfg,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &["gateway", "admin"],
    )
}

fn colors_seen(gateway: &Proxy, n: usize) -> Vec<String> {
    let client = http();
    (0..n)
        .map(|_| {
            let r = client
                .get(gateway.url("gateway", "/color1/tell"))
                .send()
                .expect("request through the gateway");
            assert_eq!(r.status(), 200);
            r.text().expect("body")
        })
        .collect()
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[test]
fn admin_page_signs_in_draws_the_mesh_and_shifts_traffic_to_one_colour() {
    let c = Control::start();
    let api = Api::new(&c);
    walkthrough(&api);
    let ups = spawn_upstreams(&COLORS.map(|color| (color, Behaviour::Color)));
    let endpoints: Vec<(String, std::net::SocketAddr)> = COLORS
        .iter()
        .map(|color| format!("colorteller-{color}-vn"))
        .zip(ups)
        .collect();
    let tmp = tempfile::tempdir().expect("tempdir");

    // Before: route 1 splits 1:1 between white and blue.
    let gateway = start_gateway(&c, &endpoints, tmp.path());
    let before = colors_seen(&gateway, 40);
    assert!(
        before.iter().any(|c| c == "white") && before.iter().any(|c| c == "blue"),
        "{before:?}"
    );
    drop(gateway);

    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules is missing: run `npm ci` in tests/browser (as .ci/run does)"
    );
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let out = Command::new("node")
        .arg(browser_dir().join("admin.mjs"))
        .arg(c.endpoint())
        .arg(credential(&c, "aws_access_key_id"))
        .arg(credential(&c, "aws_secret_access_key"))
        .arg(&shots)
        .output()
        .expect("node runs (install nodejs, as .ci/run does)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}\ncontrol plane log:\n{}",
        c.log_text()
    );
    for step in [
        "PASS a page fetched without a session is refused",
        "PASS a wrong secret is refused",
        "PASS signing in with the access key shows the meshes",
        "PASS the walkthrough mesh's picture shows every resource with weights",
        "PASS moving the weights to 100:0 writes one UpdateRoute",
        "PASS the admins view adds a user, sets a new password and removes the user",
        "PASS a write without the CSRF token is refused",
        "ALL PASSED",
    ] {
        assert!(stdout.contains(step), "missing `{step}` in:\n{stdout}");
    }

    // The browser's UpdateRoute landed: DescribeRoute shows 100:0.
    let (s, _, route) = api.call(
        "GET",
        "/v20190125/meshes/ColorApp/virtualRouter/colorteller-vr-1/routes/colorteller-route-1",
        None,
    );
    assert_eq!(s, 200, "{route}");
    let targets = &route["spec"]["httpRoute"]["action"]["weightedTargets"];
    assert_eq!(
        targets[0],
        json!({"virtualNode": "colorteller-white-vn", "weight": 100})
    );
    assert_eq!(
        targets[1],
        json!({"virtualNode": "colorteller-blue-vn", "weight": 0})
    );

    // After: every request goes to white. A gateway run from a compiled file does not pick
    // up changes, so it is recompiled and restarted here; once config push over QUIC lands,
    // this restart goes and the running gateway is watched switching instead.
    let gateway = start_gateway(&c, &endpoints, tmp.path());
    let after = colors_seen(&gateway, 20);
    assert!(after.iter().all(|c| c == "white"), "{after:?}");
}

#[test]
fn session_writes_need_the_csrf_token_and_pages_need_a_session() {
    let c = Control::start();
    let e = c.endpoint();
    let client = http();
    let r = client.get(format!("{e}/")).send().expect("sent");
    assert_eq!(r.status(), 303, "no session: to the sign-in page");
    assert_eq!(r.headers()["location"], "/signin");
    let r = client.get(format!("{e}/ui/app.js")).send().expect("sent");
    assert_eq!(r.status(), 401);
    let r = client
        .get(format!("{e}/ui/signin.js"))
        .send()
        .expect("sent");
    assert_eq!(r.status(), 200, "the sign-in page's own script is public");
    assert_eq!(r.headers()["x-frame-options"], "DENY");

    let (status, cookie, csrf) = sign_in(
        &c,
        &credential(&c, "aws_access_key_id"),
        &credential(&c, "aws_secret_access_key"),
    );
    assert_eq!(status, 200);
    let (cookie, csrf) = (cookie.expect("session cookie"), csrf.expect("CSRF token"));
    let r = client
        .get(format!("{e}/"))
        .header("cookie", &cookie)
        .send()
        .expect("sent");
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );

    let put = |token: Option<&str>| {
        let mut rb = client
            .put(format!("{e}/v20190125/meshes"))
            .header("cookie", &cookie)
            .json(&json!({ "meshName": "m1" }));
        if let Some(t) = token {
            rb = rb.header("x-csrf-token", t);
        }
        rb.send().expect("sent").status().as_u16()
    };
    assert_eq!(put(None), 403, "no CSRF token");
    assert_eq!(put(Some("wrong")), 403, "wrong CSRF token");
    assert_eq!(put(Some(&csrf)), 200, "the session's token");
    let r = client
        .get(format!("{e}/v20190125/meshes"))
        .header("cookie", &cookie)
        .send()
        .expect("sent");
    assert_eq!(r.status(), 200, "reads need no token");

    let r = client
        .delete(format!("{e}/appliance/v1/admin/session"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .expect("sent");
    assert_eq!(r.status(), 204);
    let r = client
        .get(format!("{e}/v20190125/meshes"))
        .header("cookie", &cookie)
        .send()
        .expect("sent");
    assert_eq!(r.status(), 403, "signed out");
}

#[test]
fn failed_sign_ins_are_rate_limited() {
    let c = Control::start();
    let id = credential(&c, "aws_access_key_id");
    for n in 0..5 {
        assert_eq!(sign_in(&c, &id, "wrong").0, 401, "attempt {n}");
    }
    assert_eq!(sign_in(&c, &id, "wrong").0, 429);
    let good = credential(&c, "aws_secret_access_key");
    assert_eq!(
        sign_in(&c, &id, &good).0,
        429,
        "even the right secret waits out the lock"
    );
}

#[test]
fn create_admin_makes_a_user_who_can_sign_in() {
    let c = Control::start();
    let out = c.ctl(&["create-admin", "--user-name", "ops"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let made: Value = serde_json::from_str(&out.stdout).expect("JSON output");
    assert_eq!(made["UserName"], "ops");
    let password = made["Password"]
        .as_str()
        .expect("a generated password")
        .to_owned();
    assert_eq!(sign_in(&c, "ops", &password).0, 200);
    assert_eq!(sign_in(&c, "ops", "not-the-password").0, 401);
    let again = c.ctl(&[
        "create-admin",
        "--user-name",
        "ops",
        "--password",
        "long enough password",
    ]);
    assert_ne!(again.code, 0, "an existing user is not overwritten");
    assert!(
        again.stderr.contains("ConflictException"),
        "{}",
        again.stderr
    );
    let short = c.ctl(&["create-admin", "--user-name", "dev", "--password", "short"]);
    assert_ne!(short.code, 0);
    assert!(short.stderr.contains("Password"), "{}", short.stderr);
}
