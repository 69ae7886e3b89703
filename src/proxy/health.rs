//! Active health checks, as the listener's `healthCheck` says: every interval each endpoint
//! is probed (HTTP GET of the path over HTTP/1.1 or, for http2, h2c; a gRPC Health
//! Checking Protocol `Check` for grpc; or a TCP connect); `unhealthyThreshold` failures in
//! a row take it out of rotation, `healthyThreshold` successes bring it back. A new endpoint
//! starts out of rotation and its first passing check brings it in (Envoy's behaviour for
//! new hosts); a passing check also ends a local-origin back-off (`Endpoint::local_failure`).

use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::error::full;
use super::stats::{EndpointLabels, Stats};
use super::upstream::{Clients, Cluster, Endpoint};
use super::Runtime;
use crate::compile::{ListenerRole, ProxyConfig};
use crate::model::spec::{HealthCheckPolicy, PortProtocol};

/// Starts one checker per endpoint of `cluster`; they stop when `stop` fires.
pub fn spawn(
    cluster: &Arc<Cluster>,
    clients: &Clients,
    stats: &Arc<Stats>,
    stop: CancellationToken,
) {
    let Some(policy) = cluster.config.health_check.clone() else {
        return;
    };
    for ep in &cluster.endpoints {
        let (cluster, ep, policy, clients, stats, stop) = (
            cluster.clone(),
            ep.clone(),
            policy.clone(),
            clients.clone(),
            stats.clone(),
            stop.clone(),
        );
        let gauge = stats
            .healthy
            .get_or_create(&EndpointLabels {
                cluster: cluster.name.clone(),
                endpoint: ep.address.clone(),
            })
            .clone();
        gauge.set(i64::from(ep.is_healthy()));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(policy.interval());
            let (mut ok_run, mut fail_run) = (0u32, 0u32);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                // This proxy's own credentials are not loaded yet: no verdict on the endpoint;
                // look again shortly rather than a whole interval later.
                if cluster.tls.as_ref().is_some_and(|t| !t.ready()) {
                    tick.reset_after(Duration::from_millis(100));
                    continue;
                }
                let ok = probe(Some(&cluster), &ep, &policy, &clients).await;
                if ok {
                    ok_run += 1;
                    fail_run = 0;
                } else {
                    fail_run += 1;
                    ok_run = 0;
                }
                match transition(
                    ep.is_healthy(),
                    ep.has_passed(),
                    ok,
                    ok_run,
                    fail_run,
                    &policy,
                ) {
                    Some(false) => {
                        ep.set_healthy(false);
                        gauge.set(0);
                        tracing::warn!(endpoint = %ep.address, "endpoint failed its health check; taken out of rotation");
                    }
                    Some(true) => {
                        ep.set_healthy(true);
                        gauge.set(1);
                        tracing::info!(endpoint = %ep.address, "endpoint passes its health check; in rotation");
                    }
                    None => {}
                }
                if ok {
                    ep.check_passed();
                }
            }
        });
    }
}

