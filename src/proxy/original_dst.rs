//! The egress port under transparent interception, as Envoy's `original_dst` listener with
//! its PassthroughCluster: a connection iptables redirected here carries its original
//! destination (`SO_ORIGINAL_DST`). A declared TCP backend at that destination gets the
//! mesh (its tcp route, endpoints and TLS, as `--egress-tcp`); an HTTP request is routed by
//! its Host as on the plain egress listener; anything else follows the mesh's egress filter:
//! ALLOW_ALL splices it to the original destination, DROP_ALL closes it with a logged reason.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::compile::ProxyConfig;
use crate::model::spec::EgressFilterType;

/// How long an intercepted connection to no declared TCP backend may stay silent before it
/// is taken for raw TCP. Protocols where the server speaks first (SMTP, MySQL) wait this long
/// once per connection; shorter risks taking a slow HTTP client for raw TCP.
pub(super) const SNIFF_TIMEOUT: Duration = Duration::from_secs(1);

/// The destination the app dialled before iptables redirected the connection here; `None`
/// when the connection was not redirected (the app used the listener's own address).
pub(super) fn original_destination(tcp: &TcpStream) -> Option<SocketAddr> {
    let local = tcp.local_addr().ok()?;
    let sock = socket2::SockRef::from(tcp);
    let addr = match local {
        SocketAddr::V4(_) => sock.original_dst_v4(),
        SocketAddr::V6(_) => sock.original_dst_v6(),
    }
    .ok()?
    .as_socket()?;
    (addr != local).then_some(addr)
}

/// What to do with an intercepted connection, before a byte of it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// A declared TCP backend: its tcp route (the one for `port`).
    Mesh { service: String, port: u16 },
    /// Look at the first bytes: HTTP is routed by Host, anything else is `otherwise`.
    Sniff { otherwise: Fallback },
    /// Closed at once, with the reason.
    Refuse(Refusal),
}

/// A connection that is neither a declared TCP backend nor HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fallback {
    /// ALLOW_ALL: spliced to the original destination.
    Passthrough(SocketAddr),
    /// DROP_ALL: closed.
    Refuse(Refusal),
}

/// Why an intercepted connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// DROP_ALL and the destination is none of the node's backends.
    NotABackend(SocketAddr),
    /// The port matches the tcp routes of several backends and the address none of their
    /// endpoints, so which one the app meant is unknown.
    Ambiguous {
        to: SocketAddr,
        services: Vec<String>,
    },
    /// The original destination is this listener: passing it through would loop.
    Loop(SocketAddr),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotABackend(to) => write!(
                f,
                "{to} is none of the node's backends and the mesh's egress filter is DROP_ALL"
            ),
            Refusal::Ambiguous { to, services } => write!(
                f,
                "{to}: port {} is the tcp port of several backends ({}) and the address is none of their endpoints",
                to.port(),
                services.join(", ")
            ),
            Refusal::Loop(to) => write!(f, "{to} is this egress listener itself"),
        }
    }
}

/// The decision for a connection redirected from `original` to the listener at `local`.
/// A declared tcp backend matches by endpoint (`original` is one of its targets' endpoints),
/// else by port (its route's `match.port` or its targets' listener port) when only one
/// backend has that port, as Envoy's filter chains match on the destination port.
pub(super) fn decide(config: &ProxyConfig, original: SocketAddr, local: SocketAddr) -> Decision {
    let is_listener = original.port() == local.port()
        && (original.ip() == local.ip() || original.ip().is_loopback());
    if is_listener {
        return Decision::Refuse(Refusal::Loop(original));
    }
    let (mut by_endpoint, mut by_port) = (Vec::new(), Vec::new());
    let addr = original.to_string();
    for (service, routes) in &config.tcp_routes {
        for route in routes {
            let clusters = route
                .targets
                .iter()
                .filter_map(|t| config.clusters.get(&t.cluster));
            for cluster in clusters {
                if cluster.endpoints.contains(&addr) {
                    by_endpoint.push(service.clone());
                }
                if route.port == Some(original.port()) || cluster.port == original.port() {
                    by_port.push(service.clone());
                }
            }
        }
    }
    for found in [&mut by_endpoint, &mut by_port] {
        found.dedup();
        match found.as_slice() {
            [] => continue,
            [one] => {
                return Decision::Mesh {
                    service: one.clone(),
                    port: original.port(),
                }
            }
            many => {
                return Decision::Refuse(Refusal::Ambiguous {
                    to: original,
                    services: many.to_vec(),
                })
            }
        }
    }
    let otherwise = match config.egress_filter {
        EgressFilterType::AllowAll => Fallback::Passthrough(original),
        EgressFilterType::DropAll => Fallback::Refuse(Refusal::NotABackend(original)),
    };
    Decision::Sniff { otherwise }
}

/// What the first bytes of a connection say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sniff {
    /// An HTTP/1 request line or the HTTP/2 preface.
    Http,
    /// Not HTTP.
    Other,
    /// Too few bytes to tell.
    NeedMore,
}

/// HTTP/1 methods, with their space, and the HTTP/2 connection preface's start.
const HTTP_STARTS: [&[u8]; 10] = [
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"CONNECT ",
    b"OPTIONS ",
    b"TRACE ",
    b"PATCH ",
    b"PRI * HTTP/2.0",
];

/// Whether `head`, the first bytes the app sent, starts an HTTP request.
pub(super) fn sniff(head: &[u8]) -> Sniff {
    if head.is_empty() {
        return Sniff::NeedMore;
    }
    let mut partial = false;
    for start in HTTP_STARTS {
        if head.starts_with(start) {
            return Sniff::Http;
        }
        partial |= start.starts_with(head);
    }
    if partial {
        Sniff::NeedMore
    } else {
        Sniff::Other
    }
}

/// Peeks at the connection's first bytes (leaving them to be read) until `sniff` decides, the
/// client closes, or `SNIFF_TIMEOUT` passes: a silent client is taken for raw TCP.
pub(super) async fn sniff_connection(tcp: &TcpStream) -> Sniff {
    let mut buf = [0u8; 16];
    let look = async {
        loop {
            match tcp.peek(&mut buf).await {
                Ok(0) | Err(_) => return Sniff::Other,
                Ok(n) => match sniff(&buf[..n]) {
                    Sniff::NeedMore if n < buf.len() => {
                        // Part of a method name: wait for the rest of it.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Sniff::NeedMore => return Sniff::Other,
                    decided => return decided,
                },
            }
        }
    };
    tokio::time::timeout(SNIFF_TIMEOUT, look)
        .await
        .unwrap_or(Sniff::Other)
}

#[cfg(test)]
#[path = "original_dst_tests.rs"]
mod tests;
