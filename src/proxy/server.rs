//! Listeners and the request path. One accept loop per socket; each request goes
//! match -> pick target -> pick endpoint -> forward (with timeout and retries) -> respond,
//! and every failure of the proxy's own becomes a response in `error.rs`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::error::{Audience, Body, ProxyError};
use super::forward::{boxed, finish, forward, strip_hop_by_hop};
use super::original_dst::{Decision, Fallback, Sniff};
use super::pool::Limiter;
use super::route_table::{RequestView, Route};
use super::tcp::Target;
use super::timeout::Timers;
use super::tls::Downstream;
use super::{Runtime, State};
use crate::compile::{DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_PER_REQUEST_TIMEOUT_MS};
use crate::model::spec::PortProtocol;

/// In-flight requests get this long to finish after shutdown is requested.
const DRAIN_DEADLINE: Duration = Duration::from_secs(20);

/// What a listener does with its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A virtual gateway listener (its configured port picks the gateway routes).
    Gateway { port: u16 },
    /// A sidecar's inbound listener for the node listener on `port`: everything to the local
    /// app at `app`. Its protocol, timeouts, pool and TLS are read from the running config
    /// per connection and per request, so a pushed edit applies without a restart: a `tcp`
    /// listener's connections are spliced, the others are served as HTTP.
    Inbound { app: String, port: u16 },
    /// A sidecar's egress listener: routed by the virtual service named in Host.
    Egress,
    /// A sidecar's `--egress-tcp` port: connections through `service`'s tcp route (the one
    /// matching `port`, when given).
    EgressTcp { service: String, port: Option<u16> },
}

/// Accepts connections on `listener` until `shutdown`, then drains, in `mode` for good.
pub async fn serve_listener(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    mode: Mode,
    shutdown: CancellationToken,
) {
    serve_live(
        listener,
        runtime,
        Arc::new(ArcSwap::from_pointee(mode)),
        shutdown,
    )
    .await
}

/// Accepts connections on `listener` until `shutdown`, then drains. Each connection takes
/// the mode and the listener's settings current when it is accepted (TLS, raw TCP or
/// HTTP), so a config swap applies to the next connection and never cuts an open one.
pub(super) async fn serve_live(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    modes: Arc<ArcSwap<Mode>>,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let limits = runtime.limits();
    let slots = limits.connection_slots();
    let mut spliced = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            // Reap finished connections so the set does not grow with every one ever served.
            Some(_) = spliced.join_next(), if !spliced.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let mode = modes.load_full();
        // Intercepted egress: a declared tcp backend (or a refusal) is settled by the
        // original destination alone; anything else is sniffed for HTTP below.
        let mut sniff = None;
        let original = match *mode {
            Mode::Egress => super::original_dst::original_destination(&tcp),
            _ => None,
        };
        if let (Some(to), Ok(local)) = (original, tcp.local_addr()) {
            let settled = match super::original_dst::decide(&runtime.state().config, to, local) {
                Decision::Mesh { service, port } => Some(Target::Service {
                    service,
                    port: Some(port),
                }),
                Decision::Refuse(why) => Some(Target::Refused(why)),
                Decision::Sniff { otherwise } => {
                    sniff = Some(match otherwise {
                        Fallback::Passthrough(to) => Target::Passthrough(to),
                        Fallback::Refuse(why) => Target::Refused(why),
                    });
                    None
                }
            };
            if let Some(target) = settled {
                spliced.spawn(super::tcp::serve_connection(
                    runtime.clone(),
                    tcp,
                    peer,
                    target,
                ));
                continue;
            }
        }
        // Raw TCP has no requests: its connections are spliced, not served by hyper.
        if let Some(target) = raw_tcp(&runtime, &mode) {
            spliced.spawn(super::tcp::serve_connection(
                runtime.clone(),
                tcp,
                peer,
                target,
            ));
            continue;
        }
        let tls = tls_port(&mode).and_then(|p| runtime.state().listener_tls(p).cloned());
        let Some(slot) = super::limits::take_slot(&slots, peer) else {
            if tls.is_none() {
                tokio::spawn(super::limits::refuse(tcp));
            }
            continue;
        };
        let rt = runtime.clone();
        let gauge = runtime.stats.active_connections.clone();
        let watcher = graceful.watcher();
        let local = tcp.local_addr().ok();
        tokio::spawn(async move {
            let _slot = slot;
            // An intercepted connection that does not start with an HTTP request is raw TCP
            // to a destination the mesh does not know: the egress filter decides.
            if let Some(otherwise) = sniff {
                if super::original_dst::sniff_connection(&tcp).await != Sniff::Http {
                    super::tcp::serve_connection(rt, tcp, peer, otherwise).await;
                    return;
                }
            }
            // The handshake runs here, off the accept loop, so a slow client stalls no one.
            let io = match tls {
                None => Downstream::Plain(tcp),
                Some(tls) => match tls.accept(tcp).await {
                    Some(io) => io,
                    None => return,
                },
            };
            let revocation = io.peer().map(|id| rt.revocation(id));
            let conn = Conn {
                secure: matches!(io, Downstream::Tls(_)),
                peer,
                local,
                original,
            };
            let service = hyper::service::service_fn(move |req| {
                let (rt, mode) = (rt.clone(), mode.clone());
                async move { Ok::<_, Infallible>(handle(rt, &mode, conn, req).await) }
            });
            let conn = limits
                .http_builder()
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned();
            gauge.inc();
            match revocation {
                None => drop(watcher.watch(conn).await),
                // A revoked peer's connection is cut, requests in flight and all: the
                // revocation is a security decision, not a drain.
                Some(revoked) => tokio::select! {
                    _ = watcher.watch(conn) => {}
                    () = revoked => {}
                },
            }
            gauge.dec();
        });
    }
    // The socket closes now, so the port is free for a listener that replaces this one;
    // the connections it accepted drain below.
    drop(listener);
    let http = async {
        if tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain deadline passed; closing open connections");
        }
    };
    let tcp = async {
        let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
            while spliced.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open = spliced.len(),
                "drain deadline passed; closing tcp connections"
            );
            spliced.shutdown().await;
        }
    };
    tokio::join!(http, tcp);
}