/// Runs a virtual gateway listener's `healthCheck` against the gateway's own listener on
/// `port`, bound at `addr`, and records the verdict for `/ready`. App Mesh declares a
/// virtual gateway unhealthy after `unhealthyThreshold` failures; nothing in the mesh
/// routes to a gateway, so the verdict is for what is in front of it (a load balancer's
/// target check of `/ready`). The policy is re-read each round, so an edit applies live;
/// the check stops with the listener.
pub(super) fn spawn_listener_check(
    rt: &Arc<Runtime>,
    port: u16,
    addr: SocketAddr,
    stop: CancellationToken,
) {
    let rt = Arc::downgrade(rt);
    // A wildcard bind is checked over loopback: the check tests the gateway, not the route.
    let target = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv6() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        ip if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        _ => addr,
    };
    let ep = Endpoint::new(target.to_string(), false);
    tokio::spawn(async move {
        let mut current: Option<HealthCheckPolicy> = None;
        let (mut ok_run, mut fail_run) = (0u32, 0u32);
        loop {
            let Some(runtime) = rt.upgrade() else { return };
            let policy = gateway_policy(&runtime.config(), port);
            if policy != current {
                (ok_run, fail_run) = (0, 0);
                current = policy.clone();
                runtime.set_listener_health(port, true);
            }
            let wait = policy
                .as_ref()
                .map_or(Duration::from_secs(1), |p| p.interval());
            if let Some(p) = &policy {
                if probe(None, &ep, p, &runtime.clients).await {
                    ok_run += 1;
                    fail_run = 0;
                } else {
                    fail_run += 1;
                    ok_run = 0;
                }
                if fail_run >= p.unhealthy_threshold && runtime.set_listener_health(port, false) {
                    tracing::warn!(port, "the gateway listener fails its health check");
                } else if ok_run >= p.healthy_threshold && !runtime.set_listener_health(port, true)
                {
                    tracing::info!(port, "the gateway listener passes its health check again");
                }
            }
            drop(runtime);
            tokio::select! {
                _ = stop.cancelled() => {
                    if let Some(runtime) = rt.upgrade() {
                        runtime.forget_listener_health(port);
                    }
                    return;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    });
}

fn gateway_policy(config: &ProxyConfig, port: u16) -> Option<HealthCheckPolicy> {
    config.listeners.iter().find_map(|l| match &l.role {
        ListenerRole::Gateway { health_check, .. } if l.port == port => health_check.clone(),
        _ => None,
    })
}

/// One check. An HTTP check goes the way requests do: over TLS when the cluster's client
/// policy says so, as Envoy's checks use the cluster's transport. A sidecar's check of its
/// own app has no cluster and is plain text.
pub(super) async fn probe(
    cluster: Option<&Cluster>,
    ep: &Endpoint,
    policy: &HealthCheckPolicy,
    clients: &Clients,
) -> bool {
    let timeout = policy.timeout();
    match policy.protocol {
        PortProtocol::Tcp => matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&ep.address)).await,
            Ok(Ok(_))
        ),
        PortProtocol::Grpc => {
            let client = match cluster.filter(|c| c.config.tls.is_some()) {
                Some(c) => c.client(clients),
                None => clients.for_protocol(PortProtocol::Grpc),
            };
            tokio::time::timeout(timeout, grpc_check(client, &ep.address))
                .await
                .unwrap_or(false)
        }
        // http and http2 (h2c: the client for http2 speaks HTTP/2 with prior knowledge).
        protocol => {
            let path = policy.path.as_deref().unwrap_or("/");
            let Ok(req) = http::Request::get(format!("http://{}{path}", ep.address)).body(full(""))
            else {
                return false;
            };
            let client = match cluster.filter(|c| c.config.tls.is_some()) {
                Some(c) => c.client(clients),
                None => clients.for_protocol(protocol),
            };
            match tokio::time::timeout(timeout, client.request(req)).await {
                Ok(Ok(resp)) => {
                    let ok = resp.status().is_success();
                    // Drain the body so the connection goes back to the pool.
                    let _ = tokio::time::timeout(timeout, resp.into_body().collect()).await;
                    ok
                }
                _ => false,
            }
        }
    }
}

/// The health an endpoint moves to after a check, if it changes: out after
/// `unhealthyThreshold` failures in a row, in after `healthyThreshold` passes, or at the
/// very first pass of an endpoint that never passed (a new one).
pub(super) fn transition(
    healthy: bool,
    ever_passed: bool,
    ok: bool,
    ok_run: u32,
    fail_run: u32,
    policy: &HealthCheckPolicy,
) -> Option<bool> {
    if healthy && fail_run >= policy.unhealthy_threshold {
        Some(false)
    } else if !healthy && ok && (!ever_passed || ok_run >= policy.healthy_threshold) {
        Some(true)
    } else {
        None
    }
}

