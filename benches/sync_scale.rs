//! Config push at scale: one real `appliance control` (release build) and N simulated
//! proxies in this process, each a real QUIC connection with its own mTLS handshake and
//! session, answering every config with an ack. Prints the time to connect all N (each
//! holding its first config), then, after one route change through the API, how long until
//! each proxy had the new config (p50, p99, max), and the control plane's RSS per
//! connection.
//!
//! Run: `cargo bench --bench sync_scale` (N = 1,000 and 10,000; APPLIANCE_BENCH_PROXIES=N
//! for one size). The simulated proxies are replicas of the walkthrough's gateway, so the
//! one change reaches all of them; they register no endpoints.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appliance::model::Identity;
use appliance::sync::client::{ensure_enrolled, ClientOptions};
use appliance::sync::frame::{self, ToControl, ToProxy, MAX_TO_PROXY};
use appliance::sync::StateDir;
use common::{walkthrough, Api, Control};
use tokio_util::sync::CancellationToken;

const GATEWAY: &str = "mesh/ColorApp/virtualGateway/colorgateway-vg";
/// Client UDP sockets the simulated proxies share.
const SOCKETS: usize = 32;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One simulated proxy: connect, say hello, ack every config; report (version, when) of
/// each config received.
async fn proxy(
    ep: quinn::Endpoint,
    cfg: quinn::ClientConfig,
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(u64, Instant)>>>,
    index: usize,
) -> Result<(), String> {
    let conn = ep
        .connect_with(cfg, addr, "appliance-control")
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let hello = frame::encode(ToControl::Hello {
        identity: GATEWAY.into(),
        advertise: None,
        healthy: true,
        running_version: 0,
        attributes: Vec::new(),
    });
    frame::write(&mut send, &hello)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match frame::read::<ToProxy, _>(&mut recv, MAX_TO_PROXY).await {
            Ok(Some(ToProxy::Config { version, .. })) => {
                seen.lock().unwrap()[index] = (version, Instant::now());
                frame::write(&mut send, &frame::encode(ToControl::Ack { version }))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn run(n: usize) {
    let control = Control::start();
    let api = Api::new(&control);
    walkthrough(&api, "");
    let token = control
        .ctl(&[
            "create-join-token",
            "--identity",
            GATEWAY,
            "--query",
            "token",
            "--output",
            "text",
        ])
        .stdout
        .trim()
        .to_owned();
    let pid = control.child.id();
    let sync: SocketAddr = control.sync.parse().expect("sync address");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let identity = Identity::parse(GATEWAY).unwrap();
    let opts = ClientOptions {
        control: control.sync.clone(),
        identity: identity.clone(),
        advertise: None,
        attributes: Vec::new(),
    };
    // One enrolment; every replica presents the same leaf, as replicas of one task would.
    let creds = rt
        .block_on(async {
            let state = StateDir::open(state_dir.path(), &identity).unwrap();
            ensure_enrolled(&opts, &state, Some(&token), &CancellationToken::new()).await
        })
        .expect("enrolment");
    let cfg = appliance::sync::tls::mtls_client_config(
        &creds.chain_pem,
        &creds.key_pem,
        &creds.trust_bundle_pem,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let base_rss = rss_kb(pid);

    let seen = Arc::new(Mutex::new(vec![(0u64, Instant::now()); n]));
    let start = Instant::now();
    let errors = rt.block_on(async {
        let eps: Vec<quinn::Endpoint> = (0..SOCKETS)
            .map(|_| {
                let socket =
                    appliance::sync::server::udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
                quinn::Endpoint::new(
                    quinn::EndpointConfig::default(),
                    None,
                    socket,
                    quinn::default_runtime().unwrap(),
                )
                .unwrap()
            })
            .collect();
        let errors = Arc::new(Mutex::new(Vec::new()));
        // Connect in waves, as a fleet coming up would, without a thundering herd of
        // handshakes all timing out together.
        let gate = Arc::new(tokio::sync::Semaphore::new(32));
        for i in 0..n {
            let permit = gate.clone().acquire_owned().await.unwrap();
            let (ep, cfg, seen, errors) = (
                eps[i % SOCKETS].clone(),
                cfg.clone(),
                seen.clone(),
                errors.clone(),
            );
            tokio::spawn(async move {
                let watch = seen.clone();
                let task = tokio::spawn(proxy(ep, cfg, sync, seen, i));
                // Hold the permit until this proxy has its first config.
                while watch.lock().unwrap()[i].0 == 0 && !task.is_finished() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                drop(permit);
                if let Ok(Err(e)) = task.await {
                    errors.lock().unwrap().push(e);
                }
            });
        }
        // Wait until every proxy holds a config.
        let deadline = Instant::now() + Duration::from_secs(300);
        while seen.lock().unwrap().iter().any(|s| s.0 == 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        errors
    });
    let connected = start.elapsed();
    let first_version = seen.lock().unwrap().iter().map(|s| s.0).min().unwrap_or(0);
    let with_config = seen.lock().unwrap().iter().filter(|s| s.0 > 0).count();
    std::thread::sleep(Duration::from_secs(1));
    let rss = rss_kb(pid);

    // One route change; time until each proxy has a newer config.
    let body = r#"{"spec":{"httpRoute":{"match":{"prefix":"/tell"},"action":{"weightedTargets":[{"virtualNode":"colorteller-white-vn","weight":3},{"virtualNode":"colorteller-blue-vn","weight":1}]}}}}"#;
    let t0 = Instant::now();
    let (status, _, b) = api.call(
        "PUT",
        "/v20190125/meshes/ColorApp/virtualRouter/colorteller-vr-1/routes/colorteller-route-1",
        Some(body),
    );
    assert_eq!(status, 200, "{b}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().iter().any(|s| s.0 <= first_version) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut lat: Vec<Duration> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.0 > first_version)
        .map(|s| s.1.saturating_duration_since(t0))
        .collect();
    lat.sort();
    let errs = errors.lock().unwrap().clone();
    println!("sync_scale N={n}");
    println!(
        "  connected with first config: {with_config}/{n} in {:.2} s ({} errors{})",
        connected.as_secs_f64(),
        errs.len(),
        errs.first()
            .map(|e| format!(", first: {e}"))
            .unwrap_or_default()
    );
    if !lat.is_empty() {
        println!(
            "  route change acked by {}/{n}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            lat.len(),
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            lat.last().unwrap().as_secs_f64() * 1e3
        );
    }
    println!(
        "  control plane RSS: {:.1} MB idle, {:.1} MB with {n} sessions: {:.1} KB per connection",
        base_rss as f64 / 1024.0,
        rss as f64 / 1024.0,
        (rss.saturating_sub(base_rss)) as f64 / n as f64
    );
    rt.shutdown_timeout(Duration::from_secs(1));
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes: Vec<usize> = match std::env::var("APPLIANCE_BENCH_PROXIES") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![1_000, 10_000],
    };
    for n in sizes {
        run(n);
    }
}