/// The configured port whose listener settings (TLS, timeouts, an inbound connection pool)
/// a socket serves; egress is the app's side and never TLS.
fn tls_port(mode: &Mode) -> Option<u16> {
    match mode {
        Mode::Gateway { port } | Mode::Inbound { port, .. } => Some(*port),
        Mode::Egress | Mode::EgressTcp { .. } => None,
    }
}

/// Where a connection is spliced, when its listener carries raw TCP.
fn raw_tcp(rt: &Runtime, mode: &Mode) -> Option<Target> {
    match mode {
        Mode::EgressTcp { service, port } => Some(Target::Service {
            service: service.clone(),
            port: *port,
        }),
        Mode::Inbound { app, port } => {
            let state = rt.state();
            let tcp = state
                .config
                .listeners
                .iter()
                .any(|l| l.port == *port && l.protocol == PortProtocol::Tcp);
            tcp.then(|| Target::App {
                app: app.clone(),
                port: Some(*port),
            })
        }
        Mode::Gateway { .. } | Mode::Egress => None,
    }
}

/// What a request's connection says about it: `:scheme`, and the access log's addresses.
#[derive(Debug, Clone, Copy)]
struct Conn {
    secure: bool,
    peer: std::net::SocketAddr,
    local: Option<std::net::SocketAddr>,
    /// Where the app sent the connection, when iptables redirected it here.
    original: Option<std::net::SocketAddr>,
}

/// The request's authority (absolute-form URI, else Host) as host and port.
pub(super) fn authority_of<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> (&'a str, Option<u16>) {
    let raw = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("");
    // Split off a port, leaving IPv6 brackets alone.
    match raw.rfind(':') {
        Some(i) if !raw[i..].contains(']') => (&raw[..i], raw[i + 1..].parse().ok()),
        _ => (raw, None),
    }
}

/// `:scheme` as Envoy sees it: the request's own, else that of its connection.
fn scheme_of(uri: &Uri, conn: Conn) -> &'static str {
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => "https",
        Some(_) => "http",
        None if conn.secure => "https",
        None => "http",
    }
}

