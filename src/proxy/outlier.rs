//! Outlier detection, as App Mesh configured Envoy's consecutive-5xx detector: an endpoint
//! that answers `max_server_errors` 5xx (or fails to connect, or times out) in a row leaves
//! the rotation for `base_ejection * times ejected`; a sweep every `interval` brings back the
//! ones whose time is up, and lowers the multiplier of those that stayed in.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::stats::{ClusterLabels, Stats};
use super::upstream::{Cluster, Endpoint};
use crate::compile::{OutlierConfig, MAX_EJECTION_MS};

/// Sweeps never run more often than this, whatever `interval` says (0 would spin).
const MIN_SWEEP: Duration = Duration::from_millis(10);

/// One cluster's detector.
pub struct Outlier {
    config: OutlierConfig,
    /// Held while deciding an ejection, so two endpoints failing at once cannot both pass
    /// the `max_ejection_percent` check.
    deciding: Mutex<()>,
    ejections: Counter,
    ejected_now: Gauge,
}

/// An endpoint's ejection history, touched only on ejection and by the sweep.
#[derive(Debug, Default)]
pub struct Ejection {
    /// Envoy's `num_ejections`: the multiplier of the next ejection's length.
    times: u32,
    until: Option<Instant>,
}

impl Outlier {
    pub fn new(cluster: &str, config: OutlierConfig, stats: &Stats) -> Outlier {
        let labels = ClusterLabels {
            cluster: cluster.to_owned(),
        };
        Outlier {
            config,
            deciding: Mutex::new(()),
            ejections: stats.outlier_ejections.get_or_create(&labels).clone(),
            ejected_now: stats.outlier_ejected.get_or_create(&labels).clone(),
        }
    }

    /// Counts one answer of `ep`: a server error (5xx, connection failure, timeout) or not.
    pub fn record(&self, endpoints: &[Arc<Endpoint>], ep: &Endpoint, server_error: bool) {
        if !server_error {
            ep.consecutive_errors.store(0, Ordering::Relaxed);
            return;
        }
        let run = ep.consecutive_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if run < self.config.max_server_errors || ep.is_ejected() {
            return;
        }
        let Ok(_deciding) = self.deciding.lock() else {
            return; // a panic elsewhere poisoned it: keep serving, eject nothing
        };
        if ep.is_ejected() {
            return;
        }
        let out = endpoints.iter().filter(|e| e.is_ejected()).count();
        if out >= self.max_ejected(endpoints.len()) {
            tracing::debug!(endpoint = %ep.address, out, "outlier not ejected: max_ejection_percent reached");
            return;
        }
        let Ok(mut ejection) = ep.ejection.lock() else {
            return;
        };
        ejection.times = ejection.times.saturating_add(1);
        let length = self.ejection_length(ejection.times);
        ejection.until = Some(Instant::now() + length);
        ep.set_ejected(true);
        ep.consecutive_errors.store(0, Ordering::Relaxed);
        self.ejections.inc();
        self.ejected_now.inc();
        tracing::warn!(
            endpoint = %ep.address,
            consecutive_errors = run,
            ejected_ms = length.as_millis(),
            "endpoint ejected by outlier detection"
        );
    }

    /// How many of `n` endpoints may be out at once: `max_ejection_percent`, but at least one
    /// (App Mesh: "will eject at least one host regardless of the value").
    fn max_ejected(&self, n: usize) -> usize {
        let pct = usize::try_from(self.config.max_ejection_percent).unwrap_or(100);
        (n.saturating_mul(pct) / 100).max(1)
    }

    fn ejection_length(&self, times: u32) -> Duration {
        let base = self.config.base_ejection_ms;
        // Envoy caps the length at max_ejection_time, or at the base if that is longer.
        let ms = base
            .saturating_mul(u64::from(times))
            .min(MAX_EJECTION_MS.max(base));
        Duration::from_millis(ms)
    }

    /// One sweep: endpoints whose ejection is over come back; the others that are in lower
    /// their multiplier, so a host that recovered for good is ejected briefly next time.
    fn sweep(&self, endpoints: &[Arc<Endpoint>], now: Instant) {
        for ep in endpoints {
            let Ok(mut ejection) = ep.ejection.lock() else {
                continue;
            };
            if ep.is_ejected() {
                if ejection.until.is_some_and(|u| now >= u) {
                    ejection.until = None;
                    ep.consecutive_errors.store(0, Ordering::Relaxed);
                    ep.set_ejected(false);
                    self.ejected_now.dec();
                    tracing::info!(endpoint = %ep.address, "ejected endpoint back in rotation");
                }
            } else {
                ejection.times = ejection.times.saturating_sub(1);
            }
        }
    }
}

/// Runs the sweep of `cluster` every `interval` until `stop`.
pub fn spawn_sweep(cluster: &Arc<Cluster>, stop: CancellationToken) {
    let Some(outlier) = cluster.outlier.as_ref() else {
        return;
    };
    let every = Duration::from_millis(outlier.config.interval_ms).max(MIN_SWEEP);
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Some(o) = cluster.outlier.as_ref() {
                o.sweep(&cluster.endpoints, Instant::now());
            }
        }
        // A replaced cluster takes its ejected endpoints out of the gauge with it.
        if let Some(o) = cluster.outlier.as_ref() {
            let out = cluster.endpoints.iter().filter(|e| e.is_ejected()).count();
            o.ejected_now.dec_by(i64::try_from(out).unwrap_or(0));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(n: usize, pct: u32) -> (Outlier, Vec<Arc<Endpoint>>) {
        let o = Outlier::new(
            "c",
            OutlierConfig {
                max_server_errors: 3,
                interval_ms: 1_000,
                base_ejection_ms: 10_000,
                max_ejection_percent: pct,
            },
            &Stats::new(),
        );
        let eps = (0..n)
            .map(|i| Arc::new(Endpoint::new(format!("10.0.0.{i}:80"), false)))
            .collect();
        (o, eps)
    }

    #[test]
    fn consecutive_server_errors_eject_and_a_success_resets_the_run() {
        let (o, eps) = setup(2, 50);
        o.record(&eps, &eps[0], true);
        o.record(&eps, &eps[0], true);
        o.record(&eps, &eps[0], false);
        o.record(&eps, &eps[0], true);
        o.record(&eps, &eps[0], true);
        assert!(!eps[0].is_ejected(), "the run was broken by a success");
        o.record(&eps, &eps[0], true);
        assert!(eps[0].is_ejected());
    }

    #[test]
    fn max_ejection_percent_keeps_the_rest_in_but_one_may_always_go() {
        let (o, eps) = setup(2, 0);
        for ep in &eps {
            for _ in 0..3 {
                o.record(&eps, ep, true);
            }
        }
        assert_eq!(eps.iter().filter(|e| e.is_ejected()).count(), 1);
    }

    #[test]
    fn ejection_lasts_base_times_ejections_and_the_sweep_brings_it_back() {
        let (o, eps) = setup(2, 50);
        let eject = |o: &Outlier| {
            for _ in 0..3 {
                o.record(&eps, &eps[0], true);
            }
        };
        eject(&o);
        let t = Instant::now();
        o.sweep(&eps, t + Duration::from_millis(9_000));
        assert!(eps[0].is_ejected(), "still inside the first 10 s");
        o.sweep(&eps, t + Duration::from_millis(10_001));
        assert!(!eps[0].is_ejected(), "back after 10 s");
        eject(&o);
        let t = Instant::now();
        o.sweep(&eps, t + Duration::from_millis(19_000));
        assert!(eps[0].is_ejected(), "the second ejection lasts 20 s");
    }
}
