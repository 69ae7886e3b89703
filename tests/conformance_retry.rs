//! Conformance, retries: a route's `retryPolicy` as Envoy's `retry_on` runs it, through the
//! real gateway. Each test puts a failing endpoint first (a gateway cluster's first pick is
//! its first endpoint) and a good one second, so a request succeeds exactly when the policy
//! retries that failure. One real-process test per row of `docs/field-support.md`.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::{spawn_upstreams, Api, Behaviour, Control, Proxy};

fn put(api: &Api, path: &str, body: &str) {
    let (s, _, b) = api.call("PUT", path, Some(body));
    assert_eq!(s, 200, "PUT {path} {body}: {b}");
}

/// Mesh `m`: node `app` (`protocol`, 8080) behind router `vr`, whose one route has
/// `retry_policy` (JSON), as `app.local`; gateway `gw` sends everything there.
fn mesh(api: &Api, protocol: &str, retry_policy: &str) {
    let (kind, matcher) = match protocol {
        "http" => ("httpRoute", r#"{"prefix":"/"}"#),
        "http2" => ("http2Route", r#"{"prefix":"/"}"#),
        _ => ("grpcRoute", r#"{"serviceName":"color.Teller"}"#),
    };
    put(api, "/v20190125/meshes", r#"{"meshName":"m"}"#);
    put(
        api,
        "/v20190125/meshes/m/virtualNodes",
        &format!(
            r#"{{"virtualNodeName":"app","spec":{{"listeners":[{{"portMapping":{{"port":8080,"protocol":"{protocol}"}}}}]}}}}"#
        ),
    );
    put(
        api,
        "/v20190125/meshes/m/virtualRouters",
        &format!(
            r#"{{"virtualRouterName":"vr","spec":{{"listeners":[{{"portMapping":{{"port":8080,"protocol":"{protocol}"}}}}]}}}}"#
        ),
    );
    put(
        api,
        "/v20190125/meshes/m/virtualRouter/vr/routes",
        &format!(
            r#"{{"routeName":"r","spec":{{"{kind}":{{"match":{matcher},"action":{{"weightedTargets":[{{"virtualNode":"app","weight":1}}]}},"retryPolicy":{retry_policy}}}}}}}"#
        ),
    );
    put(
        api,
        "/v20190125/meshes/m/virtualServices",
        r#"{"virtualServiceName":"app.local","spec":{"provider":{"virtualRouter":{"virtualRouterName":"vr"}}}}"#,
    );
    put(
        api,
        "/v20190125/meshes/m/virtualGateways",
        &format!(
            r#"{{"virtualGatewayName":"gw","spec":{{"listeners":[{{"portMapping":{{"port":8080,"protocol":"{protocol}"}}}}]}}}}"#
        ),
    );
    put(
        api,
        "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
        &format!(
            r#"{{"gatewayRouteName":"all","spec":{{"{kind}":{{"match":{matcher},"action":{{"target":{{"virtualService":{{"virtualServiceName":"app.local"}}}}}}}}}}}}"#
        ),
    );
}

struct Setup {
    h2: bool,
    _control: Control,
    _tmp: tempfile::TempDir,
    gateway: Proxy,
}

/// The mesh, and the gateway with node `app`'s endpoints in this order.
fn setup(protocol: &str, retry_policy: &str, endpoints: &[SocketAddr]) -> Setup {
    let control = Control::start();
    mesh(&Api::new(&control), protocol, retry_policy);
    let mut args = vec![
        "compile".to_owned(),
        "--identity".into(),
        "mesh/m/virtualGateway/gw".into(),
    ];
    for e in endpoints {
        args.extend(["--endpoint".into(), format!("app={e}")]);
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = control.ctl(&a);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("gw.json");
    std::fs::write(&cfg, out.stdout).unwrap();
    let gateway = Proxy::start(
        &[
            "gateway",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &["gateway", "admin"],
    );
    Setup {
        h2: protocol != "http",
        _control: control,
        _tmp: tmp,
        gateway,
    }
}

fn policy(events: &str, max_retries: u64, per_retry_ms: u64) -> String {
    format!(
        r#"{{"maxRetries":{max_retries},"perRetryTimeout":{{"unit":"ms","value":{per_retry_ms}}},{events}}}"#
    )
}

/// The first request through the gateway: status and body.
fn first_request(s: &Setup) -> (u16, String) {
    let mut client = reqwest::blocking::Client::builder();
    if s.h2 {
        client = client.http2_prior_knowledge();
    }
    let r = client
        .build()
        .unwrap()
        .get(format!("http://{}/", s.gateway.addrs["gateway"]))
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn retries(s: &Setup) -> f64 {
    let stats = reqwest::blocking::get(s.gateway.url("admin", "/stats"))
        .unwrap()
        .text()
        .unwrap();
    stats
        .lines()
        .find(|l| l.starts_with("appliance_retries_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// An address nothing listens on: a connection to it is refused.
fn refused() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A server that reads the request head and closes the connection without answering: a
/// reset before the response headers.
fn resets() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
        }
    });
    addr
}

fn good() -> SocketAddr {
    spawn_upstreams(&[("good", Behaviour::Color)])[0]
}

#[test]
fn server_error_retries_a_connect_failure() {
    let s = setup(
        "http",
        &policy(r#""httpRetryEvents":["server-error"]"#, 1, 1000),
        &[refused(), good()],
    );
    assert_eq!(first_request(&s), (200, "good".into()));
    assert_eq!(retries(&s), 1.0);
}

#[test]
fn gateway_error_retries_a_reset_before_the_response() {
    let s = setup(
        "http",
        &policy(r#""httpRetryEvents":["gateway-error"]"#, 1, 1000),
        &[resets(), good()],
    );
    assert_eq!(first_request(&s), (200, "good".into()));
    assert_eq!(retries(&s), 1.0);
}

#[test]
fn tcp_connection_error_alone_retries_a_connect_failure() {
    let s = setup(
        "http",
        &policy(r#""tcpRetryEvents":["connection-error"]"#, 1, 1000),
        &[refused(), good()],
    );
    assert_eq!(first_request(&s), (200, "good".into()));
}

#[test]
fn client_error_does_not_retry_a_connect_failure() {
    let s = setup(
        "http",
        &policy(r#""httpRetryEvents":["client-error"]"#, 2, 1000),
        &[refused(), good()],
    );
    let (status, body) = first_request(&s);
    assert_eq!(status, 503, "{body}");
    // The gateway's client is outside the mesh: the cluster is named in its log only.
    s.gateway
        .wait_for_log(&["answered an outside client", "cds_egress_m_app_http_8080"]);
    assert_eq!(retries(&s), 0.0);
}

#[test]
fn a_per_try_timeout_is_retried_under_server_error() {
    let slow = spawn_upstreams(&[("slow", Behaviour::Slow(Duration::from_secs(5)))])[0];
    let s = setup(
        "http",
        &policy(r#""httpRetryEvents":["server-error"]"#, 1, 300),
        &[slow, good()],
    );
    assert_eq!(first_request(&s), (200, "good".into()));
}

#[test]
fn a_per_try_timeout_is_not_retried_when_no_event_covers_it() {
    let slow = spawn_upstreams(&[("slow", Behaviour::Slow(Duration::from_secs(5)))])[0];
    let s = setup(
        "http",
        &policy(r#""httpRetryEvents":["client-error"]"#, 1, 300),
        &[slow, good()],
    );
    let (status, body) = first_request(&s);
    assert_eq!(status, 504, "{body}");
    s.gateway
        .wait_for_log(&["answered an outside client", "did not answer within 300 ms"]);
}

#[test]
fn max_retries_at_its_largest_still_makes_the_first_try() {
    let s = setup(
        "http",
        &policy(
            r#""httpRetryEvents":["server-error"]"#,
            u64::from(u32::MAX),
            1000,
        ),
        &[good()],
    );
    assert_eq!(first_request(&s), (200, "good".into()));
}

/// An HTTP/2 (h2c) server on `rt` that answers every stream with a reset of `reason`, or,
/// with none, 200 and body `good`.
fn h2_server(rt: &tokio::runtime::Runtime, reason: Option<h2::Reason>) -> SocketAddr {
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = l.local_addr().unwrap();
    rt.spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    match reason {
                        Some(r) => respond.send_reset(r),
                        None => {
                            let resp = http::Response::new(());
                            if let Ok(mut body) = respond.send_response(resp, false) {
                                let _ = body.send_data(bytes::Bytes::from_static(b"good"), true);
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn stream_error_retries_a_refused_stream() {
    let rt = runtime();
    let refusing = h2_server(&rt, Some(h2::Reason::REFUSED_STREAM));
    let good = h2_server(&rt, None);
    let s = setup(
        "http2",
        &policy(r#""httpRetryEvents":["stream-error"]"#, 1, 1000),
        &[refusing, good],
    );
    assert_eq!(first_request(&s), (200, "good".into()));
    assert_eq!(retries(&s), 1.0);
}

#[test]
fn stream_error_does_not_retry_another_reset() {
    let rt = runtime();
    let resetting = h2_server(&rt, Some(h2::Reason::INTERNAL_ERROR));
    let good = h2_server(&rt, None);
    let s = setup(
        "http2",
        &policy(r#""httpRetryEvents":["stream-error"]"#, 1, 1000),
        &[resetting, good],
    );
    let (status, body) = first_request(&s);
    assert_eq!(status, 503, "{body}");
    s.gateway
        .wait_for_log(&["answered an outside client", "cds_egress_m_app_http2_8080"]);
    assert_eq!(retries(&s), 0.0);
}

/// A gRPC server on `rt` that answers every call trailers-only with `grpc-status` `status`
/// and `x-served-by: name`.
fn grpc_server(rt: &tokio::runtime::Runtime, status: u8, name: &'static str) -> SocketAddr {
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = l.local_addr().unwrap();
    rt.spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let resp = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .header("grpc-status", status.to_string())
                        .header("x-served-by", name)
                        .body(())
                        .unwrap();
                    let _ = respond.send_response(resp, true);
                }
            });
        }
    });
    addr
}

/// One gRPC call through the gateway: its grpc-status and who answered.
fn grpc_call(s: &Setup) -> (String, String) {
    let r = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .post(format!(
            "http://{}/color.Teller/Tell",
            s.gateway.addrs["gateway"]
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8; 5])
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap();
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    (h("grpc-status"), h("x-served-by"))
}

#[test]
fn grpc_retry_events_retry_the_grpc_status_they_name() {
    let rt = runtime();
    let unavailable = grpc_server(&rt, 14, "unavailable");
    let good = grpc_server(&rt, 0, "good");
    let s = setup(
        "grpc",
        &policy(r#""grpcRetryEvents":["unavailable"]"#, 1, 1000),
        &[unavailable, good],
    );
    assert_eq!(grpc_call(&s), ("0".into(), "good".into()));
    assert_eq!(retries(&s), 1.0);
}

#[test]
fn grpc_retry_events_leave_other_statuses_alone() {
    let rt = runtime();
    let internal = grpc_server(&rt, 13, "internal");
    let good = grpc_server(&rt, 0, "good");
    let s = setup(
        "grpc",
        &policy(r#""grpcRetryEvents":["unavailable"]"#, 1, 1000),
        &[internal, good],
    );
    assert_eq!(grpc_call(&s), ("13".into(), "internal".into()));
    assert_eq!(retries(&s), 0.0);
}
