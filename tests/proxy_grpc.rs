//! gRPC through `appliance gateway`: a grpc listener, gateway routes by service name, router
//! routes by service, method and metadata, HTTP/2 end to end, and proxy failures answered in
//! gRPC's own terms (trailers-only, `grpc-status`).

mod common;

use std::time::Duration;

use common::{spawn_upstreams, Api, Behaviour, Control, Proxy};

fn ok(api: &Api, path: &str, body: &str) {
    let (s, _, b) = api.call("PUT", path, Some(body));
    assert_eq!(s, 200, "{path}: {b}");
}

/// Mesh `m`: router `vr` sends `color.Teller/Tell` with `x-tier: gold` to node blue and the
/// rest of `color.Teller` to white; gateway `gw` (grpc, 8443) sends `color.Teller` to it.
fn teller_mesh(api: &Api) {
    ok(api, "/v20190125/meshes", r#"{"meshName":"m"}"#);
    for vn in ["white", "blue"] {
        ok(
            api,
            "/v20190125/meshes/m/virtualNodes",
            &format!(
                r#"{{"virtualNodeName":"{vn}","spec":{{"listeners":[{{"portMapping":{{"port":50051,"protocol":"grpc"}}}}]}}}}"#
            ),
        );
    }
    ok(
        api,
        "/v20190125/meshes/m/virtualRouters",
        r#"{"virtualRouterName":"vr","spec":{"listeners":[{"portMapping":{"port":50051,"protocol":"grpc"}}]}}"#,
    );
    ok(
        api,
        "/v20190125/meshes/m/virtualRouter/vr/routes",
        r#"{"routeName":"gold","spec":{"priority":0,"grpcRoute":{"match":{"serviceName":"color.Teller","methodName":"Tell","metadata":[{"name":"x-tier","match":{"exact":"gold"}}]},"action":{"weightedTargets":[{"virtualNode":"blue","weight":1}]}}}}"#,
    );
    ok(
        api,
        "/v20190125/meshes/m/virtualRouter/vr/routes",
        r#"{"routeName":"rest","spec":{"priority":1,"grpcRoute":{"match":{"serviceName":"color.Teller"},"action":{"weightedTargets":[{"virtualNode":"white","weight":1}]}}}}"#,
    );
    ok(
        api,
        "/v20190125/meshes/m/virtualServices",
        r#"{"virtualServiceName":"teller.local","spec":{"provider":{"virtualRouter":{"virtualRouterName":"vr"}}}}"#,
    );
    ok(
        api,
        "/v20190125/meshes/m/virtualGateways",
        r#"{"virtualGatewayName":"gw","spec":{"listeners":[{"portMapping":{"port":8443,"protocol":"grpc"}}]}}"#,
    );
    ok(
        api,
        "/v20190125/meshes/m/virtualGateway/gw/gatewayRoutes",
        r#"{"gatewayRouteName":"teller","spec":{"grpcRoute":{"match":{"serviceName":"color.Teller"},"action":{"target":{"virtualService":{"virtualServiceName":"teller.local"}}}}}}"#,
    );
}

#[test]
fn grpc_requests_route_by_service_method_and_metadata() {
    let c = Control::start();
    let api = Api::new(&c);
    teller_mesh(&api);
    let ups = spawn_upstreams(&[("white", Behaviour::Color), ("blue", Behaviour::Color)]);
    let out = c.ctl(&[
        "compile",
        "--identity",
        "mesh/m/virtualGateway/gw",
        "--endpoint",
        &format!("white={}", ups[0]),
        "--endpoint",
        &format!("blue={}", ups[1]),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tmp = tempfile::tempdir().unwrap();
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
        &["gateway"],
    );

    let h2 = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let call = |path: &str, tier: Option<&str>| {
        let mut req = h2
            .post(gw.url("gateway", path))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(vec![0u8, 0, 0, 0, 0]);
        if let Some(t) = tier {
            req = req.header("x-tier", t);
        }
        req.send().unwrap()
    };
    let r = call("/color.Teller/Tell", Some("gold"));
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        r.headers()["x-seen-path"],
        "/color.Teller/Tell",
        "a gRPC path is never rewritten"
    );
    assert_eq!(r.text().unwrap(), "blue");
    assert_eq!(
        call("/color.Teller/Tell", Some("silver")).text().unwrap(),
        "white"
    );
    assert_eq!(call("/color.Teller/Other", None).text().unwrap(), "white");
    let unknown = call("/other.Service/Tell", None);
    assert_eq!(
        unknown.status(),
        200,
        "gRPC failures are trailers-only 200s"
    );
    assert_eq!(
        unknown.headers()["grpc-status"],
        "12",
        "UNIMPLEMENTED for no route"
    );
    assert!(unknown.headers()["grpc-message"]
        .to_str()
        .unwrap()
        .contains("no%20route"));
}

// === a real gRPC client and server (tonic) ===

/// `color.Teller`'s request, derived by hand: no `.proto` and no protoc.
#[derive(Clone, PartialEq, prost::Message)]
struct TellRequest {
    #[prost(string, tag = "1")]
    name: String,
    /// For `Count`: how many replies to stream.
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

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
type Replies =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<TellReply, tonic::Status>> + Send>>;

/// A `color.Teller` server: `Tell` answers its colour (a request named `flaky` fails with
/// UNAVAILABLE on every other call), `Count` streams `count` replies.
#[derive(Clone)]
struct Teller {
    color: &'static str,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

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
        let me = self.clone();
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<TellReply, TellRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(match req.uri().path() {
                "/color.Teller/Tell" => grpc.unary(Tell(me), req).await,
                "/color.Teller/Count" => grpc.server_streaming(Count(me), req).await,
                other => tonic::Status::unimplemented(other.to_owned()).into_http(),
            })
        })
    }
}

