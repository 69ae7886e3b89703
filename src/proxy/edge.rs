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

use http::{HeaderMap, HeaderValue, Version};

use super::error::ProxyError;

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
    fn connection_names_its_own_hop_by_hop_headers() {
        let h = headers(&[("connection", "close, X-Secret"), ("connection", "x-other")]);
        let names: Vec<String> = connection_named(&h).iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["close", "x-secret", "x-other"]);
    }
}
