//! Active health checks, as the listener's `healthCheck` says: every interval each endpoint
//! is probed (HTTP GET of the path, or a TCP connect); `unhealthyThreshold` failures in a
//! row take it out of rotation, `healthyThreshold` successes bring it back. A new endpoint
//! starts out of rotation and its first passing check brings it in (Envoy's behaviour for
//! new hosts); a passing check also ends a local-origin back-off (`Endpoint::local_failure`).

use http_body_util::BodyExt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use super::error::full;
use super::stats::{EndpointLabels, Stats};
use super::upstream::{Clients, Cluster, Endpoint};
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
}
