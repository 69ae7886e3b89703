//! What a proxy does to a request's headers before routing it: the Host rules every
//! listener applies (RFC 9112: an HTTP/1.1 request has exactly one Host), and what a
//! gateway, the mesh's edge, does to headers from outside clients.
//!
//! App Mesh's gateways ran Envoy with `use_remote_address` false, passing `X-Forwarded-For`
//! through untouched. The appliance's gateway acts as an edge proxy instead (Envoy with
//! `use_remote_address: true`, nginx, an ALB): it appends the client's address, sets
//! `X-Forwarded-Proto` from its own connection, replaces an outside `x-request-id`, and drops
//! the `x-envoy-*` and `x-appliance-*` headers a client could use to steer the mesh. The
//! README says so.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue, Response, Version};
use http_body_util::BodyExt;
use std::time::Instant;

use super::error::{full, public_text, Body, ProxyError};
use super::Runtime;

/// An HTTP/1.1 request must carry exactly one Host (RFC 9112 section 3.2); HTTP/1.0 may
/// omit it, and HTTP/2 carries `:authority` instead.
pub(super) fn check_host(version: Version, headers: &HeaderMap) -> Result<(), ProxyError> {
    let hosts = headers.get_all(http::header::HOST).iter().count();
    match (version, hosts) {
        (_, n) if n > 1 => Err(ProxyError::BadRequest("more than one Host header".into())),
        (Version::HTTP_11, 0) => Err(ProxyError::BadRequest("no Host header".into())),
        _ => Ok(()),
    }
}

/// Headers an outside client may not set on a request entering the mesh at a gateway: the
/// ones Envoy and the appliance read as instructions (retries, timeouts, the request's
/// origin inside the mesh).
fn is_mesh_internal(name: &str) -> bool {
    name.starts_with("x-envoy-") || name.starts_with("x-appliance-")
}

/// A gateway's changes to a request from an outside client at `peer`, on a connection whose
/// scheme is `scheme`.
pub(super) fn from_outside(headers: &mut HeaderMap, peer: IpAddr, scheme: &'static str) {
    let internal: Vec<http::HeaderName> = headers
        .keys()
        .filter(|k| is_mesh_internal(k.as_str()))
        .cloned()
        .collect();
    for name in internal {
        headers.remove(name);
    }
    // The id is the mesh's: a new one is made when the request is forwarded.
    headers.remove("x-request-id");
    append_forwarded_for(headers, peer);
    headers.insert("x-forwarded-proto", HeaderValue::from_static(scheme));
}

/// Appends `peer` to `X-Forwarded-For`, folding repeated headers into one list.
fn append_forwarded_for(headers: &mut HeaderMap, peer: IpAddr) {
    let mut list: Vec<String> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect();
    list.push(peer.to_string());
    if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
        headers.insert("x-forwarded-for", v);
    }
}

/// A response from inside the mesh on its way to an outside client. A mesh proxy's own
/// answer (it carries `x-appliance-proxy`) names clusters, endpoints and identities: the
/// client gets the gateway's short text for its status instead, and the reason goes to the
/// gateway's log. An app's own responses pass untouched.
pub(super) async fn to_outside(resp: Response<Body>, rt: &Runtime) -> Response<Body> {
    let Some(inner) = resp.headers().get(PROXY_HEADER).cloned() else {
        return resp;
    };
    let (mut parts, body) = resp.into_parts();
    // Read to the end (a proxy's answer is one short line) so the upstream connection is
    // kept for the next request; the text is the reason logged below.
    // A proxy's answers have a known length; anything longer is not read (and its
    // connection not reused).
    let small = hyper::body::Body::size_hint(&body)
        .upper()
        .is_some_and(|n| n <= MESH_REPLY_LIMIT);
    let reason = match small {
        true => match body.collect().await {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim_end().to_owned(),
            Err(_) => String::new(),
        },
        false => String::new(),
    };
    let grpc = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let reason = match parts.headers.get("grpc-message") {
        Some(m) if grpc => percent_encoding::percent_decode(m.as_bytes())
            .decode_utf8_lossy()
            .into_owned(),
        _ => reason,
    };
    rt.edge_log.relayed(
        &rt.identity,
        inner.to_str().unwrap_or("?"),
        parts.status,
        &reason,
    );
    let text = public_text(parts.status);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    if let Ok(v) = HeaderValue::from_str(&rt.identity) {
        parts.headers.insert(PROXY_HEADER, v);
    }
    if grpc {
        parts.headers.insert(
            "grpc-message",
            HeaderValue::from_static(grpc_text(&parts.headers)),
        );
        return Response::from_parts(parts, full(""));
    }
    Response::from_parts(parts, full(format!("{text}\n")))
}

