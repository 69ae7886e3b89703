//! A sidecar's egress listener: the app's requests, routed by the virtual service their
//! authority names, and what the mesh's `egressFilter` does with the ones that name none of
//! the node's backends.

use http::{Request, Response};

use super::error::{Body, ProxyError};
use super::forward::{finish, forward, strip_hop_by_hop};
use super::route_table::RequestView;
use super::server::{authority_of, scheme_ext, service_route, UpstreamHost};
use super::timeout::Timers;
use super::{Runtime, State};
use crate::compile::{DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_PER_REQUEST_TIMEOUT_MS};
use crate::model::spec::EgressFilterType;

/// A request from the app: routed by the virtual service its authority names when that is a
/// backend of the node; otherwise passed through or refused as the mesh's egress filter says.
/// `local` is this listener's own address, so a passthrough cannot loop back into it;
/// `original` is where the app sent the connection when iptables redirected it here.
pub(super) async fn egress(
    rt: &Runtime,
    state: &State,
    local: Option<std::net::SocketAddr>,
    original: Option<std::net::SocketAddr>,
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
        return match state.config.egress_filter {
            EgressFilterType::AllowAll
                if original.is_none() && names_listener(&service, service_port, local) =>
            {
                Err(ProxyError::BadRequest(format!(
                    "{service} is this egress listener itself; passing it through would loop"
                )))
            }
            EgressFilterType::AllowAll => {
                let authority = match original {
                    // Intercepted: where the app connected, whatever its Host says.
                    Some(to) => to.to_string(),
                    None => format!("{service}:{}", service_port.unwrap_or(80)),
                };
                passthrough(rt, parts, body, authority).await
            }
            EgressFilterType::DropAll => Err(ProxyError::NotABackend {
                service,
                identity: rt.identity.clone(),
            }),
        };
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

/// The mesh's egress filter is ALLOW_ALL and `host` is none of the node's backends: the
/// request goes where the app addressed it, as Envoy's PassthroughCluster sends it to the
/// original destination: `authority` is that destination under interception, else the
/// request's authority (port 80 when it names none). The Host header is kept; plain
/// HTTP/1.1, within App Mesh's default timeouts.
async fn passthrough(
    rt: &Runtime,
    mut parts: http::request::Parts,
    body: Body,
    authority: String,
) -> Result<Response<Body>, ProxyError> {
    let pq = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = format!("http://{authority}{pq}")
        .parse()
        .map_err(|_| ProxyError::BadRequest(format!("bad destination {authority}")))?;
    parts.version = http::Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    rt.stats.egress_passthrough.inc();
    let timers = Timers::start(DEFAULT_PER_REQUEST_TIMEOUT_MS, DEFAULT_IDLE_TIMEOUT_MS);
    let send = rt.clients.h1.request(Request::from_parts(parts, body));
    let resp = timers
        .headers(send)
        .await?
        .map_err(|e| ProxyError::upstream(PASSTHROUGH, &authority, &e))?;
    let mut out = finish(resp).map(|b| timers.body(b));
    out.extensions_mut().insert(UpstreamHost(authority));
    Ok(out)
}

/// Whether `host:port` is the listener at `local` (by address: a loopback or unspecified
/// address, or its own, on its port), which a passthrough would send back to itself.
fn names_listener(host: &str, port: Option<u16>, local: Option<std::net::SocketAddr>) -> bool {
    let (Some(local), Ok(ip)) = (
        local,
        host.trim_matches(['[', ']']).parse::<std::net::IpAddr>(),
    ) else {
        return false;
    };
    port.unwrap_or(80) == local.port()
        && (ip == local.ip() || ip.is_loopback() || ip.is_unspecified())
}

/// Envoy's name for the cluster of passed-through egress, kept for error texts and logs.
const PASSTHROUGH: &str = "PassthroughCluster";
