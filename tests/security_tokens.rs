//! Join tokens and identities: tokens kept out of the process list (`--token-file`) and not
//! spent by an enrolment refused for another reason (a CSR that does not parse); revoking
//! only identities that exist, and lifting a revocation.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{walkthrough, Api, Control, Proxy, BIN};

const GATEWAY: &str = "mesh/ColorApp/virtualGateway/colorgateway-vg";

fn token(c: &Control, extra: &[&str]) -> String {
    let mut args = vec!["create-join-token", "--identity", GATEWAY];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--query", "token", "--output", "text"]);
    let out = c.ctl(&args);
    assert_eq!(out.code, 0, "create-join-token: {}", out.stderr);
    out.stdout.trim().to_owned()
}

fn gateway_args<'a>(c: &'a Control, state: &'a str, token: [&'a str; 2]) -> Vec<&'a str> {
    vec![
        "gateway",
        "--control",
        &c.sync,
        token[0],
        token[1],
        "--state-dir",
        state,
        "--identity",
        GATEWAY,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]
}

#[test]
fn a_proxy_enrols_with_a_token_file_and_the_token_is_not_in_its_command_line() {
    let c = Control::start();
    walkthrough(&Api::new(&c), "");
    let t = token(&c, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("token");
    std::fs::write(&file, format!("{t}\n")).unwrap();
    let state = tmp.path().join("state").to_string_lossy().into_owned();
    let file = file.to_string_lossy().into_owned();
    let p = Proxy::start(
        &gateway_args(&c, &state, ["--token-file", &file]),
        &["gateway", "admin"],
    );
    let ready = reqwest::blocking::get(p.url("admin", "/ready")).unwrap();
    assert!(ready.status().is_success() || ready.status() == 503);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.child.id())).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(cmdline.contains("--token-file"), "{cmdline}");
    assert!(!cmdline.contains(&t), "the token is in ps: {cmdline}");
    assert!(
        std::path::Path::new(&state).join("cert.pem").exists()
            || std::fs::read_dir(&state).unwrap().count() > 0,
        "enrolled: the state directory holds credentials"
    );
}

#[test]
fn an_empty_token_file_stops_the_proxy_with_a_clear_error() {
    let c = Control::start();
    walkthrough(&Api::new(&c), "");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("token");
    std::fs::write(&file, "  \n").unwrap();
    let state = tmp.path().join("state").to_string_lossy().into_owned();
    let file = file.to_string_lossy().into_owned();
    let (status, stderr) = run_to_exit(&gateway_args(&c, &state, ["--token-file", &file]));
    assert!(!status.success());
    assert!(
        stderr.contains("--token-file") && stderr.contains("is empty"),
        "{stderr}"
    );
}

#[test]
fn an_enrolment_with_a_bad_csr_does_not_spend_a_single_use_token() {
    use appliance::sync::frame::{self, encode, ToControl, ToProxy};
    let c = Control::start();
    walkthrough(&Api::new(&c), "");
    let t = token(&c, &["--single-use"]);
    let pin = appliance::sync::JoinToken::parse(&t).unwrap().ca_pin;
    let sync: std::net::SocketAddr = c.sync.parse().unwrap();
    let enrol = encode(ToControl::Enrol {
        token: t.clone(),
        identity: GATEWAY.into(),
        csr_pem:
            "-----BEGIN CERTIFICATE REQUEST-----\nnot a CSR\n-----END CERTIFICATE REQUEST-----\n"
                .into(),
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answer = rt.block_on(async {
        let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let cfg = appliance::sync::tls::enrol_client_config(pin).unwrap();
        let conn = ep
            .connect_with(cfg, sync, "appliance-control")
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&enrol).await.unwrap();
        let _ = send.finish();
        tokio::time::timeout(
            Duration::from_secs(15),
            frame::read::<ToProxy, _>(&mut recv, frame::MAX_TO_PROXY),
        )
        .await
        .expect("an answer")
    });
    let Ok(Some(ToProxy::Refused { reason })) = answer else {
        panic!("refused, got {answer:?}");
    };
    assert!(reason.contains("certificate signing request"), "{reason}");
    // The token still enrols a real proxy.
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state").to_string_lossy().into_owned();
    let _p = Proxy::start(
        &gateway_args(&c, &state, ["--token", &t]),
        &["gateway", "admin"],
    );
}

/// Runs `appliance ARGS` until it exits (at most 30 s): its status and stderr.
fn run_to_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{args:?} did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

#[test]
fn revoking_an_identity_that_does_not_exist_is_refused() {
    let c = Control::start();
    walkthrough(&Api::new(&c), "");
    let out = c.ctl(&[
        "revoke-identity",
        "--identity",
        "mesh/ColorApp/virtualNode/colorteller-whyte-vn",
    ]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("NotFoundException"), "{}", out.stderr);
    let out = c.ctl(&["unrevoke-identity", "--identity", GATEWAY]);
    assert_ne!(out.code, 0, "not revoked");
    assert!(out.stderr.contains("is not revoked"), "{}", out.stderr);
}

#[test]
fn an_unrevoked_identity_enrols_again() {
    let c = Control::start();
    walkthrough(&Api::new(&c), "");
    // A token made before the revocation: refused while it lasts, and not spent by that.
    let t = token(&c, &["--single-use"]);
    assert_eq!(c.ctl(&["revoke-identity", "--identity", GATEWAY]).code, 0);
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("a").to_string_lossy().into_owned();
    let (status, stderr) = run_to_exit(&gateway_args(&c, &state, ["--token", &t]));
    assert!(!status.success());
    assert!(stderr.contains("is revoked"), "{stderr}");
    assert_eq!(c.ctl(&["unrevoke-identity", "--identity", GATEWAY]).code, 0);
    let state = tmp.path().join("b").to_string_lossy().into_owned();
    let _p = Proxy::start(
        &gateway_args(&c, &state, ["--token", &t]),
        &["gateway", "admin"],
    );
}
