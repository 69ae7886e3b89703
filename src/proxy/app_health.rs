//! The sidecar's watch on its local app's health, which it reports to the control plane: a
//! sidecar's endpoint is only worth sending traffic to while its app answers.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::health::{probe, transition};
use super::upstream::Endpoint;
use super::Runtime;
use crate::compile::{ListenerRole, ProxyConfig};
use crate::model::spec::HealthCheckPolicy;

impl Runtime {
    /// Probes the local app as its first inbound listener's health check says (or, with
    /// none, checks that it accepts TCP connections every 5 s) and publishes
    /// healthy/unhealthy after the policy's thresholds. The app starts unhealthy and its
    /// first passing check makes it healthy, so a sidecar whose app is not up yet is no
    /// endpoint. The policy is read from the running config each round, so a pushed edit
    /// applies from the next check on.
    pub fn watch_app(
        self: &Arc<Self>,
        app: String,
        stop: CancellationToken,
    ) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        let clients = self.clients.clone();
        let ep = Endpoint::new(app, true);
        let rt = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut policy = None;
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            let (mut ok_run, mut fail_run) = (0u32, 0u32);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some(rt) = rt.upgrade() else { return };
                let want = app_policy(&rt.config());
                if policy.as_ref() != Some(&want) {
                    tick = tokio::time::interval_at(
                        tokio::time::Instant::now() + want.interval(),
                        want.interval(),
                    );
                    (ok_run, fail_run) = (0, 0);
                    policy = Some(want.clone());
                }
                let ok = probe(None, &ep, &want, &clients).await;
                if ok {
                    ok_run += 1;
                    fail_run = 0;
                } else {
                    fail_run += 1;
                    ok_run = 0;
                }
                let healthy = *tx.borrow();
                match transition(healthy, ep.has_passed(), ok, ok_run, fail_run, &want) {
                    Some(false) => {
                        tracing::warn!(app = %ep.address, "the local app fails its health check");
                        tx.send_replace(false);
                    }
                    Some(true) => {
                        tracing::info!(app = %ep.address, "the local app passes its health check");
                        tx.send_replace(true);
                    }
                    None => {}
                }
                if ok {
                    ep.check_passed();
                }
            }
        });
        rx
    }
}

/// The health check of the sidecar's app: its first inbound listener's, else a TCP check.
fn app_policy(config: &ProxyConfig) -> HealthCheckPolicy {
    config
        .listeners
        .iter()
        .find_map(|l| match &l.role {
            ListenerRole::Inbound { health_check } => health_check.clone(),
            ListenerRole::Gateway { .. } => None,
        })
        .unwrap_or_else(tcp_check)
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
