//! Raw TCP, as App Mesh's Envoy carried it: a sidecar's inbound `tcp` listeners splice to the
//! local app, its `--egress-tcp` ports route through a virtual service's tcp route, and
//! intercepted connections go to a declared backend or their original destination. Bytes
//! are never parsed: they are copied both ways until a side closes or the connection has been
//! idle for its `timeout.idle`.
//!
//! The config is read once per connection, so a push changes the next connection and never
//! cuts an open one: it keeps the `Arc<State>` it started with.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::error::ProxyError;
use super::original_dst::Refusal;
use super::stats::{ClusterLabels, ErrorLabels, Stats, TcpBytesLabels};
use super::tls::Downstream;
use super::upstream::{Cluster, Endpoint};
use super::{Runtime, State};
use crate::compile::{TcpRouteConfig, DEFAULT_IDLE_TIMEOUT_MS};

/// Time to open a connection to an endpoint (or the local app) before it counts as a
/// connect failure, and is retried elsewhere when the route allows.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per direction. Large enough for a full TLS record, small enough for thousands of idle
/// connections.
const BUFFER: usize = 16 * 1024;

/// Where a raw TCP listener sends its connections.
#[derive(Debug, Clone)]
pub(super) enum Target {
    /// The local app at `app`; `port` is the configured listener whose idle timeout,
    /// connection pool and TLS apply.
    App { app: String, port: Option<u16> },
    /// The tcp route of `service` (the one matching `port` when given).
    Service { service: String, port: Option<u16> },
    /// An intercepted connection to no declared backend, under ALLOW_ALL: spliced to where
    /// the app sent it (Envoy's PassthroughCluster).
    Passthrough(std::net::SocketAddr),
    /// An intercepted connection closed at once, its reason logged and counted.
    Refused(Refusal),
}

/// One accepted connection, on the config current now (the listener's accept loop, in
/// `server.rs`, drains these with its HTTP connections).
pub(super) async fn serve_connection(
    rt: Arc<Runtime>,
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    target: Target,
) {
    let state = rt.state();
    let (start, began, local) = (
        std::time::SystemTime::now(),
        Instant::now(),
        tcp.local_addr().ok(),
    );
    let result = match &target {
        Target::App { app, port } => inbound(&rt, &state, tcp, app, *port).await,
        Target::Service { service, port } => egress(&rt, &state, tcp, service, *port).await,
        Target::Passthrough(to) => passthrough(&rt, tcp, *to).await,
        Target::Refused(why) => {
            // The app sees only a closed connection, so the reason goes to the operator.
            tracing::info!(proxy = %rt.identity, peer = %peer, reason = %why, "intercepted connection refused");
            drop(tcp);
            Err(refusal_error(why, &rt.identity))
        }
    };
    // Envoy's tcp_proxy logs each connection when it closes, refused ones included.
    if let Some(log) = &state.access_log {
        let (spliced, flags) = match &result {
            Ok(s) => (Some(s), "-"),
            Err(e) => (None, e.response_flags()),
        };
        log.log(&super::access_log::Entry {
            start,
            duration_ms: began.elapsed().as_millis(),
            bytes_received: spliced.map_or(0, |s| s.received),
            bytes_sent: spliced.map_or(0, |s| s.sent),
            http: None,
            upstream: spliced.map(|s| s.upstream.as_str()),
            flags,
            downstream_remote: Some(peer),
            downstream_local: local,
        });
    }
    if let Err(e) = result {
        tracing::debug!(proxy = %rt.identity, error = %e, "tcp connection refused");
        rt.stats
            .local_errors
            .get_or_create(&ErrorLabels {
                reason: e.reason_label().to_owned(),
            })
            .inc();
    }
}

/// What a spliced connection carried, for its access log line.
struct Spliced {
    upstream: String,
    /// Bytes from the client.
    received: u64,
    /// Bytes to the client.
    sent: u64,
}

/// One inbound connection: the listener's pool, its TLS, then the local app.
async fn inbound(
    rt: &Runtime,
    state: &State,
    tcp: TcpStream,
    app: &str,
    port: Option<u16>,
) -> Result<Spliced, ProxyError> {
    let listener = port.and_then(|p| state.config.listeners.iter().find(|l| l.port == p));
    let idle = listener.map_or(DEFAULT_IDLE_TIMEOUT_MS, |l| l.idle_timeout_ms);
    // `maxConnections` is a hard cap with no queue: over it, the connection is closed at
    // once (the limiter counts it), as Envoy's tcp_proxy does on overflow.
    let _permit = match port.and_then(|p| state.inbound_pool(p)) {
        Some(pool) => Some(pool.acquire(Some(Instant::now()), 0).await?),
        None => None,
    };
    let down = match port.and_then(|p| state.listener_tls(p)) {
        None => Downstream::Plain(tcp),
        // STRICT: the handshake completes before a byte reaches the app.
        Some(tls) => tls.accept(tcp).await.ok_or_else(|| {
            ProxyError::BadRequest("TLS handshake refused on a tcp listener".into())
        })?,
    };
    // A client whose identity is revoked later is cut off then (Runtime::revocation).
    let revoked = down.peer().map(|id| rt.revocation(id));
    let up = connect(app).await.map_err(|reason| ProxyError::Upstream {
        cluster: "local app".into(),
        endpoint: app.to_owned(),
        reason,
    })?;
    let label = format!(
        "cds_ingress_{}_{}_tcp_{}",
        state.config.identity.mesh,
        state.config.identity.name,
        port.unwrap_or_default()
    );
    let (received, sent) = splice(
        down,
        up,
        super::timeout::limit(idle),
        &Counters::new(&rt.stats, &label),
        async move {
            match revoked {
                Some(r) => r.await,
                None => std::future::pending().await,
            }
        },
    )
    .await;
    Ok(Spliced {
        upstream: app.to_owned(),
        received,
        sent,
    })
}

