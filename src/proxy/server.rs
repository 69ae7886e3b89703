//! Listeners and the request path. One accept loop per socket; each request goes
//! match -> pick target -> pick endpoint -> forward (with timeout and retries) -> respond,
//! and every failure of the proxy's own becomes a response in `error.rs`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::error::{Body, ProxyError};
use super::forward::{error_chain, finish, forward, strip_hop_by_hop};
use super::pool::Limiter;
use super::route_table::{RequestView, Route};
use super::tcp::Target;
use super::tls::Downstream;
use super::{Runtime, State};

/// In-flight requests get this long to finish after shutdown is requested.
const DRAIN_DEADLINE: Duration = Duration::from_secs(20);

/// What a listener does with its requests.
#[derive(Debug, Clone)]
pub enum Mode {
    /// A virtual gateway listener (its configured port picks the gateway routes).
    Gateway { port: u16 },
    /// A sidecar's inbound listener: everything to the local app.
    Inbound {
        app: String,
        per_request_timeout_ms: u64,
    },
    /// A sidecar's egress listener: routed by the virtual service named in Host.
    Egress,
    /// A sidecar's inbound `tcp` listener: bytes spliced to the local app.
    InboundTcp { app: String },
    /// A sidecar's `--egress-tcp` port: connections through `service`'s tcp route (the one
    /// matching `port`, when given).
    EgressTcp { service: String, port: Option<u16> },
}

/// Accepts connections on `listener` until `shutdown`, then drains. A listener whose config
/// has `tls` terminates it as its mode says (looked up per connection, so a config swap
/// applies to the next one).
pub async fn serve_listener(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    mode: Mode,
    shutdown: CancellationToken,
) {
    let tls_port = listener
        .local_addr()
        .ok()
        .and_then(|local| tls_port(&runtime, &mode, local.port()));
    // Raw TCP has no requests: its connections are spliced, not served by hyper.
    let target = match &mode {
        Mode::InboundTcp { app } => Some(Target::App {
            app: app.clone(),
            port: tls_port,
        }),
        Mode::EgressTcp { service, port } => Some(Target::Service {
            service: service.clone(),
            port: *port,
        }),
        _ => None,
    };
    if let Some(target) = target {
        return super::tcp::serve(listener, runtime, target, shutdown).await;
    }
    let graceful = GracefulShutdown::new();
    let mode = Arc::new(mode);
    let limits = runtime.limits();
    let slots = limits.connection_slots();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let tls = tls_port.and_then(|p| runtime.state().listener_tls(p).cloned());
        let Some(slot) = super::limits::take_slot(&slots, peer) else {
            if tls.is_none() {
                tokio::spawn(super::limits::refuse(tcp));
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (rt, mode) = (runtime.clone(), mode.clone());
        let gauge = runtime.stats.active_connections.clone();
        let watcher = graceful.watcher();
        let local = tcp.local_addr().ok();
        tokio::spawn(async move {
            let _slot = slot;
            // The handshake runs here, off the accept loop, so a slow client stalls no one.
            let io = match tls {
                None => Downstream::Plain(tcp),
                Some(tls) => match tls.accept(tcp).await {
                    Some(io) => io,
                    None => return,
                },
            };
            let conn = Conn {
                secure: matches!(io, Downstream::Tls(_)),
                peer,
                local,
            };
            let service = hyper::service::service_fn(move |req| {
                let (rt, mode) = (rt.clone(), mode.clone());
                async move { Ok::<_, Infallible>(handle(rt, &mode, tls_port, conn, req).await) }
            });
            let conn = limits
                .http_builder()
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned();
            gauge.inc();
            let _ = watcher.watch(conn).await;
            gauge.dec();
        });
    }
    if tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain deadline passed; closing open connections");
    }
}

/// The configured port whose listener settings (TLS, an inbound connection pool) a socket
/// serves. A gateway names it;
/// an inbound socket is the listener on its own port, or else the first inbound listener
/// (the one `--listen` may have moved); egress is the app's side and never TLS.
fn tls_port(rt: &Runtime, mode: &Mode, bound: u16) -> Option<u16> {
    match mode {
        Mode::Gateway { port } => Some(*port),
        Mode::Egress | Mode::EgressTcp { .. } => None,
        Mode::Inbound { .. } | Mode::InboundTcp { .. } => {
            let config = rt.config();
            let inbound = || {
                config
                    .listeners
                    .iter()
                    .filter(|l| matches!(l.role, crate::compile::ListenerRole::Inbound { .. }))
            };
            inbound()
                .find(|l| l.port == bound)
                .or_else(|| inbound().next())
                .map(|l| l.port)
        }
    }
}

/// What a request's connection says about it: `:scheme`, and the access log's addresses.
#[derive(Debug, Clone, Copy)]
struct Conn {
    secure: bool,
    peer: std::net::SocketAddr,
    local: Option<std::net::SocketAddr>,
}

