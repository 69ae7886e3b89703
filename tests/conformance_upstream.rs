//! Conformance, upstream side: one real-process test per row of the field-support table
//! (`docs/field-support-upstream.rows.md`): protocols to the app, timeouts, health checks,
//! live listener edits and HTTP/2 / gRPC connection pools. Each test fails if the proxy
//! ignored its field.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{spawn_upstreams, Api, Behaviour, Control, Proxy};

// === mesh and proxies ===

fn put(api: &Api, path: &str, body: &str) {
    let (s, _, b) = api.call("PUT", path, Some(body));
    assert_eq!(s, 200, "PUT {path} {body}: {b}");
}

fn update(api: &Api, path: &str, body: &str) {
    let (s, _, b) = api.call("PUT", path, Some(body));
    assert_eq!(s, 200, "update {path} {body}: {b}");
}

/// Mesh `m` with node `app` (listener `listener`, JSON) providing `app.local`, and gateway
/// `gw` (listener `gateway_listener`, JSON) sending everything to it.
fn node_mesh(api: &Api, listener: &str, gateway_listener: &str, route: &str) {
    put(api, "/v20190125/meshes", r#"{"meshName":"m"}"#);
    put(
        api,
        "/v20190125/meshes/m/virtualNodes",
        &format!(r#"{{"virtualNodeName":"app","spec":{{"listeners":[{listener}]}}}}"#),
    );
    put(
        api,
        "/v20190125/meshes/m/virtualServices",
        r#"{"virtualServiceName":"app.local","spec":{"provider":{"virtualNode":{"virtualNodeName":"app"}}}}"#,
    );
    put(
        api,
        "/v20190125/meshes/m/virtualGateways",
        &format!(r#"{{"virtualGatewayName":"gw","spec":{{"listeners":[{gateway_listener}]}}}}"#),
    );
    put(
        api,
        "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
        &format!(r#"{{"gatewayRouteName":"all","spec":{route}}}"#),
    );
}

fn http_route_to_app() -> String {
    r#"{"httpRoute":{"match":{"prefix":"/"},"action":{"target":{"virtualService":{"virtualServiceName":"app.local"}}}}}"#.into()
}

/// Mesh `m` whose service `app.local` is router `vr` with one http route (`route_extra`
/// spliced into its httpRoute) to node `app`, behind gateway `gw` (http, 8080).
fn routed_mesh(api: &Api, route_extra: &str) {
    put(api, "/v20190125/meshes", r#"{"meshName":"m"}"#);
    put(
        api,
        "/v20190125/meshes/m/virtualNodes",
        r#"{"virtualNodeName":"app","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}}"#,
    );
    put(
        api,
        "/v20190125/meshes/m/virtualRouters",
        r#"{"virtualRouterName":"vr","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}}"#,
    );
    put(
        api,
        "/v20190125/meshes/m/virtualRouter/vr/routes",
        &format!(
            r#"{{"routeName":"r","spec":{{"httpRoute":{{"match":{{"prefix":"/"}},"action":{{"weightedTargets":[{{"virtualNode":"app","weight":1}}]}}{route_extra}}}}}}}"#
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
        r#"{"virtualGatewayName":"gw","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}}"#,
    );
    put(
        api,
        "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
        &format!(
            r#"{{"gatewayRouteName":"all","spec":{}}}"#,
            http_route_to_app()
        ),
    );
}

/// `ctl compile` for `identity`, the node `app` at `endpoint`, written to a file in `dir`.
fn compile_to(c: &Control, dir: &Path, identity: &str, endpoint: &str) -> PathBuf {
    let out = c.ctl(&[
        "compile",
        "--identity",
        identity,
        "--endpoint",
        &format!("app={endpoint}"),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let path = dir.join(format!("{}.json", identity.replace('/', "_")));
    std::fs::write(&path, out.stdout).unwrap();
    path
}

/// The gateway `gw`, from a compiled file, its node `app` at `endpoint`.
fn gateway_from_file(c: &Control, dir: &Path, endpoint: &str) -> Proxy {
    let cfg = compile_to(c, dir, "mesh/m/virtualGateway/gw", endpoint);
    Proxy::start(
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
    )
}

/// Node `app`'s sidecar from a compiled file, in front of `app`.
fn sidecar_from_file(c: &Control, dir: &Path, app: SocketAddr) -> Proxy {
    let cfg = compile_to(c, dir, "mesh/m/virtualNode/app", "127.0.0.1:1");
    Proxy::sidecar_from_file(&cfg, &app.to_string(), &["sidecar-inbound"])
}

/// Node `app`'s sidecar, enrolled over QUIC; returns it and its inbound address.
fn sidecar_enrolled(c: &Control, state: &Path, app: SocketAddr) -> (Proxy, String) {
    let listen = format!("127.0.0.1:{}", common::free_port());
    let token = c.join_token("mesh/m/virtualNode/app");
    let p = Proxy::start(
        &[
            "sidecar",
            "--control",
            &c.sync,
            "--token",
            &token,
            "--state-dir",
            state.to_str().unwrap(),
            "--identity",
            "mesh/m/virtualNode/app",
            "--app",
            &app.to_string(),
            "--listen",
            &listen,
            "--egress-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &["sidecar-inbound"],
    );
    (p, listen)
}

/// Gateway `gw`, enrolled over QUIC, listening on `listen`.
fn gateway_enrolled(c: &Control, state: &Path, listen: &str) -> Proxy {
    let token = c.join_token("mesh/m/virtualGateway/gw");
    Proxy::start(
        &[
            "gateway",
            "--control",
            &c.sync,
            "--token",
            &token,
            "--state-dir",
            state.to_str().unwrap(),
            "--identity",
            "mesh/m/virtualGateway/gw",
            "--listen",
            listen,
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &["gateway", "admin"],
    )
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn h2c() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A background runtime for the test's own servers.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// === test apps ===

/// An app that speaks HTTP/2 only (prior knowledge), so an HTTP/1.1 client gets nothing;
/// it answers with the protocol it saw, after `delay`.
async fn spawn_h2_only(delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        tokio::time::sleep(delay).await;
                        let body = format!("{:?}", req.version());
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body)),
                        ))
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
            });
        }
    });
    addr
}

/// An HTTP/1.1 app that sends its headers at once and its body (`done`) after `delay`.
async fn spawn_late_body(delay: Duration) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
                    .await;
                tokio::time::sleep(delay).await;
                let _ = tcp.write_all(b"done").await;
                let _ = tcp.flush().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            });
        }
    });
    addr
}

