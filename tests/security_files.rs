//! Security hardening (issue 16), on the file system and in the logs: where keys, secrets
//! and the store live (no symlinks, no foreign files, owner-only modes), and log lines that
//! user input cannot forge. Names and paths the API refuses are here too.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Api, Control, BIN};

/// Runs `appliance <args>` until it exits (or 60 s pass, when it is killed); returns
/// (exited by itself, stderr).
fn run_to_exit(args: &[&str]) -> (bool, String) {
    let tmp = tempfile::tempdir().unwrap();
    let err_path = tmp.path().join("stderr");
    let mut child = Command::new(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn appliance");
    let deadline = Instant::now() + Duration::from_secs(60);
    let exited = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        exited,
        std::fs::read_to_string(&err_path).unwrap_or_default(),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// === files ===

#[test]
fn the_store_is_created_owner_only() {
    let c = Control::start();
    assert_eq!(mode(&c.data_dir.join("store.redb")), 0o600);
    assert_eq!(mode(&c.data_dir), 0o700);
}

/// Regression: a symlinked `--data-dir` was followed and its target chmodded.
#[test]
fn a_symlinked_data_dir_is_refused_and_its_target_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = tmp.path().join("data");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (exited, stderr) = run_to_exit(&[
        "control",
        "--data-dir",
        link.to_str().unwrap(),
        "--api-listen",
        "127.0.0.1:0",
        "--sync-listen",
        "127.0.0.1:0",
    ]);
    assert!(exited, "the control plane started on a symlinked data dir");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(mode(&target), 0o755, "the link's target was chmodded");
}

/// Regression: a dangling `store.redb` symlink created the database where it pointed.
#[test]
fn a_dangling_store_symlink_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let elsewhere = tmp.path().join("planted.redb");
    std::os::unix::fs::symlink(&elsewhere, data.join("store.redb")).unwrap();
    let (exited, stderr) = run_to_exit(&[
        "control",
        "--data-dir",
        data.to_str().unwrap(),
        "--api-listen",
        "127.0.0.1:0",
        "--sync-listen",
        "127.0.0.1:0",
    ]);
    assert!(exited, "the control plane started on a symlinked store");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(
        !elsewhere.exists(),
        "the database was created through the link"
    );
}