async fn handle(
    rt: Arc<Runtime>,
    mode: &Mode,
    conn: Conn,
    req: Request<Incoming>,
) -> Response<Body> {
    let state = rt.state();
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let (mut parts, body) = req.into_parts();
    // Once, before anything matches on it: the path routes see is the path the app gets.
    let normalized = super::path::normalize_uri(&mut parts.uri);
    let scheme = scheme_of(&parts.uri, conn);
    parts.extensions.insert(Scheme(scheme));
    let host = super::edge::check_host(parts.version, &parts.headers);
    if matches!(mode, Mode::Gateway { .. }) {
        super::edge::from_outside(&mut parts.headers, conn.peer.ip(), scheme);
    }
    // Only what the access log needs, and only when there is one.
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let pending = state
        .access_log
        .as_ref()
        .map(|logger| super::access_log::Pending {
            logger: logger.clone(),
            start: std::time::SystemTime::now(),
            began: tokio::time::Instant::now(),
            method: parts.method.clone(),
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            scheme,
            protocol: protocol_name(parts.version),
            request: parts.headers.clone(),
            received: received.clone(),
            downstream_remote: Some(conn.peer),
            downstream_local: conn.local,
        });
    let body = match pending {
        Some(_) => boxed(super::access_log::CountedBody::new(body, received)),
        None => boxed(body),
    };
    let req = Request::from_parts(parts, body);
    let result = match (normalized, host, mode) {
        (Err(e), _, _) => Err(ProxyError::BadRequest(e.to_string())),
        (_, Err(e), _) => Err(e),
        (Ok(()), Ok(()), mode) => match mode {
            Mode::Gateway { port } => gateway(&state, *port, req).await,
            Mode::Egress => {
                super::egress::egress(&rt, &state, conn.local, conn.original, req).await
            }
            // serve_live hands these to `tcp` before any HTTP is spoken.
            Mode::EgressTcp { .. } => {
                Err(ProxyError::BadRequest("HTTP on a raw TCP listener".into()))
            }
            Mode::Inbound { app, port } => inbound(app, *port, &state, &rt, req).await,
        },
    };
    let audience = match mode {
        Mode::Gateway { .. } => Audience::Outside,
        _ => Audience::Mesh,
    };
    let (resp, flags) = match result {
        // A mesh proxy's own answer, relayed to an outside client: its reason stays inside.
        Ok(resp) if audience == Audience::Outside => {
            (super::edge::to_outside(resp, &rt).await, "-")
        }
        Ok(resp) => (resp, "-"),
        Err(e) => {
            match audience {
                // The client is told little, so the reason must reach the operator.
                Audience::Outside => rt.edge_log.failed(&rt.identity, &e),
                Audience::Mesh => {
                    tracing::debug!(proxy = %rt.identity, error = %e, "request failed in the proxy");
                }
            }
            let reason = e.reason_label();
            rt.stats
                .local_errors
                .get_or_create(&super::stats::ErrorLabels {
                    reason: reason.to_owned(),
                })
                .inc();
            let flags = e.response_flags();
            (
                if grpc {
                    e.into_grpc_response(&rt.identity, audience)
                } else {
                    e.into_response(&rt.identity, audience)
                },
                flags,
            )
        }
    };
    match pending {
        // The line is written when the body has been sent, so it counts real bytes.
        Some(mut pending) => {
            // Envoy's router rewrites the request headers in place, so the log sees the
            // path and authority the upstream got, and the original path as
            // `x-envoy-original-path`.
            if let Some(r) = resp.extensions().get::<Routed>() {
                if r.path_and_query != pending.path {
                    if let Ok(v) = HeaderValue::from_str(&pending.path) {
                        pending.request.insert("x-envoy-original-path", v);
                    }
                    pending.path = r.path_and_query.clone();
                }
                if let Ok(v) = HeaderValue::from_str(&r.authority) {
                    pending.request.insert(http::header::HOST, v);
                }
            }
            let answer = super::access_log::Answer {
                status: resp.status().as_u16(),
                response: resp.headers().clone(),
                upstream: resp.extensions().get::<UpstreamHost>().map(|u| u.0.clone()),
                flags,
            };
            resp.map(|b| boxed(super::access_log::LoggedBody::new(b, pending, answer)))
        }
        None => resp,
    }
}

/// The request's `:scheme`, for route matching.
#[derive(Clone, Copy)]
struct Scheme(&'static str);

/// The endpoint that answered, for the access log.
#[derive(Clone)]
pub(super) struct UpstreamHost(pub(super) String);

/// On a gateway's response: the path (with its query) and authority the request was
/// forwarded with, after the gateway route's rewrites, for the access log.
#[derive(Clone)]
struct Routed {
    path_and_query: String,
    authority: String,
}

fn protocol_name(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    }
}