/// A TCP echo server.
async fn spawn_echo() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

// --- gRPC: color.Teller and grpc.health.v1.Health, messages derived by hand ---

#[derive(Clone, PartialEq, prost::Message)]
struct TellRequest {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(uint32, tag = "2")]
    count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TellReply {
    #[prost(string, tag = "1")]
    color: String,
    #[prost(uint32, tag = "2")]
    index: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    /// 1 SERVING, 2 NOT_SERVING.
    #[prost(int32, tag = "1")]
    status: i32,
}

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
type Replies =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<TellReply, tonic::Status>> + Send>>;

/// `color.Teller`: `Tell` answers "teller"; `Count` streams `count` replies.
#[derive(Clone)]
struct Teller;

impl tonic::server::NamedService for Teller {
    const NAME: &'static str = "color.Teller";
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Teller {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<TellReply, TellRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(match req.uri().path() {
                "/color.Teller/Tell" => grpc.unary(Tell, req).await,
                "/color.Teller/Count" => grpc.server_streaming(Count, req).await,
                other => tonic::Status::unimplemented(other.to_owned()).into_http(),
            })
        })
    }
}

struct Tell;

impl tonic::server::UnaryService<TellRequest> for Tell {
    type Response = TellReply;
    type Future = BoxFuture<Result<tonic::Response<TellReply>, tonic::Status>>;

    fn call(&mut self, _: tonic::Request<TellRequest>) -> Self::Future {
        Box::pin(async move {
            Ok(tonic::Response::new(TellReply {
                color: "teller".into(),
                index: 0,
            }))
        })
    }
}

struct Count;

impl tonic::server::ServerStreamingService<TellRequest> for Count {
    type Response = TellReply;
    type ResponseStream = Replies;
    type Future = BoxFuture<Result<tonic::Response<Replies>, tonic::Status>>;

