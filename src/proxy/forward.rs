//! The upstream half of a request: pick a target and an endpoint, send under the route's
//! timeout and retry policy and the cluster's connection pool, and feed outlier detection
//! with every answer.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};

use super::attempt::{choose_target, Attempts, Next, Outcome};
use super::error::{Body, BodyError, ProxyError};
use super::route_table::Route;
use super::server::UpstreamHost;
use super::timeout::Timers;
use super::tls::UpstreamTlsError;
use super::upgrade::take_upgrade;
use super::upstream::Usable;
use super::State;

/// Bodies up to this size are buffered so a failed try can be retried; larger ones stream
/// and are not retried.
const MAX_RETRY_BODY: u64 = 64 * 1024;

/// A body of unknown length (HTTP/2 and gRPC send none) that has not ended after this long
/// is streamed rather than buffered: a bidirectional gRPC call whose client waits for an
/// answer before it ends its stream must not wait on us.
const BUFFER_STALL: Duration = Duration::from_millis(100);

/// The request's body, buffered when small so a retry can resend it.
enum Payload {
    Buffered(Bytes),
    Streaming(Option<Body>),
}

async fn payload(headers: &HeaderMap, mut body: Body) -> Result<Payload, ProxyError> {
    use hyper::body::Body as _;
    let len = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let chunked = headers.contains_key(http::header::TRANSFER_ENCODING);
    let reading = |e: BodyError| ProxyError::BadRequest(format!("reading the request body: {e}"));
    match (len, chunked) {
        (Some(n), false) if n <= MAX_RETRY_BODY => {
            let bytes = body.collect().await.map_err(reading)?.to_bytes();
            Ok(Payload::Buffered(bytes))
        }
        (Some(_), _) | (None, true) => Ok(Payload::Streaming(Some(body))),
        // HTTP/1.1 with neither header has no body; HTTP/2 says so with END_STREAM.
        (None, false) if body.is_end_stream() => Ok(Payload::Buffered(Bytes::new())),
        (None, false) => {
            // Unknown length: buffer what arrives promptly, up to the retry limit (a unary
            // gRPC call is one message and END_STREAM), else stream with what was read.
            let mut read: Vec<Frame<Bytes>> = Vec::new();
            let mut size = 0u64;
            loop {
                let next = tokio::time::timeout(BUFFER_STALL, body.frame()).await;
                match next {
                    Ok(None) => {
                        let mut all = bytes::BytesMut::new();
                        for f in read {
                            if let Ok(d) = f.into_data() {
                                all.extend_from_slice(&d);
                            }
                        }
                        return Ok(Payload::Buffered(all.freeze()));
                    }
                    Ok(Some(frame)) => {
                        let frame = frame.map_err(reading)?;
                        let data = frame.data_ref().map(|d| d.len());
                        read.push(frame);
                        // Trailers cannot be kept in a buffered body: stream them.
                        let Some(n) = data else { break };
                        size += u64::try_from(n).unwrap_or(u64::MAX);
                        if size > MAX_RETRY_BODY {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            Ok(Payload::Streaming(Some(boxed(Prefixed {
                read: read.into(),
                rest: body,
            }))))
        }
    }
}

/// A request body some of whose frames were already read: those first, then the rest.
struct Prefixed {
    read: std::collections::VecDeque<Frame<Bytes>>,
    rest: Body,
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.read.pop_front() {
            Some(f) => std::task::Poll::Ready(Some(Ok(f))),
            None => std::pin::Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.is_end_stream()
    }
}

/// A hyper body as the proxy's `Body`, whose error can also be the proxy's own.
pub(super) fn boxed<B>(body: B) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BodyError>,
{
    body.map_err(Into::into).boxed()
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    text
}

/// The first error of type `T` in `e`'s source chain.
pub(super) fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Drops the hop-by-hop headers, and those the `Connection` header names (but never the
/// ones that frame or address the message, whatever a client names).
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for h in super::edge::connection_named(headers) {
        if h != http::header::HOST && h != http::header::CONTENT_LENGTH {
            headers.remove(h);
        }
    }
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
}

pub(super) async fn forward(
    state: &State,
    route: &Route,
    mut parts: http::request::Parts,
    body: Body,
    path: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ProxyError> {
    let upgrade = take_upgrade(&mut parts);
    strip_hop_by_hop(&mut parts.headers);
    if let Some(u) = &upgrade {
        u.restore(&mut parts.headers);
    }
    if !parts.headers.contains_key("x-request-id") {
        if let Ok(v) = HeaderValue::from_str(&request_id()) {
            parts.headers.insert("x-request-id", v);
        }
    }
    let mut payload = payload(&parts.headers, body).await?;
    let retry = &route.config.retry;
    // Started once the request has been read, as Envoy's route timeout is.
    let timers = Timers::start(
        route.config.per_request_timeout_ms,
        route.config.idle_timeout_ms,
    );
    let deadline = timers.deadline;
    let mut attempts = Attempts::new(retry, deadline, matches!(payload, Payload::Buffered(_)));
    let pq = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    // Endpoints this request has tried (Envoy's `previous_hosts`), and the target drawn.
    let mut tried: Vec<String> = Vec::new();
    let mut drawn = None;
    loop {
        let usable = |t: &crate::compile::WeightedCluster| {
            state.cluster(&t.cluster).map_or(Usable::No, |c| c.usable())
        };
        let Some(target) = choose_target(route, drawn, usable, rand::random::<u32>()) else {
            return Err(no_endpoint(state, route));
        };
        drawn = Some(target);
        let Some(cluster) = state.cluster(&target.cluster) else {
            return Err(no_endpoint(state, route));
        };
        // Before the endpoint is chosen: a request that waits for a slot should go to the
        // endpoint that is best when it gets one. An overflow is not retried (Envoy's
        // neither): another try would only add to the load that filled the pool.
        let permit = match &cluster.limiter {
            Some(l) => Some(
                l.acquire(deadline, route.config.per_request_timeout_ms)
                    .await?,
            ),
            None => None,
        };
        let Some(endpoint) = cluster.pick(&tried) else {
            return Err(no_endpoint(state, route));
        };
        let body: Body = match &mut payload {
            Payload::Buffered(b) => Full::new(b.clone()).map_err(|never| match never {}).boxed(),
            Payload::Streaming(b) => match b.take() {
                Some(b) => b,
                // `Attempts` never retries a streamed body; this is that promise's edge.
                None => return Err(ProxyError::Timeout(route.config.per_request_timeout_ms)),
            },
        };
        let mut req = Request::builder()
            .method(parts.method.clone())
            .version(http::Version::HTTP_11);
        if let Some(h) = req.headers_mut() {
            *h = parts.headers.clone();
        }
        let uri = format!("http://{}{pq}", endpoint.address);
        let req = req
            .uri(uri)
            .body(body)
            .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
        let mut this_try = timers;
        this_try.deadline = attempts.try_deadline(tokio::time::Instant::now());
        let client = super::upstream_client(state, cluster);
        let started = std::time::Instant::now();
        let outcome = this_try.headers(client.request(req)).await;
        let now = tokio::time::Instant::now();
        // Outlier detection counts what Envoy's consecutive-5xx does: 5xx answers, and
        // connection failures and timeouts as the 503 and 504 they become.
        cluster.record(
            endpoint,
            !matches!(&outcome, Ok(Ok(r)) if !r.status().is_server_error()),
        );
        tried.push(endpoint.address.clone());
        let (failed, error) = match outcome {
            // A silent upstream is not retried: the stream idle timeout ends the request.
            Err(e @ ProxyError::StreamIdle(_)) => return Err(e),
            Err(_) if attempts.expired(now) => {
                return Err(ProxyError::Timeout(route.config.per_request_timeout_ms));
            }
            Err(_) => (
                Outcome::PerTryTimeout,
                ProxyError::Timeout(retry.per_retry_timeout_ms),
            ),
            Ok(Err(e)) => {
                if let Some(tls) = find_source::<UpstreamTlsError>(&e) {
                    return Err(ProxyError::UpstreamTls {
                        cluster: target.cluster.clone(),
                        endpoint: endpoint.address.clone(),
                        reason: tls.to_string(),
                    });
                }
                let failed = classify(&e);
                if failed.is_local_origin() {
                    endpoint.local_failure(now);
                }
                let error = ProxyError::upstream(&target.cluster, &endpoint.address, &e);
                tracing::debug!(endpoint = %endpoint.address, ?failed, %error, retries = attempts.retries(), "try failed");
                (failed, error)
            }
            Ok(Ok(resp)) => {
                endpoint.local_success();
                let status = resp.status().as_u16();
                state.observe(&target.cluster, started.elapsed().as_secs_f64());
                state.count(&route.name, &target.cluster, status);
                // A trailers-only gRPC answer carries its status in the headers.
                let grpc_status = resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok()?.parse::<u8>().ok());
                let answer = Outcome::Response {
                    status,
                    grpc_status,
                };
                if let Next::Retry { after } = attempts.after(answer, now, rand::random()) {
                    // Drain so the connection can be reused.
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), resp.into_body().collect())
                            .await;
                    tokio::time::sleep(after).await;
                    state.retries.inc();
                    continue;
                }
                let mut out = match upgrade {
                    Some(u) if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
                        u.bridge(resp)
                    }
                    // The timers run on until the last byte, as Envoy's route timeout does.
                    _ => finish(resp).map(|b| timers.body(b)),
                };
                out.extensions_mut()
                    .insert(UpstreamHost(endpoint.address.clone()));
                if let Some(p) = permit {
                    out = out.map(|b| p.hold_until_done(b));
                }
                return Ok(out);
            }
        };
        match attempts.after(failed, now, rand::random()) {
            Next::Retry { after } => {
                drop(permit);
                tokio::time::sleep(after).await;
                state.retries.inc();
            }
            Next::Stop => return Err(error),
        }
    }
}

/// How a failed try failed, for the retry policy.
fn classify(e: &hyper_util::client::legacy::Error) -> Outcome {
    if e.is_connect() {
        return Outcome::ConnectFailure;
    }
    match find_source::<h2::Error>(e) {
        Some(h2) if h2.reason() == Some(h2::Reason::REFUSED_STREAM) => Outcome::RefusedStream,
        _ => Outcome::Reset,
    }
}

/// The 503 when no target of `route` can take the request, saying why for each target.
fn no_endpoint(state: &State, route: &Route) -> ProxyError {
    let reason = route
        .config
        .targets
        .iter()
        .map(|t| match state.cluster(&t.cluster) {
            Some(c) => format!("{}: {}", c.config.node, c.why_unusable()),
            None => format!("{}: not in this config", t.cluster),
        })
        .collect::<Vec<_>>()
        .join("; ");
    ProxyError::NoEndpoint {
        route: route.name.clone(),
        reason,
    }
}

/// A random request id in UUID form, from the thread's userspace RNG (no syscall per request,
/// unlike `Uuid::new_v4`).
fn request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

pub(super) fn finish(resp: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, boxed(body))
}