/// The request's authority (absolute-form URI, else Host) as host and port.
fn authority_of<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> (&'a str, Option<u16>) {
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
    port: Option<u16>,
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
        Some(_) => super::access_log::CountedBody::new(body, received).boxed(),
        None => body.boxed(),
    };
    let req = Request::from_parts(parts, body);
    let result = match (normalized, mode) {
        (Err(e), _) => Err(ProxyError::BadRequest(e.to_string())),
        (Ok(()), mode) => match mode {
            Mode::Gateway { port } => gateway(&state, *port, req).await,
            Mode::Egress => egress(&rt, &state, req).await,
            // serve_listener hands these to `tcp` before any HTTP is spoken.
            Mode::InboundTcp { .. } | Mode::EgressTcp { .. } => {
                Err(ProxyError::BadRequest("HTTP on a raw TCP listener".into()))
            }
            Mode::Inbound {
                app,
                per_request_timeout_ms,
            } => {
                let pool = port.and_then(|p| state.inbound_pool(p));
                inbound(app, *per_request_timeout_ms, pool, &rt, req).await
            }
        },
    };
    let (resp, flags) = match result {
        Ok(resp) => (resp, "-"),
        Err(e) => {
            tracing::debug!(proxy = %rt.identity, error = %e, "request failed in the proxy");
            let reason = reason_label(&e);
            rt.stats
                .local_errors
                .get_or_create(&super::stats::ErrorLabels {
                    reason: reason.to_owned(),
                })
                .inc();
            let flags = response_flags(&e);
            (
                if grpc {
                    e.into_grpc_response(&rt.identity)
                } else {
                    e.into_response(&rt.identity)
                },
                flags,
            )
        }
    };
    match pending {
        // The line is written when the body has been sent, so it counts real bytes.
        Some(pending) => {
            let answer = super::access_log::Answer {
                status: resp.status().as_u16(),
                response: resp.headers().clone(),
                upstream: resp.extensions().get::<UpstreamHost>().map(|u| u.0.clone()),
                flags,
            };
            resp.map(|b| super::access_log::LoggedBody::new(b, pending, answer).boxed())
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

fn protocol_name(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    }
}

/// Envoy's response flags for the failures the proxy answers itself.
fn response_flags(e: &ProxyError) -> &'static str {
    match e {
        ProxyError::NoRoute(_) => "NR",
        ProxyError::NoHealthyEndpoint(_)
        | ProxyError::NoEndpoint { .. }
        | ProxyError::NoProvider(_) => "UH",
        ProxyError::Upstream { .. } | ProxyError::UpstreamTls { .. } => "UF",
        ProxyError::Timeout(_) => "UT",
        ProxyError::Overflow { .. } => "UO",
        ProxyError::NotABackend { .. } => "UAEX",
        ProxyError::BadRequest(_) => "DPE",
    }
}

fn reason_label(e: &ProxyError) -> &'static str {
    match e {
        ProxyError::NoRoute(_) => "no_route",
        ProxyError::NotABackend { .. } => "not_a_backend",
        ProxyError::NoProvider(_) => "no_provider",
        ProxyError::NoHealthyEndpoint(_) | ProxyError::NoEndpoint { .. } => "no_healthy_endpoint",
        ProxyError::Upstream { .. } => "upstream",
        ProxyError::UpstreamTls { .. } => "upstream_tls",
        ProxyError::Timeout(_) => "timeout",
        ProxyError::Overflow { .. } => "overflow",
        ProxyError::BadRequest(_) => "bad_request",
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
    forward(state, route, parts, body, &new_path, query.as_deref()).await
}

fn scheme_ext(parts: &http::request::Parts) -> &'static str {
    parts.extensions.get::<Scheme>().map_or("http", |s| s.0)
}

fn service_route<'a>(
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

async fn egress(
    rt: &Runtime,
    state: &State,
    req: Request<Body>,
) -> Result<Response<Body>, ProxyError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let (service, service_port) = authority_of(&parts.uri, &parts.headers);
    let service = service.to_owned();
    if service.is_empty() {
        return Err(ProxyError::BadRequest(
            "no Host header naming a virtual service".into(),
        ));
    }
    if !state.config.services.contains_key(&service) {
        return Err(ProxyError::NotABackend {
            service,
            identity: rt.identity.clone(),
        });
    }
    let view = RequestView {
        method: &parts.method,
        path: &path,
        query: query.as_deref(),
        host: &service,
        port: service_port,
        scheme: scheme_ext(&parts),
        headers: &parts.headers,
    };
    let route = service_route(state, &service, &view)?;
    forward(state, route, parts, body, &path, query.as_deref()).await
}

/// To the local app, within the node listener's `connectionPool`: App Mesh applies a
/// virtual node's pool to its sidecar's connections to the local app.
async fn inbound(
    app: &str,
    timeout_ms: u64,
    pool: Option<&Arc<Limiter>>,
    rt: &Runtime,
    req: Request<Body>,
) -> Result<Response<Body>, ProxyError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    let permit = match pool {
        Some(p) => Some(p.acquire(deadline, timeout_ms).await?),
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
    let req = Request::from_parts(parts, body);
    let send = rt.clients.h1.request(req);
    let resp = match tokio::time::timeout_at(deadline, send).await {
        Err(_) => return Err(ProxyError::Timeout(timeout_ms)),
        Ok(Err(e)) => {
            return Err(ProxyError::Upstream {
                cluster: "local app".into(),
                endpoint: app.to_owned(),
                reason: error_chain(&e),
            })
        }
        Ok(Ok(r)) => r,
    };
    let mut out = finish(resp);
    out.extensions_mut().insert(UpstreamHost(app.to_owned()));
    if let Some(p) = permit {
        out = out.map(|b| p.hold_until_done(b));
    }
    Ok(out)
}