async fn gateway(
    state: &State,
    port: u16,
    req: Request<Body>,
) -> Result<Response<Body>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let (host, host_port) = authority_of(&parts.uri, &parts.headers);
    let host = host.to_owned();
    let scheme = scheme_ext(&parts);
    let view = RequestView {
        method: &parts.method,
        path: &path,
        query: query.as_deref(),
        host: &host,
        port: host_port,
        scheme,
        headers: &parts.headers,
    };
    let gr = state
        .table
        .match_gateway(port, &view)
        .ok_or_else(|| ProxyError::NoRoute(format!("{} {path}", parts.method)))?;
    let new_path = gr.rewrite_path(&path);
    let new_host = if gr.rewrites_host() {
        gr.service.clone()
    } else {
        host.clone()
    };
    if let Ok(v) = HeaderValue::from_str(&new_host) {
        parts.headers.insert(http::header::HOST, v);
    }
    // The gateway route's target (and its port, settled by compile) picks the service's
    // routes; the client's Host port was the gateway's, not the service's.
    let view = RequestView {
        method: &parts.method,
        path: &new_path,
        query: query.as_deref(),
        host: &new_host,
        port: None,
        scheme,
        headers: &parts.headers,
    };
    let route = service_route(state, &gr.service, &view)?;
    let with_query = |p: &str| match &query {
        Some(q) => format!("{p}?{q}"),
        None => p.to_owned(),
    };
    // As Envoy's router does when a route rewrites the path.
    if new_path != path {
        if let Ok(v) = HeaderValue::from_str(&with_query(&path)) {
            parts.headers.insert("x-envoy-original-path", v);
        }
    }
    let routed = Routed {
        path_and_query: with_query(&new_path),
        authority: new_host.clone(),
    };
    let mut resp = forward(state, route, parts, body, &new_path, query.as_deref()).await?;
    resp.extensions_mut().insert(routed);
    Ok(resp)
}

pub(super) fn scheme_ext(parts: &http::request::Parts) -> &'static str {
    parts.extensions.get::<Scheme>().map_or("http", |s| s.0)
}

pub(super) fn service_route<'a>(
    state: &'a State,
    service: &str,
    view: &RequestView,
) -> Result<&'a Route, ProxyError> {
    match state.table.match_service(service, view) {
        None => Err(ProxyError::NoProvider(service.to_owned())),
        Some(None)
            if state
                .config
                .services
                .get(service)
                .is_some_and(|s| s.routes.is_empty()) =>
        {
            Err(ProxyError::NoProvider(service.to_owned()))
        }
        Some(None) => Err(ProxyError::NoRoute(format!(
            "{} {} on {service}",
            view.method, view.path
        ))),
        Some(Some(r)) => Ok(r),
    }
}

/// To the local app as the node listener on `port` says now: over HTTP/1.1, or h2c (prior
/// knowledge) for an `http2` or `grpc` listener, as Envoy speaks to the app; within its
/// `timeout` (perRequest to the last byte, idle between events) and its `connectionPool`
/// (App Mesh applies a virtual node's pool to its sidecar's connections to the local app).
async fn inbound(
    app: &str,
    port: u16,
    state: &State,
    rt: &Runtime,
    req: Request<Body>,
) -> Result<Response<Body>, ProxyError> {
    let listener = state.config.listeners.iter().find(|l| l.port == port);
    let (protocol, per_request_ms, idle_ms) = listener.map_or(
        (
            PortProtocol::Http,
            DEFAULT_PER_REQUEST_TIMEOUT_MS,
            DEFAULT_IDLE_TIMEOUT_MS,
        ),
        |l| (l.protocol, l.per_request_timeout_ms, l.idle_timeout_ms),
    );
    let timers = Timers::start(per_request_ms, idle_ms);
    let pool: Option<&Arc<Limiter>> = state.inbound_pool(port);
    let permit = match pool {
        Some(p) => Some(p.acquire(timers.deadline, per_request_ms).await?),
        None => None,
    };
    let (mut parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    parts.uri = format!("http://{app}{pq}")
        .parse()
        .map_err(|_| ProxyError::BadRequest("bad request target".into()))?;
    strip_hop_by_hop(&mut parts.headers);
    // The client speaks the listener's protocol whatever the downstream spoke.
    parts.version = http::Version::HTTP_11;
    let req = Request::from_parts(parts, body);
    let send = rt.clients.for_protocol(protocol).request(req);
    let resp = match timers.headers(send).await? {
        Err(e) => return Err(ProxyError::upstream("local app", app, &e)),
        Ok(r) => r,
    };
    let mut out = finish(resp).map(|b| timers.body(b));
    out.extensions_mut().insert(UpstreamHost(app.to_owned()));
    if let Some(p) = permit {
        out = out.map(|b| p.hold_until_done(b));
    }
    Ok(out)
}
