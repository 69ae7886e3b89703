//! What an operator relies on that no other test shows: JSON logs, a control plane that
//! finishes in-flight API requests on SIGTERM, and a sidecar's `--advertise`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{spawn_upstreams, walkthrough, Api, Behaviour, Control, Proxy, BIN};
use serde_json::Value;

#[test]
fn json_log_format_writes_one_json_object_per_line_with_the_listen_address() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "control", "--data-dir"])
        .arg(tmp.path().join("data"))
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--sync-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut api = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while api.is_none() {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the control plane logs its API address");
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        seen += 1;
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        let message = v["fields"]["message"].as_str().unwrap_or_default();
        if v["fields"]["role"] == "api" || v["span"]["role"] == "api" {
            if let Some(addr) = message.strip_prefix("listening on ") {
                api = Some(addr.to_owned());
            }
        }
    }
    eprintln!("{seen} JSON lines before the API address");
    // The address in the log is the one it serves on.
    let addr = api.unwrap();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /signin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    child.kill().ok();
    child.wait().ok();
}

#[test]
fn control_plane_sigterm_finishes_an_in_flight_api_request() {
    let c = Control::start();
    let api = Api::new(&c);
    let body = br#"{"meshName":"drained"}"#;
    let path = "/v20190125/meshes";
    let mut head = format!("PUT {path} HTTP/1.1\r\n");
    for (k, v) in api.signed_headers("PUT", path, body) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut s = std::net::TcpStream::connect(&c.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // Half the body, then SIGTERM, then the rest: the request is in flight across the signal.
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..10]).unwrap();
    s.flush().unwrap();
    // The server must have the connection before the signal; a first byte is enough to know
    // hyper is reading it, and the accept happened long before that.
    std::thread::sleep(Duration::from_millis(200));
    let pid = c.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&body[10..]).unwrap();
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the response's body has arrived (the server may keep the connection open).
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                resp.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&resp);
                if text.contains("\r\n\r\n") && text.contains("drained") {
                    break;
                }
            }
            Err(e) => panic!(
                "reading the response: {e}; got {:?}",
                String::from_utf8_lossy(&resp)
            ),
        }
    }
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#""meshName":"drained""#), "{text}");
    drop(s);
    // It then exits by itself, cleanly, and the write it answered is durable.
    let mut c = c;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = c.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "still running 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let again = Control::start_in(&c.data_dir);
    let (code, _, v) = Api::new(&again).call("GET", "/v20190125/meshes/drained", None);
    assert_eq!(code, 200, "{v}");
}

#[test]
fn a_sidecar_advertise_address_is_where_the_gateway_sends_its_traffic() {
    let c = Control::start();
    let api = Api::new(&c);
    walkthrough(&api, "");
    let apps = spawn_upstreams(&[("white", Behaviour::Color), ("blue", Behaviour::Color)]);
    let tmp = tempfile::tempdir().unwrap();
    let mut keep = Vec::new();
    let mut advertised = Vec::new();
    for (color, app) in ["white", "blue"].into_iter().zip(&apps) {
        let identity = format!("mesh/ColorApp/virtualNode/colorteller-{color}-vn");
        let token = c.join_token(&identity);
        // Listen on every address, advertise a loopback alias no default would pick.
        let port = common::free_port();
        let advertise = format!("127.0.0.{}:{port}", 2 + advertised.len());
        let state = tmp.path().join(color);
        keep.push(Proxy::start(
            &[
                "sidecar",
                "--control",
                &c.sync,
                "--token",
                &token,
                "--state-dir",
                state.to_str().unwrap(),
                "--identity",
                &identity,
                "--app",
                &app.to_string(),
                "--listen",
                &format!("0.0.0.0:{port}"),
                "--advertise",
                &advertise,
                "--egress-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ],
            &["sidecar-inbound"],
        ));
        advertised.push((identity, advertise));
    }
    // The control plane reports each sidecar's endpoint as advertised.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = c.ctl(&["list-proxies"]);
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        let found = advertised.iter().all(|(id, addr)| {
            v["proxies"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["identity"] == id.as_str() && p["advertise"] == addr.as_str())
            })
        });
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "list-proxies: {}", out.stdout);
        std::thread::sleep(Duration::from_millis(200));
    }
    // And the gateway reaches both colours through those addresses.
    let gt = c.join_token("mesh/ColorApp/virtualGateway/colorgateway-vg");
    let g = Proxy::start(
        &[
            "gateway",
            "--control",
            &c.sync,
            "--token",
            &gt,
            "--state-dir",
            tmp.path().join("gw").to_str().unwrap(),
            "--identity",
            "mesh/ColorApp/virtualGateway/colorgateway-vg",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &["gateway"],
    );
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "colours seen: {seen:?}");
        if let Ok(r) = http.get(g.url("gateway", "/color1/tell")).send() {
            if r.status() == 200 {
                seen.insert(r.text().unwrap());
            }
        }
    }
    assert_eq!(seen, ["blue".to_owned(), "white".to_owned()].into());
    // The gateway's clusters hold exactly the advertised addresses.
    let config: Value = http
        .get(g.url("admin", "/config"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    for (identity, addr) in &advertised {
        let node = identity.rsplit('/').next().unwrap();
        let cluster = config["clusters"]
            .as_object()
            .unwrap()
            .values()
            .find(|c| c["node"] == node)
            .unwrap_or_else(|| panic!("no cluster for {node}: {config}"));
        assert_eq!(cluster["endpoints"], serde_json::json!([addr]), "{node}");
    }
}