struct Tell(Teller);

impl tonic::server::UnaryService<TellRequest> for Tell {
    type Response = TellReply;
    type Future = BoxFuture<Result<tonic::Response<TellReply>, tonic::Status>>;

    fn call(&mut self, req: tonic::Request<TellRequest>) -> Self::Future {
        let t = self.0.clone();
        Box::pin(async move {
            let n = t.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if req.get_ref().name == "flaky" && n % 2 == 0 {
                return Err(tonic::Status::unavailable("warming up"));
            }
            Ok(tonic::Response::new(TellReply {
                color: t.color.to_owned(),
                index: 0,
            }))
        })
    }
}

struct Count(Teller);

impl tonic::server::ServerStreamingService<TellRequest> for Count {
    type Response = TellReply;
    type ResponseStream = Replies;
    type Future = BoxFuture<Result<tonic::Response<Replies>, tonic::Status>>;

    fn call(&mut self, req: tonic::Request<TellRequest>) -> Self::Future {
        let color = self.0.color;
        Box::pin(async move {
            let replies: Vec<Result<TellReply, tonic::Status>> = (0..req.get_ref().count)
                .map(|index| {
                    Ok(TellReply {
                        color: color.to_owned(),
                        index,
                    })
                })
                .collect();
            let stream: Replies = Box::pin(tokio_stream::iter(replies));
            Ok(tonic::Response::new(stream))
        })
    }
}

/// Serves `color.Teller` as `color` on a free port of 127.0.0.1.
async fn spawn_teller(
    color: &'static str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = std::sync::Arc::default();
    let teller = Teller {
        color,
        calls: std::sync::Arc::clone(&calls),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(teller)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, calls)
}

type Client = tonic::client::Grpc<tonic::transport::Channel>;

async fn tell(
    client: &mut Client,
    name: &str,
    tier: Option<&str>,
) -> Result<String, tonic::Status> {
    let mut req = tonic::Request::new(TellRequest {
        name: name.to_owned(),
        count: 0,
    });
    if let Some(t) = tier {
        req.metadata_mut().insert("x-tier", t.parse().unwrap());
    }
    client.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<TellRequest, TellReply>::default();
    let path = http::uri::PathAndQuery::from_static("/color.Teller/Tell");
    Ok(client.unary(req, path, codec).await?.into_inner().color)
}

#[test]
fn a_tonic_client_reaches_a_tonic_server_through_the_gateway() {
    let c = Control::start();
    let api = Api::new(&c);
    teller_mesh(&api);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ((white, white_calls), (blue, _)) =
        rt.block_on(async { (spawn_teller("white").await, spawn_teller("blue").await) });
    let out = c.ctl(&[
        "compile",
        "--identity",
        "mesh/m/virtualGateway/gw",
        "--endpoint",
        &format!("white={white}"),
        "--endpoint",
        &format!("blue={blue}"),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tmp = tempfile::tempdir().unwrap();
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
    let gateway = format!("http://{}", gw.addrs["gateway"]);

    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(gateway)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client: Client = tonic::client::Grpc::new(channel);

        // Unary, routed by method name and metadata.
        assert_eq!(tell(&mut client, "a", Some("gold")).await.unwrap(), "blue");
        assert_eq!(
            tell(&mut client, "a", Some("silver")).await.unwrap(),
            "white"
        );
        assert_eq!(tell(&mut client, "a", None).await.unwrap(), "white");

        // Server streaming: every message, in order, then the OK trailers.
        client.ready().await.unwrap();
        let req = tonic::Request::new(TellRequest {
            name: "n".into(),
            count: 50,
        });
        let codec = tonic_prost::ProstCodec::<TellRequest, TellReply>::default();
        let path = http::uri::PathAndQuery::from_static("/color.Teller/Count");
        let mut stream = client
            .server_streaming(req, path, codec)
            .await
            .unwrap()
            .into_inner();
        let mut got = Vec::new();
        while let Some(m) = stream.message().await.unwrap() {
            assert_eq!(m.color, "white");
            got.push(m.index);
        }
        assert_eq!(got, (0..50).collect::<Vec<u32>>());

        // App Mesh's default retry policy retries UNAVAILABLE: the caller never sees it.
        let before = white_calls.load(std::sync::atomic::Ordering::SeqCst);
        for i in 0..5 {
            assert_eq!(
                tell(&mut client, "flaky", None).await.unwrap(),
                "white",
                "call {i}"
            );
        }
        let after = white_calls.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            after - before,
            10,
            "each call failed once and was retried once"
        );
    });
    let stats = reqwest::blocking::get(gw.url("admin", "/stats"))
        .unwrap()
        .text()
        .unwrap();
    let retries: f64 = stats
        .lines()
        .find(|l| l.starts_with("appliance_retries_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert_eq!(retries, 5.0, "{stats}");
}