/// Regression: a symlinked `identity` file in a proxy's state dir was read and printed
/// whole in the error.
#[test]
fn a_symlinked_identity_file_is_refused_without_printing_it() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let secret = tmp.path().join("secret.txt");
    std::fs::write(&secret, "TOP-SECRET-CONTENT\n").unwrap();
    std::os::unix::fs::symlink(&secret, state.join("identity")).unwrap();
    let (exited, stderr) = run_to_exit(&[
        "sidecar",
        "--control",
        "127.0.0.1:9",
        "--state-dir",
        state.to_str().unwrap(),
        "--identity",
        "mesh/m/virtualNode/n",
        "--app",
        "127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        "--egress-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    assert!(exited, "the sidecar started on a symlinked identity file");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(!stderr.contains("TOP-SECRET"), "{stderr}");
}

#[test]
fn a_symlinked_state_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    let link = tmp.path().join("state");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (exited, stderr) = run_to_exit(&[
        "gateway",
        "--control",
        "127.0.0.1:9",
        "--state-dir",
        link.to_str().unwrap(),
        "--identity",
        "mesh/m/virtualGateway/g",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    assert!(exited, "the gateway started on a symlinked state dir");
    assert!(stderr.contains("symbolic link"), "{stderr}");
}

/// Regression: `appliance demo` followed what was already in its directory: a planted link
/// for a log was written through, and the directory stayed 0755.
#[test]
fn the_demo_refuses_a_planted_log_link_and_makes_its_directory_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let victim = tmp.path().join("victim");
    std::os::unix::fs::symlink(&victim, dir.join("logs/control.log")).unwrap();
    let (exited, stderr) = run_to_exit(&[
        "demo",
        "--data-dir",
        dir.to_str().unwrap(),
        "--api-listen",
        "127.0.0.1:0",
        "--gateway-listen",
        "127.0.0.1:0",
    ]);
    assert!(exited, "the demo ran on a planted log link");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(!victim.exists(), "the log was written through the link");
    assert_eq!(mode(&dir), 0o700);
}

// === logs ===

/// Regression: a newline in the sign-in user name forged a log line of its own.
#[test]
fn a_newline_in_the_sign_in_user_name_cannot_forge_a_log_line() {
    let c = Control::start();
    let status = reqwest::blocking::Client::new()
        .post(format!("{}/appliance/v1/admin/session", c.endpoint()))
        .json(&serde_json::json!({
            "user": "ops\nINFO appliance: admin signed in user=root",
            "secret": "wrong",
        }))
        .send()
        .expect("sign-in sent")
        .status();
    assert_eq!(status, 401);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.log_text().contains("sign-in failed") {
        assert!(Instant::now() < deadline, "no sign-in failure logged");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = c.log_text();
    assert!(
        !log.lines()
            .any(|l| l.starts_with("INFO appliance: admin signed in")),
        "{log}"
    );
}

// === names and paths ===

fn meshes(api: &Api) -> serde_json::Value {
    let (s, _, body) = api.call("GET", "/v20190125/meshes", None);
    assert_eq!(s, 200);
    body["meshes"].clone()
}

/// Regression: `.` and `..` were accepted as names; such a resource could not be described
/// or deleted with the AWS CLI (which resolves them away before signing).
#[test]
fn dot_only_and_invisible_names_are_refused_naming_the_field() {
    let c = Control::start();
    let api = Api::new(&c);
    for name in [
        ".",
        "..",
        "...",
        "abc\u{202E}gpj",
        "a\u{200B}b",
        "\u{FEFF}x",
    ] {
        let body = serde_json::json!({ "meshName": name }).to_string();
        let (s, kind, b) = api.call("PUT", "/v20190125/meshes", Some(&body));
        assert_eq!(s, 400, "{name:?}: {b}");
        assert_eq!(kind.as_deref(), Some("BadRequestException"));
        assert!(b["message"].as_str().unwrap().contains("meshName"), "{b}");
    }
    assert_eq!(meshes(&api), serde_json::json!([]), "nothing was stored");
}

/// Regression: a DNS hostname such as `<img src=x>` was accepted.
#[test]
fn a_dns_hostname_that_is_not_a_host_name_is_refused() {
    let c = Control::start();
    let api = Api::new(&c);
    common::ok(
        &api,
        "PUT",
        "/v20190125/meshes",
        r#"{"meshName":"m"}"#.into(),
    );
    for host in ["<img src=x onerror=alert(1)>", "a..b", "-a.local", "a b"] {
        let body = serde_json::json!({
            "virtualNodeName": "n",
            "spec": {"serviceDiscovery": {"dns": {"hostname": host}}},
        })
        .to_string();
        let (s, _, b) = api.call("PUT", "/v20190125/meshes/m/virtualNodes", Some(&body));
        assert_eq!(s, 400, "{host:?}: {b}");
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .contains("spec.serviceDiscovery.dns.hostname"),
            "{b}"
        );
    }
    let (s, _, b) = api.call("GET", "/v20190125/meshes/m/virtualNodes", None);
    assert_eq!(s, 200);
    assert_eq!(
        b["virtualNodes"],
        serde_json::json!([]),
        "nothing was stored"
    );
}

/// Regression: the signature was checked against the path with `.`/`..` resolved while the
/// router took the raw path, so a request signed for one path acted on another.
#[test]
fn a_path_with_dot_segments_is_refused_before_its_signature_is_checked() {
    use std::io::{Read, Write};
    let c = Control::start();
    for path in [
        "/v20190125/meshes/m/virtualRouters/..",
        "/v20190125/meshes/m/virtualRouters/%2E%2E",
        "/v20190125/meshes/./m",
    ] {
        let mut s = std::net::TcpStream::connect(&c.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/appmesh/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\nX-Amz-Date: 20260101T000000Z\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 400"), "{path}: {reply}");
        assert!(reply.contains("BadRequestException"), "{path}: {reply}");
        assert!(reply.contains("path"), "{path}: {reply}");
    }
}
