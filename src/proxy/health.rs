//! Active health checks, as the listener's `healthCheck` says: every interval each endpoint
//! is probed (HTTP GET of the path, or a TCP connect); `unhealthyThreshold` failures in a
//! row take it out of rotation, `healthyThreshold` successes bring it back.

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
        gauge.set(1);
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
                if ep.is_healthy() && fail_run >= policy.unhealthy_threshold {
                    ep.set_healthy(false);
                    gauge.set(0);
                    tracing::warn!(endpoint = %ep.address, "endpoint failed its health check; taken out of rotation");
                } else if !ep.is_healthy() && ok_run >= policy.healthy_threshold {
                    ep.set_healthy(true);
                    gauge.set(1);
                    tracing::info!(endpoint = %ep.address, "endpoint passes its health check again");
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
