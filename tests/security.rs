//! Security hardening (issue 16), against the real binary on loopback: the admin sign-in
//! limiter under a parallel burst, per-address limiting over TLS, timing of unknown users,
//! read timeouts and connection caps, names and paths, file modes.
//!
//! The memory and timeout tests print their figures (run with `--nocapture` to see them)
//! and assert generous limits, never millisecond timings.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::Control;
use serde_json::{json, Value};

fn credential(c: &Control, name: &str) -> String {
    let text = std::fs::read_to_string(c.credentials()).expect("credentials");
    text.lines()
        .find_map(|l| {
            l.split_once('=')
                .filter(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().to_owned())
        })
        .expect("credential field")
}

/// A client that connects from `from` (any 127.0.0.0/8 address works on Linux loopback), so
/// one test can play several clients; TLS is accepted without checking (not under test).
fn client_from(from: IpAddr) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .local_address(from)
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

fn sign_in_from(c: &Control, from: IpAddr, user: &str, secret: &str) -> u16 {
    client_from(from)
        .post(format!("{}/appliance/v1/admin/session", c.endpoint()))
        .json(&json!({ "user": user, "secret": secret }))
        .send()
        .expect("sign-in sent")
        .status()
        .as_u16()
}

fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, n))
}

/// Resident memory of a process, in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS line")
}

fn create_admin(c: &Control, user: &str) -> String {
    let out = c.ctl(&["create-admin", "--user-name", user]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let made: Value = serde_json::from_str(&out.stdout).expect("JSON output");
    made["Password"].as_str().expect("password").to_owned()
}

// === admin sign-in ===

/// Regression: the limiter read the failure count, hashed, then recorded the failure, so 57
/// of 60 parallel wrong passwords got a 401 (each an Argon2 run of ~19 MiB) and the control
/// plane grew by about 1 GB.
#[test]
fn a_parallel_burst_of_wrong_passwords_gets_only_the_limit_and_memory_stays_flat() {
    let c = Control::start();
    let password = create_admin(&c, "ops");
    // One good sign-in first, so the hasher's one-off setup is in the baseline.
    assert_eq!(sign_in_from(&c, loopback(9), "ops", &password), 200);
    let pid = c.child.id();
    let before = rss_kib(pid);
    let endpoint = c.endpoint();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(60));
    let threads: Vec<_> = (0..60)
        .map(|i| {
            let (endpoint, barrier) = (endpoint.clone(), barrier.clone());
            std::thread::spawn(move || {
                let client = client_from(loopback(1));
                let request = client
                    .post(format!("{endpoint}/appliance/v1/admin/session"))
                    .json(&json!({ "user": "ops", "secret": format!("wrong guess {i}") }));
                barrier.wait();
                request.send().expect("sign-in sent").status().as_u16()
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let after = rss_kib(pid);
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    println!(
        "60 parallel wrong passwords: {unauthorized} x 401, {limited} x 429; RSS {before} KiB -> {after} KiB (+{} KiB)",
        after.saturating_sub(before)
    );
    assert_eq!(unauthorized + limited, 60, "{statuses:?}");
    assert!(unauthorized <= 5, "{unauthorized} attempts were checked");
    assert!(
        after.saturating_sub(before) < 200 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    assert_eq!(
        sign_in_from(&c, loopback(2), "ops", &password),
        200,
        "another address is not locked out"
    );
}

/// Regression: an unknown user name was answered without a hash (0.7 ms against 22 ms), so
/// timing told which admin users exist. Each sample comes from its own address, so the
/// limiter does not get in the way; the bound is a ratio of 5, far from both 1 and 30.
#[test]
fn an_unknown_user_takes_as_long_to_refuse_as_a_wrong_password() {
    let c = Control::start();
    create_admin(&c, "ops");
    let time = |from: u8, user: &str| {
        let started = Instant::now();
        assert_eq!(
            sign_in_from(&c, loopback(from), user, "not the password"),
            401
        );
        started.elapsed()
    };
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..4u8 {
        known.push(time(10 + i, "ops"));
        unknown.push(time(20 + i, "nobody"));
    }
    let (known, unknown) = (*known.iter().min().unwrap(), *unknown.iter().min().unwrap());
    println!("fastest refusal: existing user {known:?}, unknown user {unknown:?}");
    assert!(
        unknown * 5 >= known,
        "unknown user {unknown:?} against existing user {known:?}"
    );
}

/// Regression: with `--api-tls` every client shared one limiter bucket, so five bad
/// sign-ins from anyone locked every admin out.
#[test]
fn over_tls_failed_sign_ins_lock_out_only_their_own_address() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start_with(&tmp.path().join("data"), &["--api-tls"]);
    let id = credential(&c, "aws_access_key_id");
    for n in 0..5 {
        assert_eq!(
            sign_in_from(&c, loopback(1), &id, "wrong"),
            401,
            "attempt {n}"
        );
    }
    assert_eq!(sign_in_from(&c, loopback(1), &id, "wrong"), 429);
    let secret = credential(&c, "aws_secret_access_key");
    assert_eq!(
        sign_in_from(&c, loopback(2), &id, &secret),
        200,
        "another address signs in"
    );
}

// === read timeouts, header limits, connection caps ===

use std::io::{Read, Write};
use std::net::TcpStream;

/// Reads until the server closes the connection (EOF or reset) or `deadline` passes;
/// returns what it sent and whether it closed.
fn read_until_closed(sock: &mut TcpStream, deadline: Instant) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(250))).ok();
        match sock.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

/// Opens `n` connections that each send half a request head and then nothing, and checks
/// every one is closed by the server; prints how long the last took.
fn slowloris_connections_are_closed(addr: &str, n: usize, what: &str) {
    let started = Instant::now();
    let mut socks: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
                .expect("half a head");
            s
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let closed = socks
        .iter_mut()
        .map(|s| read_until_closed(s, deadline).1)
        .filter(|closed| *closed)
        .count();
    println!(
        "{what}: {closed} of {n} slowloris connections closed by the server after {:?}",
        started.elapsed()
    );
    assert_eq!(closed, n, "{what}: connections left open after 60 s");
}

/// Regression: a request head that never completed kept its connection forever (1,000
/// slowloris connections, none closed in 60 s).
#[test]
fn the_api_closes_connections_whose_request_head_never_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start_with(
        &tmp.path().join("data"),
        &["--header-read-timeout-ms", "1000"],
    );
    slowloris_connections_are_closed(&c.addr, 100, "API (HTTP)");
}

#[test]
fn the_tls_api_closes_connections_whose_request_head_never_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start_with(
        &tmp.path().join("data"),
        &["--api-tls", "--header-read-timeout-ms", "1000"],
    );
    // A TLS client that completes its handshake, then sends half a head.
    let mut closed = 0;
    let started = Instant::now();
    let config = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAnyCert))
        .with_no_client_auth(),
    );
    let mut streams: Vec<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> = (0..20)
        .map(|_| {
            let sock = TcpStream::connect(&c.addr).expect("connect");
            let conn =
                rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap())
                    .expect("tls client");
            let mut tls = rustls::StreamOwned::new(conn, sock);
            tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
                .expect("half a head over TLS");
            tls.flush().ok();
            tls
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for tls in &mut streams {
        let mut buf = [0u8; 1024];
        while Instant::now() < deadline {
            tls.sock
                .set_read_timeout(Some(Duration::from_millis(250)))
                .ok();
            match tls.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    closed += 1;
                    break;
                }
            }
        }
    }
    println!(
        "API (TLS): {closed} of 20 slowloris connections closed after {:?}",
        started.elapsed()
    );
    assert_eq!(closed, 20);
}