/// `grpc.health.v1.Health/Check` for the whole server (service ""): healthy only with
/// grpc-status OK and status SERVING, as Envoy's gRPC health checker decides.
async fn grpc_check(
    client: &hyper_util::client::legacy::Client<super::tls::Connector, super::error::Body>,
    address: &str,
) -> bool {
    // An empty HealthCheckRequest: the message is zero bytes, after the uncompressed flag
    // and the 4-byte length of gRPC's framing.
    let Ok(req) = http::Request::post(format!("http://{address}/grpc.health.v1.Health/Check"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(full(vec![0u8; 5]))
    else {
        return false;
    };
    let Ok(resp) = client.request(req).await else {
        return false;
    };
    if resp.status() != http::StatusCode::OK {
        return false;
    }
    let headers_status = grpc_status(resp.headers());
    let Ok(body) = resp.into_body().collect().await else {
        return false;
    };
    let status = body.trailers().and_then(grpc_status).or(headers_status);
    status == Some(0) && serving(&body.to_bytes())
}

fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// Whether a gRPC-framed HealthCheckResponse says SERVING (field 1, enum value 1).
fn serving(framed: &[u8]) -> bool {
    let Some((&[0, a, b, c, d], rest)) = framed.split_first_chunk::<5>() else {
        return false; // too short, or compressed (we offered no encoding)
    };
    let len = u32::from_be_bytes([a, b, c, d]);
    let Some(msg) = usize::try_from(len).ok().and_then(|n| rest.get(..n)) else {
        return false;
    };
    health_status(msg) == Some(1)
}

/// The `status` field of a HealthCheckResponse, decoded by hand (no protoc): unknown
/// fields are skipped, the last `status` wins, a truncated message is `None`.
fn health_status(mut msg: &[u8]) -> Option<u64> {
    let mut status = Some(0); // proto3 default: UNKNOWN
    while !msg.is_empty() {
        let key = varint(&mut msg)?;
        match key & 7 {
            0 => {
                let v = varint(&mut msg)?;
                if key >> 3 == 1 {
                    status = Some(v);
                }
            }
            1 => msg = msg.get(8..)?,
            2 => {
                let n = usize::try_from(varint(&mut msg)?).ok()?;
                msg = msg.get(n..)?;
            }
            5 => msg = msg.get(4..)?,
            _ => return None,
        }
    }
    status
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        out |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealthCheckPolicy {
        HealthCheckPolicy {
            healthy_threshold: 3,
            interval_millis: 5_000,
            path: Some("/ping".into()),
            port: None,
            protocol: PortProtocol::Http,
            timeout_millis: 2_000,
            unhealthy_threshold: 2,
        }
    }

    #[test]
    fn a_new_endpoint_comes_in_at_its_first_passing_check() {
        let p = policy();
        assert_eq!(transition(false, false, false, 0, 1, &p), None);
        assert_eq!(transition(false, false, true, 1, 0, &p), Some(true));
    }

    #[test]
    fn an_endpoint_that_failed_needs_the_healthy_threshold_to_come_back() {
        let p = policy();
        assert_eq!(transition(false, true, true, 1, 0, &p), None);
        assert_eq!(transition(false, true, true, 3, 0, &p), Some(true));
        assert_eq!(transition(true, true, false, 0, 1, &p), None);
        assert_eq!(transition(true, true, false, 0, 2, &p), Some(false));
    }

    #[test]
    fn an_endpoint_in_a_checked_cluster_starts_out_of_rotation() {
        let ep = Endpoint::new("10.0.0.1:80".into(), true);
        assert!(!ep.is_available());
        let unchecked = Endpoint::new("10.0.0.2:80".into(), false);
        assert!(unchecked.is_available());
    }

    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8];
        out.extend_from_slice(&u32::try_from(msg.len()).unwrap().to_be_bytes());
        out.extend_from_slice(msg);
        out
    }

    #[test]
    fn serving_is_healthy_and_every_other_status_is_not() {
        assert!(serving(&framed(&[0x08, 0x01])));
        assert!(!serving(&framed(&[0x08, 0x02])), "NOT_SERVING");
        assert!(!serving(&framed(&[0x08, 0x03])), "SERVICE_UNKNOWN");
        assert!(!serving(&framed(&[])), "UNKNOWN, the default");
    }

    #[test]
    fn unknown_fields_are_skipped_and_bad_frames_refused() {
        // field 2 (string "x") before status SERVING.
        assert!(serving(&framed(&[0x12, 0x01, b'x', 0x08, 0x01])));
        assert!(!serving(&[0, 0, 0, 0, 5, 0x08]), "truncated");
        assert!(!serving(&[1, 0, 0, 0, 2, 0x08, 0x01]), "compressed");
        assert!(!serving(&[0, 0]), "no header");
    }
}
