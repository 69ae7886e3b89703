//! What a proxy tells the control plane about itself: its local app's health (a sidecar's
//! endpoint is only worth sending traffic to while its app answers) and its traffic
//! counters per target virtual node (for the admin page's edges).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::health::probe;
use super::upstream::Endpoint;
use super::Runtime;
use crate::model::spec::HealthCheckPolicy;

impl Runtime {
    /// Probes the local app as the listener's health check says (or, with none, checks
    /// that it accepts TCP connections every 5 s) and publishes healthy/unhealthy after the
    /// policy's thresholds.
    pub fn watch_app(
        self: &Arc<Self>,
        app: String,
        policy: Option<HealthCheckPolicy>,
        stop: CancellationToken,
    ) -> watch::Receiver<bool> {
        let policy = policy.unwrap_or_else(tcp_check);
        let (tx, rx) = watch::channel(true);
        let clients = self.clients.clone();
        let ep = Endpoint::new(app);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(policy.interval());
            let (mut ok_run, mut fail_run) = (0u32, 0u32);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if probe(None, &ep, &policy, &clients).await {
                    ok_run += 1;
                    fail_run = 0;
                } else {
                    fail_run += 1;
                    ok_run = 0;
                }
                let healthy = *tx.borrow();
                if healthy && fail_run >= policy.unhealthy_threshold {
                    tracing::warn!(app = %ep.address, "the local app fails its health check");
                    tx.send_replace(false);
                } else if !healthy && ok_run >= policy.healthy_threshold {
                    tracing::info!(app = %ep.address, "the local app passes its health check again");
                    tx.send_replace(true);
                }
            }
        });
        rx
    }

    /// Cumulative (virtual node, requests, 5xx responses) over every route of the current
    /// config.
    pub fn target_totals(&self) -> Vec<(String, u64, u64)> {
        let state = self.state();
        let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for by_cluster in state.responses.values() {
            for (cluster, counters) in by_cluster {
                let Some(c) = state.cluster(cluster) else {
                    continue;
                };
                let t = totals.entry(c.config.node.clone()).or_default();
                t.0 += counters.iter().map(|c| c.get()).sum::<u64>();
                t.1 += counters[4].get();
            }
        }
        totals
            .into_iter()
            .map(|(node, (requests, errors))| (node, requests, errors))
            .collect()
    }
}

/// With no health check in the spec, an app that accepts connections is healthy: checked
/// every 5 s, 2 s to answer, 2 in a row either way.
fn tcp_check() -> HealthCheckPolicy {
    HealthCheckPolicy {
        healthy_threshold: 2,
        interval_millis: 5_000,
        path: None,
        port: None,
        protocol: crate::model::spec::PortProtocol::Tcp,
        timeout_millis: 2_000,
        unhealthy_threshold: 2,
    }
}
