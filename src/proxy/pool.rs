//! App Mesh's `connectionPool` at run time: a semaphore of requests in flight and a bounded
//! number of waiters. Overflow is refused at once, so a flood costs a 503 each and no memory.

use std::sync::Arc;

use http_body_util::BodyExt;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::error::{Body, ProxyError};
use super::stats::{OverflowLabels, Stats};
use crate::compile::ConnectionPoolConfig;

/// The limits of one cluster (or of one inbound listener's local app).
pub struct Limiter {
    pub config: ConnectionPoolConfig,
    /// Named in errors and metrics: the cluster, or the inbound listener's local app.
    target: String,
    in_flight: Arc<Semaphore>,
    /// One permit per request allowed to wait for `in_flight`.
    waiting: Arc<Semaphore>,
    overflow_in_flight: Counter,
    overflow_pending: Counter,
}

/// Leave to send one request; the slot frees when it is dropped.
pub struct Permit(OwnedSemaphorePermit);

impl Limiter {
    pub fn new(target: &str, config: ConnectionPoolConfig, stats: &Stats) -> Limiter {
        let counter = |limit: &str| {
            stats
                .overflows
                .get_or_create(&OverflowLabels {
                    target: target.to_owned(),
                    limit: limit.to_owned(),
                })
                .clone()
        };
        Limiter {
            config,
            target: target.to_owned(),
            // `usize` holds any `u32`; the cap keeps us under tokio's own maximum.
            in_flight: Arc::new(Semaphore::new(permits(config.max_in_flight))),
            waiting: Arc::new(Semaphore::new(permits(config.max_pending))),
            overflow_in_flight: counter("max_in_flight"),
            overflow_pending: counter("max_pending"),
        }
    }

    /// A slot now; else a place in the queue until one frees or `deadline` passes (no
    /// deadline: a per-request timeout of 0, which waits as long as it takes); else an
    /// overflow. Never waits when the queue is full or has no room (`max_pending` 0).
    pub async fn acquire(
        &self,
        deadline: Option<Instant>,
        timeout_ms: u64,
    ) -> Result<Permit, ProxyError> {
        if let Ok(p) = self.in_flight.clone().try_acquire_owned() {
            return Ok(Permit(p));
        }
        let Ok(_queued) = self.waiting.clone().try_acquire_owned() else {
            let c = self.config;
            let reason = if c.max_pending == 0 {
                self.overflow_in_flight.inc();
                format!(
                    "{} requests in flight, the connectionPool limit",
                    c.max_in_flight
                )
            } else {
                self.overflow_pending.inc();
                format!(
                    "{} requests in flight and {} pending, the connectionPool limits",
                    c.max_in_flight, c.max_pending
                )
            };
            return Err(ProxyError::Overflow {
                target: self.target.clone(),
                reason,
            });
        };
        let wait = self.in_flight.clone().acquire_owned();
        let got = match deadline {
            Some(at) => tokio::time::timeout_at(at, wait).await.ok(),
            None => Some(wait.await),
        };
        match got {
            Some(Ok(p)) => Ok(Permit(p)),
            // The semaphore is never closed; treat it as a timeout should that change.
            Some(Err(_)) | None => Err(ProxyError::Timeout(timeout_ms)),
        }
    }
}

impl Permit {
    /// `body`, holding the slot until it is dropped: an HTTP/1.1 connection is busy until
    /// the whole response has been read, so the slot is too.
    pub fn hold_until_done(self, body: Body) -> Body {
        let permit = self.0;
        body.map_frame(move |frame| {
            let _ = &permit;
            frame
        })
        .boxed()
    }
}

fn permits(n: u32) -> usize {
    usize::try_from(n)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(max_in_flight: u32, max_pending: u32) -> Limiter {
        Limiter::new(
            "c",
            ConnectionPoolConfig {
                max_in_flight,
                max_pending,
            },
            &Stats::new(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn overflow_beyond_in_flight_and_pending_is_refused_at_once() {
        let l = Arc::new(limiter(2, 1));
        let far = Some(Instant::now() + Duration::from_secs(60));
        let a = l.acquire(far, 60_000).await.expect("first slot");
        let _b = l.acquire(far, 60_000).await.expect("second slot");
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.acquire(far, 60_000).await.is_ok() }
        });
        tokio::task::yield_now().await;
        let started = Instant::now();
        let refused = l.acquire(far, 60_000).await;
        assert!(matches!(refused, Err(ProxyError::Overflow { .. })));
        // Paused time: any wait for a slot would advance the clock; a refusal at once does not.
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no waiting beyond the queue"
        );
        drop(a);
        assert!(
            waiter.await.expect("waiter"),
            "the queued request gets the freed slot"
        );
    }

    #[tokio::test]
    async fn a_queued_request_waits_no_longer_than_its_timeout() {
        let l = limiter(1, 10);
        let _a = l
            .acquire(Some(Instant::now() + Duration::from_secs(60)), 60_000)
            .await
            .expect("slot");
        let r = l
            .acquire(Some(Instant::now() + Duration::from_millis(100)), 100)
            .await;
        assert!(matches!(r, Err(ProxyError::Timeout(100))));
    }

    #[tokio::test]
    async fn without_a_queue_overflow_is_immediate() {
        let l = limiter(1, 0);
        let far = Some(Instant::now() + Duration::from_secs(60));
        let _a = l.acquire(far, 60_000).await.expect("slot");
        assert!(matches!(
            l.acquire(far, 60_000).await,
            Err(ProxyError::Overflow { .. })
        ));
    }
}