#[derive(Debug)]
struct AcceptAnyCert;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A request head with `extra` bytes of headers; returns the status line's code.
fn status_of_oversized_head(addr: &str, extra: usize) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    let head = format!(
        "GET /v20190125/meshes HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(extra)
    );
    let _ = s.write_all(head.as_bytes());
    let (reply, _) = read_until_closed(&mut s, Instant::now() + Duration::from_secs(30));
    reply.split_whitespace().nth(1).unwrap_or("").to_owned()
}

#[test]
fn a_request_head_over_60_kib_is_answered_431() {
    let c = Control::start();
    assert_eq!(status_of_oversized_head(&c.addr, 70 * 1024), "431");
    assert_eq!(
        status_of_oversized_head(&c.addr, 40 * 1024),
        "403",
        "a 40 KiB head is read (and refused for want of a signature)"
    );
}

/// Regression: 300 unfinished 1 MiB unsigned PUTs took the API from 22 to 338 MB: the body
/// was buffered before anyone asked who sent it.
#[test]
fn unsigned_bodies_are_refused_before_they_are_buffered() {
    let c = Control::start();
    let pid = c.child.id();
    let before = rss_kib(pid);
    let mut socks = Vec::new();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..300 {
        let mut s = TcpStream::connect(&c.addr).expect("connect");
        s.set_write_timeout(Some(Duration::from_millis(200))).ok();
        let head = format!(
            "PUT /v20190125/meshes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            1 << 20
        );
        let _ = s.write_all(head.as_bytes());
        for _ in 0..15 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
        socks.push(s);
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(pid);
    println!(
        "300 unsigned, unfinished 1 MiB PUTs: RSS {before} KiB -> {after} KiB (+{} KiB)",
        after.saturating_sub(before)
    );
    let (reply, _) = read_until_closed(&mut socks[0], Instant::now() + Duration::from_secs(30));
    assert!(
        reply.starts_with("HTTP/1.1 403"),
        "an unsigned body is refused without waiting for it: {reply:?}"
    );
    assert!(
        after.saturating_sub(before) < 100 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

/// A signed PUT whose body stops coming is answered once the body read timeout passes
/// (the signature cannot be checked without the body, so the key alone lets it start).
#[test]
fn a_stalled_request_body_is_answered_after_the_body_read_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start_with(
        &tmp.path().join("data"),
        &["--body-read-timeout-ms", "1000"],
    );
    let id = credential(&c, "aws_access_key_id");
    let mut s = TcpStream::connect(&c.addr).expect("connect");
    let head = format!(
        "PUT /v20190125/meshes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nX-Amz-Date: 20260101T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 Credential={id}/20260101/us-east-1/appmesh/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\n\r\n{{\"meshName\""
    );
    s.write_all(head.as_bytes())
        .expect("head and a piece of body");
    let started = Instant::now();
    let (reply, _) = read_until_closed(&mut s, Instant::now() + Duration::from_secs(60));
    println!("stalled body answered after {:?}", started.elapsed());
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");
    assert!(reply.contains("no request body data"), "{reply:?}");
}

#[test]
fn connections_past_the_cap_get_a_clear_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start_with(
        &tmp.path().join("data"),
        &[
            "--max-connections",
            "20",
            "--header-read-timeout-ms",
            "120000",
        ],
    );
    let held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&c.addr).expect("connect"))
        .collect();
    // The accept loop takes them in order; the 21st finds no slot.
    std::thread::sleep(Duration::from_millis(500));
    let mut extra = TcpStream::connect(&c.addr).expect("connect");
    let _ = extra.write_all(b"GET /v20190125/meshes HTTP/1.1\r\nHost: x\r\n\r\n");
    let (reply, closed) = read_until_closed(&mut extra, Instant::now() + Duration::from_secs(30));
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply:?}");
    assert!(reply.contains("too many open connections"), "{reply:?}");
    assert!(closed);
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut s = TcpStream::connect(&c.addr).expect("connect");
        let _ =
            s.write_all(b"GET /v20190125/meshes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (reply, _) = read_until_closed(&mut s, deadline);
        if reply.starts_with("HTTP/1.1 403") {
            break;
        }
        assert!(Instant::now() < deadline, "slots never freed: {reply:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The gateway's listener, from a compiled walkthrough config; extra flags appended.
fn gateway(c: &Control, dir: &std::path::Path, extra: &[&str]) -> common::Proxy {
    let api = common::Api::new(c);
    common::walkthrough(&api, "");
    let ups = common::spawn_upstreams(&[("white", common::Behaviour::Color)]);
    let mut args = vec![
        "compile".to_owned(),
        "--identity".into(),
        "mesh/ColorApp/virtualGateway/colorgateway-vg".into(),
    ];
    for node in ["white", "blue", "black", "red"] {
        args.extend([
            "--endpoint".into(),
            format!("colorteller-{node}-vn={}", ups[0]),
        ]);
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = c.ctl(&a);
    assert_eq!(out.code, 0, "compile: {}", out.stderr);
    let path = dir.join("gateway.json");
    std::fs::write(&path, &out.stdout).unwrap();
    let cfg = path.to_string_lossy().into_owned();
    let mut all = vec![
        "gateway",
        "--config",
        &cfg,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    all.extend_from_slice(extra);
    common::Proxy::start(&all, &["gateway", "admin"])
}

/// Regression: 300 stalled 350 KB header blocks took a gateway from 22 to 127 MB, and no
/// connection was ever closed.
#[test]
fn the_gateway_closes_slowloris_connections_and_answers_431_to_huge_heads() {
    let c = Control::start();
    let tmp = tempfile::tempdir().unwrap();
    let g = gateway(&c, tmp.path(), &["--header-read-timeout-ms", "1000"]);
    let addr = g.addrs["gateway"].clone();
    assert_eq!(status_of_oversized_head(&addr, 70 * 1024), "431");
    slowloris_connections_are_closed(&addr, 100, "gateway");
}

#[test]
fn gateway_connections_past_the_cap_get_a_clear_refusal() {
    let c = Control::start();
    let tmp = tempfile::tempdir().unwrap();
    let g = gateway(&c, tmp.path(), &["--max-connections", "10"]);
    let addr = g.addrs["gateway"].clone();
    let _held: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut extra = TcpStream::connect(&addr).expect("connect");
    let _ = extra.write_all(b"GET /color1 HTTP/1.1\r\nHost: x\r\n\r\n");
    let (reply, _) = read_until_closed(&mut extra, Instant::now() + Duration::from_secs(30));
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply:?}");
    assert!(reply.contains("too many open connections"), "{reply:?}");
}