    fn call(&mut self, req: tonic::Request<TellRequest>) -> Self::Future {
        Box::pin(async move {
            let replies: Vec<Result<TellReply, tonic::Status>> = (0..req.get_ref().count)
                .map(|index| {
                    Ok(TellReply {
                        color: "teller".into(),
                        index,
                    })
                })
                .collect();
            let stream: Replies = Box::pin(tokio_stream::iter(replies));
            Ok(tonic::Response::new(stream))
        })
    }
}

/// `grpc.health.v1.Health/Check`, answering whatever `status` holds.
#[derive(Clone)]
struct Health {
    status: Arc<AtomicI32>,
    checks: Arc<AtomicUsize>,
}

impl tonic::server::NamedService for Health {
    const NAME: &'static str = "grpc.health.v1.Health";
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Health {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let codec =
                tonic_prost::ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(match req.uri().path() {
                "/grpc.health.v1.Health/Check" => grpc.unary(me, req).await,
                other => tonic::Status::unimplemented(other.to_owned()).into_http(),
            })
        })
    }
}

impl tonic::server::UnaryService<HealthCheckRequest> for Health {
    type Response = HealthCheckResponse;
    type Future = BoxFuture<Result<tonic::Response<HealthCheckResponse>, tonic::Status>>;

    fn call(&mut self, _: tonic::Request<HealthCheckRequest>) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            me.checks.fetch_add(1, Ordering::SeqCst);
            Ok(tonic::Response::new(HealthCheckResponse {
                status: me.status.load(Ordering::SeqCst),
            }))
        })
    }
}

/// A tonic server with `color.Teller` and `grpc.health.v1.Health` (SERVING at first).
async fn spawn_grpc_app() -> (SocketAddr, Health) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health = Health {
        status: Arc::new(AtomicI32::new(SERVING)),
        checks: Arc::default(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Teller)
            .add_service(health.clone())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, health)
}

type Client = tonic::client::Grpc<tonic::transport::Channel>;

async fn grpc_client(addr: &str) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

async fn tell(client: &mut Client) -> Result<String, tonic::Status> {
    client.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<TellRequest, TellReply>::default();
    let path = http::uri::PathAndQuery::from_static("/color.Teller/Tell");
    let req = tonic::Request::new(TellRequest {
        name: "a".into(),
        count: 0,
    });
    Ok(client.unary(req, path, codec).await?.into_inner().color)
}

async fn count(client: &mut Client, n: u32) -> Vec<u32> {
    client.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<TellRequest, TellReply>::default();
    let path = http::uri::PathAndQuery::from_static("/color.Teller/Count");
    let req = tonic::Request::new(TellRequest {
        name: "n".into(),
        count: n,
    });
    let mut stream = client
        .server_streaming(req, path, codec)
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        got.push(m.index);
    }
    got
}

async fn health_check(client: &mut Client) -> Result<i32, tonic::Status> {
    client.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let req = tonic::Request::new(HealthCheckRequest::default());
    Ok(client.unary(req, path, codec).await?.into_inner().status)
}

const GRPC_NODE_LISTENER: &str = r#"{"portMapping":{"port":50051,"protocol":"grpc"}}"#;
const GRPC_GATEWAY_LISTENER: &str = r#"{"portMapping":{"port":8443,"protocol":"grpc"}}"#;
/// A gateway route sending gRPC service `service` to `app.local`.
fn grpc_gateway_route_for(service: &str) -> String {
    format!(
        r#"{{"grpcRoute":{{"match":{{"serviceName":"{service}"}},"action":{{"target":{{"virtualService":{{"virtualServiceName":"app.local"}}}}}}}}}}"#
    )
}

fn grpc_gateway_route() -> String {
    grpc_gateway_route_for("color.Teller")
}

// === 1. protocols to the app ===

