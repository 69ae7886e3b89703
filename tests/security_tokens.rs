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

/// Runs curl with `args`: exit code and HTTP status (0 when there was no answer).
fn curl(args: &[&str]) -> (i32, u16) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            "10",
            "-w",
            "%{http_code}",
        ])
        .args(args)
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (out.status.code().unwrap_or(-1), code)
}

/// Node `app` (a STRICT listener validating the mesh CA) with its sidecar, and node `client`
/// enrolled only for its leaf, which the tests present by hand.
struct StrictApp {
    server: Proxy,
    _client: Proxy,
    _tmp: tempfile::TempDir,
    port: String,
    creds: std::path::PathBuf,
}

impl StrictApp {
    fn start(c: &Control) -> StrictApp {
        let api = Api::new(c);
        for (path, body) in [
            ("/v20190125/meshes", r#"{"meshName":"m"}"#),
            (
                "/v20190125/meshes/m/virtualNodes",
                r#"{"virtualNodeName":"app","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"},
                    "tls":{"mode":"STRICT","certificate":{"sds":{"secretName":"app"}},
                        "validation":{"trust":{"sds":{"secretName":"ca"}}}}}],
                    "serviceDiscovery":{"dns":{"hostname":"app.local"}}}}"#,
            ),
            (
                "/v20190125/meshes/m/virtualNodes",
                r#"{"virtualNodeName":"client","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}}"#,
            ),
        ] {
            let (s, _, b) = api.call("PUT", path, Some(body));
            assert_eq!(s, 200, "{path}: {b}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let app = common::spawn_upstreams(&[("app", common::Behaviour::Color)])[0];
        let listen = format!("127.0.0.1:{}", common::free_port());
        let sidecar = |identity: &str, dir: &str, listen: &str| {
            let state = tmp.path().join(dir).to_string_lossy().into_owned();
            let t = c.join_token(identity);
            Proxy::start(
                &[
                    "sidecar",
                    "--control",
                    &c.sync,
                    "--token",
                    &t,
                    "--state-dir",
                    &state,
                    "--identity",
                    identity,
                    "--app",
                    &app.to_string(),
                    "--listen",
                    listen,
                    "--egress-listen",
                    "127.0.0.1:0",
                    "--admin-listen",
                    "127.0.0.1:0",
                ],
                &["sidecar-inbound", "admin"],
            )
        };
        let server = sidecar("mesh/m/virtualNode/app", "app", &listen);
        let client = sidecar("mesh/m/virtualNode/client", "client", "127.0.0.1:0");
        StrictApp {
            server,
            _client: client,
            creds: tmp.path().join("client"),
            _tmp: tmp,
            port: listen.rsplit(':').next().unwrap().to_owned(),
        }
    }

    fn file(&self, name: &str) -> String {
        self.creds.join(name).to_string_lossy().into_owned()
    }

    /// One request with the client's leaf: curl's exit code and the status.
    fn call(&self) -> (i32, u16) {
        let (cacert, cert, key) = (
            self.file("ca.pem"),
            self.file("cert.pem"),
            self.file("key.pem"),
        );
        curl(&[
            "--resolve",
            &format!("app.local:{}:127.0.0.1", self.port),
            "--cacert",
            &cacert,
            "--cert",
            &cert,
            "--key",
            &key,
            &format!("https://app.local:{}/", self.port),
        ])
    }

    fn wait_until_the_client_gets_through(&self) {
        let start = Instant::now();
        while self.call() != (0, 200) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the client never got through: {:?}",
                self.call()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stats(&self) -> String {
        reqwest::blocking::get(self.server.url("admin", "/stats"))
            .unwrap()
            .text()
            .unwrap()
    }
}

fn revoke_client(c: &Control) {
    let out = c.ctl(&["revoke-identity", "--identity", "mesh/m/virtualNode/client"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn a_revoked_identitys_certificate_is_refused_in_the_handshake() {
    let c = Control::start();
    let app = StrictApp::start(&c);
    app.wait_until_the_client_gets_through();
    revoke_client(&c);
    // Its leaf has hours left; the server refuses it in the handshake from its next config
    // on. (A call caught open at that moment is cut instead: the next test's behaviour.)
    let start = Instant::now();
    while !app.stats().contains("reason=\"revoked\"") {
        let _ = app.call();
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no handshake refused as revoked: {}",
            app.stats()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, status) = app.call();
    assert!(
        code != 0 && status == 0,
        "the revoked client got through: {status}"
    );
}

/// A TLS connection to the app's listener with the client's leaf, kept open.
fn open_connection(
    app: &StrictApp,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(app.file("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(app.file("cert.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(app.file("key.pem")).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("app.local").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(format!("127.0.0.1:{}", app.port)).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

#[test]
fn a_revoked_identitys_open_connection_is_closed() {
    use std::io::{Read, Write};
    let c = Control::start();
    let app = StrictApp::start(&c);
    app.wait_until_the_client_gets_through();
    let mut tls = open_connection(&app);
    // One keep-alive exchange proves the connection is up and stays open.
    tls.write_all(b"GET / HTTP/1.1\r\nhost: app.local\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let length: usize = String::from_utf8_lossy(&head)
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a content-length");
    let mut body = vec![0u8; length];
    tls.read_exact(&mut body).unwrap();

    revoke_client(&c);
    // The server closes it, with no request from the client: the next read ends.
    tls.sock
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut rest = Vec::new();
    match tls.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert!(
            e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut,
            "the revoked client's connection stayed open for 20 s"
        ),
    }
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    let stats = app.stats();
    assert!(
        stats.contains("appliance_revoked_connections_closed_total 1"),
        "{stats}"
    );
}