/// One egress connection: a target by weight, an endpoint, retried elsewhere on connect
/// failure (before any byte is read, so nothing is sent twice), then the splice.
async fn egress(
    rt: &Runtime,
    state: &State,
    tcp: TcpStream,
    service: &str,
    port: Option<u16>,
) -> Result<Spliced, ProxyError> {
    let route = route_for(state, service, port).ok_or_else(|| {
        ProxyError::NoRoute(format!(
            "no tcp route on {service} for port {}",
            port.map_or("any".into(), |p| p.to_string())
        ))
    })?;
    let mut failed: HashSet<String> = HashSet::new();
    let mut last = ProxyError::NoProvider(route.name.clone());
    for attempt in 0..=route.connect_retries {
        let Some((cluster, ep)) = pick(state, route, &failed) else {
            break;
        };
        if attempt > 0 {
            rt.stats.retries.inc();
        }
        match connect(&ep.address).await {
            Ok(up) => {
                cluster.record(&ep, false);
                let counters = Counters::new(&rt.stats, &cluster.name);
                let idle = super::timeout::limit(route.idle_timeout_ms);
                let (received, sent) = match &cluster.tls {
                    None => splice(tcp, up, idle, &counters, std::future::pending()).await,
                    // A TLS failure is not retried elsewhere: every endpoint of the cluster
                    // shares its TLS settings, so it would fail the same way.
                    Some(tls) => {
                        let up = tls.handshake_tcp(&ep.address, up).await.map_err(|e| {
                            ProxyError::UpstreamTls {
                                cluster: cluster.name.clone(),
                                endpoint: ep.address.clone(),
                                reason: e.reason,
                            }
                        })?;
                        splice(tcp, up, idle, &counters, std::future::pending()).await
                    }
                };
                return Ok(Spliced {
                    upstream: ep.address.clone(),
                    received,
                    sent,
                });
            }
            Err(reason) => {
                tracing::debug!(cluster = %cluster.name, endpoint = %ep.address, %reason, attempt, "tcp connect failed");
                // A connect failure is a server error to outlier detection, as for HTTP.
                cluster.record(&ep, true);
                failed.insert(ep.address.clone());
                last = ProxyError::Upstream {
                    cluster: cluster.name.clone(),
                    endpoint: ep.address.clone(),
                    reason,
                };
            }
        }
    }
    Err(last)
}

/// An intercepted connection passed through to its original destination, within App Mesh's
/// default idle timeout, counted as `egress_passthrough_connections`.
async fn passthrough(
    rt: &Runtime,
    tcp: TcpStream,
    to: std::net::SocketAddr,
) -> Result<Spliced, ProxyError> {
    let endpoint = to.to_string();
    let up = connect(&endpoint)
        .await
        .map_err(|reason| ProxyError::Upstream {
            cluster: PASSTHROUGH.into(),
            endpoint: endpoint.clone(),
            reason,
        })?;
    rt.stats.egress_passthrough_tcp.inc();
    let (received, sent) = splice(
        tcp,
        up,
        super::timeout::limit(DEFAULT_IDLE_TIMEOUT_MS),
        &Counters::new(&rt.stats, PASSTHROUGH),
        std::future::pending(),
    )
    .await;
    Ok(Spliced {
        upstream: endpoint,
        received,
        sent,
    })
}

/// Envoy's name for the cluster of passed-through egress.
const PASSTHROUGH: &str = "PassthroughCluster";

/// The proxy error a refusal is logged and counted as (`local_errors{reason}`).
fn refusal_error(why: &Refusal, identity: &str) -> ProxyError {
    match why {
        Refusal::NotABackend(to) => ProxyError::NotABackend {
            service: format!("tcp {to}"),
            identity: identity.to_owned(),
        },
        Refusal::Ambiguous { .. } => ProxyError::NoRoute(why.to_string()),
        Refusal::Loop(_) => ProxyError::BadRequest(why.to_string()),
    }
}