/// Row `portMapping.protocol: grpc` (node listener): Envoy reaches a grpc listener's app
/// over HTTP/2 (h2c). A tonic client calls through the gateway (grpc listener) and the
/// node's sidecar, both enrolled over QUIC: unary, server streaming and Health/Check.
#[test]
fn grpc_listener_app_is_reached_over_h2c_through_gateway_and_sidecar() {
    let c = Control::start();
    let api = Api::new(&c);
    node_mesh(
        &api,
        GRPC_NODE_LISTENER,
        GRPC_GATEWAY_LISTENER,
        &grpc_gateway_route(),
    );
    put(
        &api,
        "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
        &format!(
            r#"{{"gatewayRouteName":"health","spec":{}}}"#,
            grpc_gateway_route_for("grpc.health.v1.Health")
        ),
    );
    let rt = runtime();
    let (app, _health) = rt.block_on(spawn_grpc_app());
    let tmp = tempfile::tempdir().unwrap();
    let (_sidecar, _) = sidecar_enrolled(&c, &tmp.path().join("sidecar"), app);
    let listen = format!("127.0.0.1:{}", common::free_port());
    let _gw = gateway_enrolled(&c, &tmp.path().join("gw"), &listen);
    rt.block_on(async {
        let mut client = grpc_client(&listen).await;
        // Until the sidecar's endpoint reaches the gateway, calls fail UNAVAILABLE.
        let start = Instant::now();
        loop {
            match tell(&mut client).await {
                Ok(color) => {
                    assert_eq!(color, "teller");
                    break;
                }
                Err(e) => assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "no answer through gateway and sidecar: {e:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(count(&mut client, 40).await, (0..40).collect::<Vec<u32>>());
        assert_eq!(health_check(&mut client).await.unwrap(), SERVING);
    });
}

/// Row `portMapping.protocol: http2` (node listener): the app is reached over h2c. The app
/// speaks HTTP/2 only; a request through the gateway (http2) and the sidecar gets its
/// answer, which names the protocol the app saw.
#[test]
fn http2_listener_app_is_reached_over_h2c() {
    let c = Control::start();
    let api = Api::new(&c);
    node_mesh(
        &api,
        r#"{"portMapping":{"port":8080,"protocol":"http2"}}"#,
        r#"{"portMapping":{"port":8080,"protocol":"http2"}}"#,
        r#"{"http2Route":{"match":{"prefix":"/"},"action":{"target":{"virtualService":{"virtualServiceName":"app.local"}}}}}"#,
    );
    let rt = runtime();
    let app = rt.block_on(spawn_h2_only(Duration::ZERO));
    let tmp = tempfile::tempdir().unwrap();
    let sidecar = sidecar_from_file(&c, tmp.path(), app);
    let gw = gateway_from_file(&c, tmp.path(), &sidecar.addrs["sidecar-inbound"]);
    let r = h2c().get(gw.url("gateway", "/x")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "HTTP/2.0", "the app saw HTTP/2");
    // An HTTP/1.1 client of the sidecar is carried to the app over HTTP/2 too.
    let r = http()
        .get(sidecar.url("sidecar-inbound", "/x"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "HTTP/2.0");
}

// === 2. timeouts ===

/// Row route `timeout.perRequest` value 0: App Mesh reads 0 as "disabled". An app that
/// answers after 1 s is answered, not cut at 0 ms.
#[test]
fn route_per_request_zero_disables_the_timeout() {
    let c = Control::start();
    let api = Api::new(&c);
    routed_mesh(&api, r#","timeout":{"perRequest":{"value":0,"unit":"ms"}}"#);
    let app = spawn_upstreams(&[("app", Behaviour::Slow(Duration::from_secs(1)))]);
    let tmp = tempfile::tempdir().unwrap();
    let gw = gateway_from_file(&c, tmp.path(), &app[0].to_string());
    let r = http().get(gw.url("gateway", "/x")).send().unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
}

/// Row route `timeout.perRequest`: Envoy's route timeout bounds the whole response, body
/// included. Headers come at once, the body after 3 s; a 1 s timeout cuts it.
#[test]
fn route_per_request_timeout_bounds_the_whole_response() {
    let c = Control::start();
    let api = Api::new(&c);
    routed_mesh(&api, r#","timeout":{"perRequest":{"value":1,"unit":"s"}}"#);
    let rt = runtime();
    let app = rt.block_on(spawn_late_body(Duration::from_secs(3)));
    let tmp = tempfile::tempdir().unwrap();
    let gw = gateway_from_file(&c, tmp.path(), &app.to_string());
    let r = http().get(gw.url("gateway", "/x")).send().unwrap();
    assert_eq!(r.status(), 200, "the headers came in time");
    assert!(r.text().is_err(), "the body came after the timeout");
}

/// Row route `timeout.idle`: a stream silent for longer than it ends. Before the answer's
/// headers that is Envoy's 408; perRequest is disabled so only idle can fire.
#[test]
fn route_idle_timeout_ends_a_silent_stream() {
    let c = Control::start();
    let api = Api::new(&c);
    routed_mesh(
        &api,
        r#","timeout":{"perRequest":{"value":0,"unit":"s"},"idle":{"value":500,"unit":"ms"}}"#,
    );
    let app = spawn_upstreams(&[("app", Behaviour::Slow(Duration::from_secs(3)))]);
    let tmp = tempfile::tempdir().unwrap();
    let gw = gateway_from_file(&c, tmp.path(), &app[0].to_string());
    let r = http().get(gw.url("gateway", "/x")).send().unwrap();
    assert_eq!(r.status(), 408, "{}", r.text().unwrap_or_default());
}

/// Row node listener `timeout.http.idle`: the sidecar's requests to its app end when the
/// app stays silent for longer (perRequest disabled, so only idle can fire).
#[test]
fn listener_idle_timeout_ends_a_silent_request_to_the_app() {
    let c = Control::start();
    let api = Api::new(&c);
    node_mesh(
        &api,
        r#"{"portMapping":{"port":8080,"protocol":"http"},"timeout":{"http":{"perRequest":{"value":0,"unit":"s"},"idle":{"value":500,"unit":"ms"}}}}"#,
        r#"{"portMapping":{"port":8080,"protocol":"http"}}"#,
        &http_route_to_app(),
    );
    let app = spawn_upstreams(&[("app", Behaviour::Slow(Duration::from_secs(3)))]);
    let tmp = tempfile::tempdir().unwrap();
    let sidecar = sidecar_from_file(&c, tmp.path(), app[0]);
    let r = http()
        .get(sidecar.url("sidecar-inbound", "/x"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 408, "{}", r.text().unwrap_or_default());
}

/// Row node listener `timeout.http.perRequest` value 0 at the sidecar: disabled, so a 1 s
/// answer of the app arrives.
#[test]
fn listener_per_request_zero_disables_the_timeout_to_the_app() {
    let c = Control::start();
    let api = Api::new(&c);
    node_mesh(
        &api,
        r#"{"portMapping":{"port":8080,"protocol":"http"},"timeout":{"http":{"perRequest":{"value":0,"unit":"ms"}}}}"#,
        r#"{"portMapping":{"port":8080,"protocol":"http"}}"#,
        &http_route_to_app(),
    );
    let app = spawn_upstreams(&[("app", Behaviour::Slow(Duration::from_secs(1)))]);
    let tmp = tempfile::tempdir().unwrap();
    let sidecar = sidecar_from_file(&c, tmp.path(), app[0]);
    let r = http()
        .get(sidecar.url("sidecar-inbound", "/x"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
}

/// Row node listener `timeout.tcp.idle` value 0: no idle timeout, so a connection that
/// pauses keeps working (0 ms would close it at once).
#[test]
fn tcp_idle_zero_keeps_a_quiet_connection_open() {
    use std::io::{Read, Write};
    let c = Control::start();
    let api = Api::new(&c);
    node_mesh(
        &api,
        r#"{"portMapping":{"port":9000,"protocol":"tcp"},"timeout":{"tcp":{"idle":{"value":0,"unit":"s"}}}}"#,
        r#"{"portMapping":{"port":8080,"protocol":"http"}}"#,
        &http_route_to_app(),
    );
    let rt = runtime();
    let app = rt.block_on(spawn_echo());
    let tmp = tempfile::tempdir().unwrap();
    let sidecar = sidecar_from_file(&c, tmp.path(), app);
    let mut conn = std::net::TcpStream::connect(&sidecar.addrs["sidecar-inbound"]).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    conn.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
}

/// Row node listener `timeout.*.perRequest` for a node-provided virtual service (no
/// router): the provider's listener timeout applies, not a fixed 15 s. The gateway reaches
/// the app directly; 500 ms against an app that takes 3 s is a 504.
#[test]
fn node_provided_service_uses_the_provider_listener_timeout() {
    let c = Control::start();
    let api = Api::new(&c);
    node_mesh(
        &api,
        r#"{"portMapping":{"port":8080,"protocol":"http"},"timeout":{"http":{"perRequest":{"value":500,"unit":"ms"}}}}"#,
        r#"{"portMapping":{"port":8080,"protocol":"http"}}"#,
        &http_route_to_app(),
    );
    let app = spawn_upstreams(&[("app", Behaviour::Slow(Duration::from_secs(3)))]);
    let tmp = tempfile::tempdir().unwrap();
    let gw = gateway_from_file(&c, tmp.path(), &app[0].to_string());
    let r = http().get(gw.url("gateway", "/x")).send().unwrap();
    assert_eq!(r.status(), 504, "{}", r.text().unwrap_or_default());
}

// === 3. health checks ===

/// Row `healthCheck.protocol: grpc`: the gRPC Health Checking Protocol; NOT_SERVING takes
/// the endpoint out, SERVING brings it back. The gateway checks two apps directly; only one
/// fails, so Envoy's panic mode (every endpoint failing) does not apply.
#[test]
fn grpc_health_check_drives_an_endpoint_out_and_back() {
    let c = Control::start();
    let api = Api::new(&c);
    node_mesh(
        &api,
        r#"{"portMapping":{"port":50051,"protocol":"grpc"},"healthCheck":{"protocol":"grpc","intervalMillis":5000,"timeoutMillis":2000,"healthyThreshold":2,"unhealthyThreshold":2}}"#,
        GRPC_GATEWAY_LISTENER,
        &grpc_gateway_route(),
    );
    let rt = runtime();
    let (flips, health) = rt.block_on(spawn_grpc_app());
    let (steady, _) = rt.block_on(spawn_grpc_app());
    let tmp = tempfile::tempdir().unwrap();
    let out = c.ctl(&[
        "compile",
        "--identity",
        "mesh/m/virtualGateway/gw",
        "--endpoint",
        &format!("app={flips}"),
        "--endpoint",
        &format!("app={steady}"),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cfg = tmp.path().join("gw.json");
    std::fs::write(&cfg, out.stdout).unwrap();
    let gw = Proxy::start(
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
    let healthy = |endpoint: SocketAddr| -> Option<bool> {
        let stats = reqwest::blocking::get(gw.url("admin", "/stats"))
            .ok()?
            .text()
            .ok()?;
        let line = stats.lines().find(|l| {
            l.starts_with("appliance_endpoint_healthy{")
                && l.contains(&format!("endpoint=\"{endpoint}\""))
        })?;
        Some(line.ends_with(" 1"))
    };
    wait_until(
        "both endpoints pass their first check",
        Duration::from_secs(30),
        || healthy(flips) == Some(true) && healthy(steady) == Some(true),
    );
    health.status.store(NOT_SERVING, Ordering::SeqCst);
    wait_until(
        "NOT_SERVING takes the endpoint out",
        Duration::from_secs(40),
        || healthy(flips) == Some(false),
    );
    assert!(
        health.checks.load(Ordering::SeqCst) >= 2,
        "taken out by Health/Check answers"
    );
    assert_eq!(healthy(steady), Some(true), "the other endpoint stays in");
    let addr = gw.addrs["gateway"].clone();
    rt.block_on(async {
        let mut client = grpc_client(&addr).await;
        for _ in 0..4 {
            assert_eq!(tell(&mut client).await.unwrap(), "teller");
        }
    });
    health.status.store(SERVING, Ordering::SeqCst);
    wait_until(
        "SERVING brings the endpoint back",
        Duration::from_secs(40),
        || healthy(flips) == Some(true),
    );
}

// === 4. live listener edits ===

/// Row: an edit of a node's listener on a running sidecar applies without a restart, and
/// a request in flight finishes on the old settings. The listener's perRequest goes from
/// App Mesh's default to 1 s while a 3 s request runs: that one still gets 200, the next
/// one 504.
#[test]
fn a_listener_timeout_edit_applies_to_a_running_sidecar() {
    let c = Control::start();
    let api = Api::new(&c);
    node_mesh(
        &api,
        r#"{"portMapping":{"port":8080,"protocol":"http"}}"#,
        r#"{"portMapping":{"port":8080,"protocol":"http"}}"#,
        &http_route_to_app(),
    );
    let app = spawn_upstreams(&[("app", Behaviour::Slow(Duration::from_secs(3)))]);
    let tmp = tempfile::tempdir().unwrap();
    let (_sidecar, listen) = sidecar_enrolled(&c, tmp.path(), app[0]);
    let url = format!("http://{listen}/x");
    wait_until("the sidecar answers", Duration::from_secs(30), || {
        http().get(&url).send().is_ok_and(|r| r.status() == 200)
    });
    let in_flight = {
        let url = url.clone();
        std::thread::spawn(move || http().get(&url).send().map(|r| r.status().as_u16()))
    };
    std::thread::sleep(Duration::from_millis(300));
    update(
        &api,
        "/v20190125/meshes/m/virtualNodes/app",
        r#"{"spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"},"timeout":{"http":{"perRequest":{"value":1,"unit":"s"}}}}]}}"#,
    );
    wait_until(
        "the edit reaches the sidecar",
        Duration::from_secs(15),
        || http().get(&url).send().is_ok_and(|r| r.status() == 504),
    );
    assert_eq!(
        in_flight.join().unwrap().unwrap(),
        200,
        "the request in flight kept its old timeout"
    );
}

/// Row: a protocol edit (http -> http2) on a running sidecar applies to the next request:
/// the app speaks HTTP/2 only, so it answers only once the edit is in.
#[test]
fn a_listener_protocol_edit_applies_to_a_running_sidecar() {
    let c = Control::start();
    let api = Api::new(&c);
    node_mesh(
        &api,
        r#"{"portMapping":{"port":8080,"protocol":"http"}}"#,
        r#"{"portMapping":{"port":8080,"protocol":"http"}}"#,
        &http_route_to_app(),
    );
    let rt = runtime();
    let app = rt.block_on(spawn_h2_only(Duration::ZERO));
    let tmp = tempfile::tempdir().unwrap();
    let (_sidecar, listen) = sidecar_enrolled(&c, tmp.path(), app);
    let url = format!("http://{listen}/x");
    wait_until("the sidecar answers", Duration::from_secs(30), || {
        http().get(&url).send().is_ok()
    });
    let before = http().get(&url).send().unwrap().status();
    // A protocol error (502) or a close before the answer (503), as the app's h2 server
    // happens to react to HTTP/1.1 bytes.
    assert!(
        before == 502 || before == 503,
        "HTTP/1.1 to an HTTP/2-only app fails: {before}"
    );
    update(
        &api,
        "/v20190125/meshes/m/virtualNodes/app",
        r#"{"spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http2"}}]}}"#,
    );
    wait_until(
        "the edit reaches the sidecar",
        Duration::from_secs(15),
        || {
            http()
                .get(&url)
                .send()
                .is_ok_and(|r| r.status() == 200 && r.text().unwrap_or_default() == "HTTP/2.0")
        },
    );
}

/// Row: a connection pool edit on a running sidecar applies to the next requests.
/// `http.maxConnections` 1 and `maxPendingRequests` 1 (its minimum): of three concurrent
/// slow requests, one is refused.
#[test]
fn a_listener_connection_pool_edit_applies_to_a_running_sidecar() {
    let c = Control::start();
    let api = Api::new(&c);
    node_mesh(
        &api,
        r#"{"portMapping":{"port":8080,"protocol":"http"}}"#,
        r#"{"portMapping":{"port":8080,"protocol":"http"}}"#,
        &http_route_to_app(),
    );
    let app = spawn_upstreams(&[("app", Behaviour::Slow(Duration::from_secs(2)))]);
    let tmp = tempfile::tempdir().unwrap();
    let (_sidecar, listen) = sidecar_enrolled(&c, tmp.path(), app[0]);
    let url = format!("http://{listen}/x");
    wait_until("the sidecar answers", Duration::from_secs(30), || {
        http().get(&url).send().is_ok_and(|r| r.status() == 200)
    });
    assert_eq!(overflowed(&url, 3), 0, "no pool: nothing overflows");
    update(
        &api,
        "/v20190125/meshes/m/virtualNodes/app",
        r#"{"spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"},"connectionPool":{"http":{"maxConnections":1,"maxPendingRequests":1}}}]}}"#,
    );
    wait_until(
        "the pool reaches the sidecar",
        Duration::from_secs(20),
        || overflowed(&url, 3) >= 1,
    );
}

/// Sends `n` requests at once; how many were refused as a pool overflow.
fn overflowed(url: &str, n: usize) -> usize {
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let url = url.to_owned();
            std::thread::spawn(move || {
                http().get(&url).send().is_ok_and(|r| {
                    r.status() == 503 && r.headers().contains_key("x-envoy-overloaded")
                })
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|o| *o)
        .count()
}

// === 5. http2 / grpc connection pools ===

/// Row node listener `connectionPool.http2.maxRequests`: the sidecar's requests in flight
/// to its app are capped; over it, an immediate 503 with `x-envoy-overloaded`.
#[test]
fn http2_connection_pool_max_requests_is_enforced() {
    let c = Control::start();
    let api = Api::new(&c);
    node_mesh(
        &api,
        r#"{"portMapping":{"port":8080,"protocol":"http2"},"connectionPool":{"http2":{"maxRequests":1}}}"#,
        r#"{"portMapping":{"port":8080,"protocol":"http2"}}"#,
        r#"{"http2Route":{"match":{"prefix":"/"},"action":{"target":{"virtualService":{"virtualServiceName":"app.local"}}}}}"#,
    );
    let rt = runtime();
    let app = rt.block_on(spawn_h2_only(Duration::from_secs(2)));
    let tmp = tempfile::tempdir().unwrap();
    let sidecar = sidecar_from_file(&c, tmp.path(), app);
    let url = sidecar.url("sidecar-inbound", "/x");
    assert!(
        overflowed(&url, 3) >= 1,
        "three at once over a limit of one"
    );
}

/// Row virtual gateway listener `connectionPool.grpc.maxRequests`: the gateway's calls in
/// flight to the service are capped; over it the call fails UNAVAILABLE at once.
#[test]
fn grpc_connection_pool_max_requests_is_enforced() {
    let c = Control::start();
    let api = Api::new(&c);
    node_mesh(
        &api,
        GRPC_NODE_LISTENER,
        r#"{"portMapping":{"port":8443,"protocol":"grpc"},"connectionPool":{"grpc":{"maxRequests":1}}}"#,
        &grpc_gateway_route(),
    );
    let rt = runtime();
    // h2 app that holds each call for 2 s: slow enough for two to overlap.
    let app = rt.block_on(spawn_h2_only(Duration::from_secs(2)));
    let tmp = tempfile::tempdir().unwrap();
    let gw = gateway_from_file(&c, tmp.path(), &app.to_string());
    let url = gw.url("gateway", "/color.Teller/Tell");
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                h2c()
                    .post(&url)
                    .header("content-type", "application/grpc")
                    .body(vec![0u8, 0, 0, 0, 0])
                    .send()
                    .ok()
                    .and_then(|r| {
                        r.headers()
                            .get("grpc-status")
                            .map(|v| v.to_str().unwrap_or("").to_owned())
                    })
            })
        })
        .collect();
    let statuses: Vec<Option<String>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        statuses.iter().any(|s| s.as_deref() == Some("14")),
        "one call over the limit is refused UNAVAILABLE: {statuses:?}"
    );
}

/// Flips the VG health-check test's app between healthy and failing `/ping`.
static GATEWAY_APP_UP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Row virtual gateway listener `healthCheck`: App Mesh declares the gateway unhealthy
/// after `unhealthyThreshold` failed checks. The gateway checks its own listener (`/ping`,
/// routed to the app) and its `/ready` answers 503 while that fails, then LIVE again.
#[test]
fn gateway_listener_health_check_drives_its_readiness() {
    let c = Control::start();
    let api = Api::new(&c);
    node_mesh(
        &api,
        r#"{"portMapping":{"port":8080,"protocol":"http"}}"#,
        r#"{"portMapping":{"port":8080,"protocol":"http"},"healthCheck":{"protocol":"http","path":"/ping","intervalMillis":5000,"timeoutMillis":2000,"healthyThreshold":2,"unhealthyThreshold":2}}"#,
        &http_route_to_app(),
    );
    let app = spawn_upstreams(&[("app", Behaviour::Health(&GATEWAY_APP_UP))]);
    let tmp = tempfile::tempdir().unwrap();
    let gw = gateway_from_file(&c, tmp.path(), &app[0].to_string());
    let ready = gw.url("admin", "/ready");
    let status = || http().get(&ready).send().map_or(0, |r| r.status().as_u16());
    assert_eq!(status(), 200);
    GATEWAY_APP_UP.store(false, Ordering::SeqCst);
    wait_until(
        "the gateway reports unhealthy",
        Duration::from_secs(40),
        || status() == 503,
    );
    GATEWAY_APP_UP.store(true, Ordering::SeqCst);
    wait_until(
        "the gateway reports healthy again",
        Duration::from_secs(40),
        || status() == 200,
    );
}