/// The header a mesh proxy's own answers carry, naming that proxy.
const PROXY_HEADER: &str = "x-appliance-proxy";
/// The most of a mesh proxy's answer the gateway reads to log it.
const MESH_REPLY_LIMIT: u64 = 16 * 1024;

/// An outside gRPC client's message for a relayed proxy answer, by its `grpc-status`.
fn grpc_text(headers: &HeaderMap) -> &'static str {
    match headers.get("grpc-status").map(HeaderValue::as_bytes) {
        Some(b"4") => "upstream request timeout",
        Some(b"7") => "forbidden",
        Some(b"12") => "no route",
        _ => "no healthy upstream",
    }
}

/// The gateway's log of what it did not tell outside clients: at most `LINES_PER_SECOND`
/// lines a second, so a failure storm cannot flood the log; the lines left out are counted
/// in the next one written.
#[derive(Default)]
pub(crate) struct EdgeLog {
    budget: std::sync::Mutex<Budget>,
}

const LINES_PER_SECOND: u32 = 20;

impl EdgeLog {
    /// The gateway answered an outside client itself, with a short text for `e`.
    pub fn failed(&self, proxy: &str, e: &ProxyError) {
        if let Some(left_out) = self.admit() {
            tracing::info!(%proxy, status = e.status().as_u16(), reason = %e, left_out, "answered an outside client with a short text");
        }
    }

    /// The gateway relayed `from`'s own answer to an outside client, with a short text.
    fn relayed(&self, proxy: &str, from: &str, status: http::StatusCode, reason: &str) {
        if let Some(left_out) = self.admit() {
            tracing::info!(%proxy, %from, status = status.as_u16(), %reason, left_out, "relayed a mesh proxy's answer to an outside client with a short text");
        }
    }

    fn admit(&self) -> Option<u64> {
        self.budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(Instant::now())
    }
}

/// A per-second line budget: `admit` answers `Some(lines left out since the last one
/// admitted)` or `None` when this second's lines are spent.
#[derive(Default)]
struct Budget {
    second: Option<Instant>,
    used: u32,
    left_out: u64,
}

impl Budget {
    fn admit(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .second
            .is_none_or(|s| now.duration_since(s) >= std::time::Duration::from_secs(1));
        if fresh {
            self.second = Some(now);
            self.used = 0;
        }
        if self.used >= LINES_PER_SECOND {
            self.left_out += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.left_out))
    }
}

/// The headers a `Connection` header names are hop-by-hop for this one connection (RFC 9110
/// section 7.6.1), so they are dropped with it.
pub(super) fn connection_named(headers: &HeaderMap) -> Vec<http::HeaderName> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| http::HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn an_http11_request_needs_exactly_one_host() {
        assert!(check_host(Version::HTTP_11, &headers(&[("host", "a")])).is_ok());
        assert!(check_host(Version::HTTP_11, &headers(&[])).is_err());
        assert!(check_host(Version::HTTP_11, &headers(&[("host", "a"), ("host", "b")])).is_err());
        assert!(check_host(Version::HTTP_10, &headers(&[])).is_ok());
        assert!(check_host(Version::HTTP_2, &headers(&[])).is_ok());
    }

    #[test]
    fn a_gateway_appends_the_client_and_drops_what_steers_the_mesh() {
        let mut h = headers(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2, 10.0.0.3"),
            ("x-forwarded-proto", "https"),
            ("x-envoy-max-retries", "100"),
            ("x-appliance-proxy", "forged"),
            ("x-request-id", "outside"),
            ("x-keep", "1"),
        ]);
        from_outside(&mut h, "192.0.2.7".parse().unwrap(), "http");
        assert_eq!(
            h["x-forwarded-for"],
            "10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.7"
        );
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(!h.contains_key("x-envoy-max-retries"));
        assert!(!h.contains_key("x-appliance-proxy"));
        assert!(!h.contains_key("x-request-id"));
        assert_eq!(h["x-keep"], "1");
    }

    #[test]
    fn the_edge_log_writes_a_bounded_number_of_lines_a_second_and_counts_the_rest() {
        let mut b = Budget::default();
        let t0 = Instant::now();
        for _ in 0..LINES_PER_SECOND {
            assert_eq!(b.admit(t0), Some(0));
        }
        assert_eq!(b.admit(t0), None);
        assert_eq!(b.admit(t0 + std::time::Duration::from_millis(999)), None);
        // The next second's first line says how many were left out.
        assert_eq!(b.admit(t0 + std::time::Duration::from_secs(1)), Some(2));
        assert_eq!(b.admit(t0 + std::time::Duration::from_secs(1)), Some(0));
    }

    #[test]
    fn connection_names_its_own_hop_by_hop_headers() {
        let h = headers(&[("connection", "close, X-Secret"), ("connection", "x-other")]);
        let names: Vec<String> = connection_named(&h).iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["close", "x-secret", "x-other"]);
    }
}