/// The route for `service`: the one whose `match.port` is `port`, or one with no port.
fn route_for<'a>(state: &'a State, service: &str, port: Option<u16>) -> Option<&'a TcpRouteConfig> {
    let routes = state.config.tcp_routes.get(service)?;
    routes
        .iter()
        .find(|r| port.is_some() && r.port == port)
        .or_else(|| routes.iter().find(|r| r.port.is_none() || port.is_none()))
}

/// A target by weight among those with an available endpoint not yet tried, then one such
/// endpoint of it. A dead target's share goes to the live ones, as for HTTP.
fn pick(
    state: &State,
    route: &TcpRouteConfig,
    failed: &HashSet<String>,
) -> Option<(Arc<Cluster>, Arc<Endpoint>)> {
    let usable: Vec<(&Arc<Cluster>, u32)> = route
        .targets
        .iter()
        .filter_map(|t| state.cluster(&t.cluster).map(|c| (c, t.weight)))
        .filter(|(c, w)| *w > 0 && c.endpoints.iter().any(|e| fresh(e, failed)))
        .collect();
    let total: u32 = usable.iter().map(|(_, w)| *w).sum();
    if total == 0 {
        return None;
    }
    let mut point = rand::random::<u32>() % total;
    for (cluster, weight) in usable {
        if point < weight {
            let ep = cluster.pick_where(|e| fresh(e, failed))?;
            return Some((cluster.clone(), ep.clone()));
        }
        point -= weight;
    }
    None
}

fn fresh(e: &Endpoint, failed: &HashSet<String>) -> bool {
    e.is_available() && !failed.contains(&e.address)
}

async fn connect(addr: &str) -> Result<TcpStream, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// A cluster's TCP metrics, looked up once per connection.
struct Counters {
    bytes_in: Counter,
    bytes_out: Counter,
    active: Gauge,
}

impl Counters {
    fn new(stats: &Stats, cluster: &str) -> Counters {
        let labels = ClusterLabels {
            cluster: cluster.to_owned(),
        };
        stats.tcp_connections.get_or_create(&labels).inc();
        let bytes = |direction: &str| {
            stats
                .tcp_bytes
                .get_or_create(&TcpBytesLabels {
                    cluster: cluster.to_owned(),
                    direction: direction.to_owned(),
                })
                .clone()
        };
        Counters {
            bytes_in: bytes("in"),
            bytes_out: bytes("out"),
            active: stats.tcp_active.get_or_create(&labels).clone(),
        }
    }
}

/// Copies both ways until both sides have closed, either fails, or nothing moved for `idle`
/// (none: `timeout.idle` 0, which App Mesh defines as no idle timeout).
/// A side's EOF is passed on as a half-close, so request/response protocols that close their
/// sending side first still get their answer. `cut` resolving closes both sides at once
/// (the client's identity was revoked). Returns the bytes from and to the client.
async fn splice<D, U>(
    down: D,
    up: U,
    idle: Option<Duration>,
    counters: &Counters,
    cut: impl std::future::Future<Output = ()>,
) -> (u64, u64)
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    tokio::pin!(cut);
    counters.active.inc();
    let (mut down_r, mut down_w) = tokio::io::split(down);
    let (mut up_r, mut up_w) = tokio::io::split(up);
    let (mut from_down, mut from_up) = (vec![0u8; BUFFER], vec![0u8; BUFFER]);
    let (mut down_open, mut up_open) = (true, true);
    let (mut received, mut sent) = (0u64, 0u64);
    // Without an idle timeout the timer is never polled, so its length does not matter.
    let gap = idle.unwrap_or(Duration::MAX);
    let timer = tokio::time::sleep(idle.unwrap_or(Duration::ZERO));
    tokio::pin!(timer);
    while down_open || up_open {
        tokio::select! {
            r = down_r.read(&mut from_down), if down_open => match r {
                Ok(0) => {
                    down_open = false;
                    let _ = up_w.shutdown().await;
                }
                Ok(n) => {
                    if up_w.write_all(&from_down[..n]).await.is_err() {
                        break;
                    }
                    let n = u64::try_from(n).unwrap_or(u64::MAX);
                    received += n;
                    counters.bytes_in.inc_by(n);
                    if idle.is_some() {
                        timer.as_mut().reset(Instant::now() + gap);
                    }
                }
                Err(_) => break,
            },
            r = up_r.read(&mut from_up), if up_open => match r {
                Ok(0) => {
                    up_open = false;
                    let _ = down_w.shutdown().await;
                }
                Ok(n) => {
                    if down_w.write_all(&from_up[..n]).await.is_err() {
                        break;
                    }
                    let n = u64::try_from(n).unwrap_or(u64::MAX);
                    sent += n;
                    counters.bytes_out.inc_by(n);
                    if idle.is_some() {
                        timer.as_mut().reset(Instant::now() + gap);
                    }
                }
                Err(_) => break,
            },
            () = &mut cut => break,
            _ = &mut timer, if idle.is_some() => {
                tracing::debug!(idle_ms = gap.as_millis(), "tcp connection idle; closing it");
                let _ = down_w.shutdown().await;
                break;
            }
        }
    }
    counters.active.dec();
    (received, sent)
}
