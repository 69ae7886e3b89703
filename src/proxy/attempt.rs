//! The decisions of one request's upstream tries, apart from the I/O in `forward`: which
//! target, whether a failed try is retried and after what back-off, and how long each try
//! may take. Nothing here touches a socket; time is passed in, so the tests run on paused
//! time.

use std::time::Duration;

use tokio::time::Instant;

use super::route_table::Route;
use super::upstream::Usable;
use crate::compile::{RetryConfig, WeightedCluster};

/// Envoy's retry back-off base (`base_interval`); retry N waits uniformly in
/// `[0, (2^N - 1) x base)`.
pub const BACKOFF_BASE: Duration = Duration::from_millis(25);
/// Envoy's back-off cap, ten times the base.
pub const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// How one try ended, in the terms retry policies speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No connection could be made: refused, unreachable, or the connect timed out.
    ConnectFailure,
    /// The connection was reset or closed before a whole response head arrived.
    Reset,
    /// HTTP/2 REFUSED_STREAM: the endpoint did not start the request.
    RefusedStream,
    /// The per-try timeout fired before the response head.
    PerTryTimeout,
    /// A response head arrived.
    Response {
        status: u16,
        grpc_status: Option<u8>,
    },
}

impl Outcome {
    /// Whether `retry` retries this outcome, as Envoy's `retry_on` does: `reset` (which
    /// App Mesh's `server-error` and `gateway-error` carry) covers every reset, connect
    /// failure, refused stream and per-try timeout; `connect-failure` and `refused-stream`
    /// only their own case; status codes only answers.
    pub fn retried_by(self, retry: &RetryConfig) -> bool {
        match self {
            Outcome::ConnectFailure => retry.connection_errors || retry.reset,
            Outcome::RefusedStream => retry.refused_stream || retry.reset,
            Outcome::Reset | Outcome::PerTryTimeout => retry.reset,
            Outcome::Response {
                status,
                grpc_status,
            } => {
                retry.statuses.contains(&status)
                    || grpc_status.is_some_and(|g| retry.grpc_statuses.contains(&g))
            }
        }
    }

    /// A failure of the endpoint itself rather than of one request (Envoy's local-origin
    /// failures): new requests should not go there until it is checked or a back-off ends.
    pub fn is_local_origin(self) -> bool {
        matches!(self, Outcome::ConnectFailure | Outcome::Reset)
    }
}

/// What to do after a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after this back-off.
    Retry { after: Duration },
    /// Hand the failure to the client.
    Stop,
}

/// The retry state of one request.
pub struct Attempts<'a> {
    retry: &'a RetryConfig,
    /// The request's `perRequest` deadline; none when that timeout is 0 (disabled).
    deadline: Option<Instant>,
    /// The body can be sent again (it was buffered).
    replayable: bool,
    /// Retries granted so far. Counted up to the limit, never `1 + max` tries, so a
    /// `maxRetries` of `u32::MAX` cannot wrap to "no try at all".
    retries: u32,
}

impl<'a> Attempts<'a> {
    pub fn new(
        retry: &'a RetryConfig,
        deadline: Option<Instant>,
        replayable: bool,
    ) -> Attempts<'a> {
        Attempts {
            retry,
            deadline,
            replayable,
            retries: 0,
        }
    }

    /// Retries granted so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// When the next try, started at `now`, must have its response head: the request's
    /// deadline, or the per-try timeout when that comes first; none when neither is set.
    pub fn try_deadline(&self, now: Instant) -> Option<Instant> {
        let per_try = match self.retry.per_retry_timeout_ms {
            0 => None,
            ms => Some(now + Duration::from_millis(ms)),
        };
        match (self.deadline, per_try) {
            (Some(d), Some(t)) => Some(d.min(t)),
            (d, t) => d.or(t),
        }
    }

    /// Whether the request's own deadline has passed (its timeout, not a try's).
    pub fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// After a try that ended with `outcome` at `now`: retry after a back-off, or stop.
    /// `roll` (uniform over `u32`) draws the jitter. A back-off that would outlast the
    /// request's deadline is not started: the try would have no time left.
    pub fn after(&mut self, outcome: Outcome, now: Instant, roll: u32) -> Next {
        if !self.replayable
            || self.retries >= self.retry.max_retries
            || !outcome.retried_by(self.retry)
            || self.expired(now)
        {
            return Next::Stop;
        }
        let wait = backoff(self.retries + 1, roll);
        if self.deadline.is_some_and(|d| now + wait >= d) {
            return Next::Stop;
        }
        self.retries += 1;
        Next::Retry { after: wait }
    }
}

/// Envoy's full-jitter back-off before retry `n` (1 for the first): uniform in
/// `[0, (2^n - 1) x 25 ms)`, the ceiling capped at 250 ms.
pub fn backoff(n: u32, roll: u32) -> Duration {
    let base = u64::try_from(BACKOFF_BASE.as_micros()).unwrap_or(u64::MAX);
    let cap = u64::try_from(BACKOFF_MAX.as_micros()).unwrap_or(u64::MAX);
    let factor = 1u64.checked_shl(n.min(20)).unwrap_or(u64::MAX) - 1;
    let ceiling = factor.saturating_mul(base).min(cap);
    if ceiling == 0 {
        return Duration::ZERO;
    }
    Duration::from_micros(u64::from(roll) % ceiling)
}

/// The target for a try. The one already drawn for the request while its cluster has a
/// healthy endpoint (Envoy keeps retries in the drawn cluster); otherwise a new draw by
/// weight among the targets that have one; failing that, among the targets in panic
/// (every endpoint failing its active check, see `Cluster::usable`). `None`: no target
/// can take the request.
pub fn choose_target<'r>(
    route: &'r Route,
    drawn: Option<&'r WeightedCluster>,
    usable: impl Fn(&WeightedCluster) -> Usable,
    roll: u32,
) -> Option<&'r WeightedCluster> {
    if let Some(t) = drawn.filter(|t| usable(t) == Usable::Healthy) {
        return Some(t);
    }
    route
        .pick_target_among(roll, |t| usable(t) == Usable::Healthy)
        .or_else(|| route.pick_target_among(roll, |t| usable(t) == Usable::Panic))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(f: impl FnOnce(&mut RetryConfig)) -> RetryConfig {
        let mut r = RetryConfig {
            max_retries: 2,
            per_retry_timeout_ms: 0,
            statuses: Vec::new(),
            grpc_statuses: Vec::new(),
            connection_errors: false,
            reset: false,
            refused_stream: false,
        };
        f(&mut r);
        r
    }

    fn server_error() -> RetryConfig {
        retry(|r| {
            r.statuses = vec![500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511];
            r.reset = true;
        })
    }

    const RESP_503: Outcome = Outcome::Response {
        status: 503,
        grpc_status: None,
    };

    #[test]
    fn server_and_gateway_error_retry_connect_failures_resets_and_per_try_timeouts() {
        let r = server_error();
        for o in [
            Outcome::ConnectFailure,
            Outcome::Reset,
            Outcome::RefusedStream,
            Outcome::PerTryTimeout,
            RESP_503,
        ] {
            assert!(o.retried_by(&r), "{o:?}");
        }
        assert!(!Outcome::Response {
            status: 509,
            grpc_status: None
        }
        .retried_by(&r));
    }

    #[test]
    fn stream_error_retries_refused_streams_only() {
        let r = retry(|r| r.refused_stream = true);
        assert!(Outcome::RefusedStream.retried_by(&r));
        for o in [
            Outcome::ConnectFailure,
            Outcome::Reset,
            Outcome::PerTryTimeout,
            RESP_503,
        ] {
            assert!(!o.retried_by(&r), "{o:?}");
        }
    }

    #[test]
    fn tcp_connection_error_retries_connect_failures_only() {
        let r = retry(|r| r.connection_errors = true);
        assert!(Outcome::ConnectFailure.retried_by(&r));
        assert!(!Outcome::Reset.retried_by(&r));
        assert!(!Outcome::PerTryTimeout.retried_by(&r));
    }

    #[tokio::test(start_paused = true)]
    async fn a_per_try_timeout_is_retried_only_when_the_events_say_so() {
        let deadline = Instant::now() + Duration::from_secs(15);
        let client_error = retry(|r| {
            r.statuses = vec![409];
            r.per_retry_timeout_ms = 100;
        });
        let mut a = Attempts::new(&client_error, Some(deadline), true);
        let now = Instant::now();
        assert_eq!(a.try_deadline(now), Some(now + Duration::from_millis(100)));
        assert_eq!(
            a.after(Outcome::PerTryTimeout, Instant::now(), 7),
            Next::Stop
        );
        let gateway_error = server_error();
        let mut a = Attempts::new(&gateway_error, Some(deadline), true);
        assert!(matches!(
            a.after(Outcome::PerTryTimeout, Instant::now(), 7),
            Next::Retry { .. }
        ));
    }

    #[test]
    fn back_off_is_jittered_under_envoys_growing_ceiling() {
        let ms = Duration::from_millis;
        // Retry 1 waits below 25 ms, retry 2 below 75 ms, retry 3 below 175 ms, then 250.
        for (n, ceiling) in [(1u32, 25u32), (2, 75), (3, 175), (4, 250), (30, 250)] {
            for roll in [0, 1, 12_345, 999_999, u32::MAX] {
                assert!(
                    backoff(n, roll) < ms(ceiling.into()),
                    "retry {n}, roll {roll}"
                );
            }
            let top = ceiling * 1_000 - 1;
            assert!(backoff(n, top) >= ms(ceiling.into()) - ms(1), "retry {n}");
            assert_eq!(backoff(n, 0), Duration::ZERO);
        }
        let waits: std::collections::BTreeSet<Duration> =
            (0..50u32).map(|i| backoff(2, i * 1_000)).collect();
        assert!(waits.len() > 40, "jittered, not fixed: {waits:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn max_retries_near_u32_max_still_makes_the_first_try_and_retries() {
        let r = retry(|r| {
            r.max_retries = u32::MAX;
            r.reset = true;
        });
        let deadline = Instant::now() + Duration::from_secs(3600);
        let mut a = Attempts::new(&r, Some(deadline), true);
        assert!(a
            .try_deadline(Instant::now())
            .is_some_and(|d| d > Instant::now()));
        for _ in 0..1000 {
            let Next::Retry { after } = a.after(Outcome::Reset, Instant::now(), 99) else {
                panic!("stopped after {} retries", a.retries());
            };
            tokio::time::advance(after).await;
        }
        assert_eq!(a.retries(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_max_retries_and_never_after_the_deadline() {
        let r = server_error();
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut a = Attempts::new(&r, Some(deadline), true);
        assert!(matches!(
            a.after(RESP_503, Instant::now(), 1),
            Next::Retry { .. }
        ));
        assert!(matches!(
            a.after(RESP_503, Instant::now(), 1),
            Next::Retry { .. }
        ));
        assert_eq!(a.after(RESP_503, Instant::now(), 1), Next::Stop);
        let mut late = Attempts::new(&r, Some(deadline), true);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(late.after(RESP_503, Instant::now(), 1), Next::Stop);
        assert!(late.expired(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_disabled_per_request_timeout_bounds_a_try_only_by_its_per_retry_timeout() {
        let none = retry(|_| {});
        let a = Attempts::new(&none, None, true);
        assert_eq!(a.try_deadline(Instant::now()), None);
        assert!(!a.expired(Instant::now() + Duration::from_secs(86_400)));
        let per_try = retry(|r| r.per_retry_timeout_ms = 300);
        let a = Attempts::new(&per_try, None, true);
        let now = Instant::now();
        assert_eq!(a.try_deadline(now), Some(now + Duration::from_millis(300)));
    }

    #[test]
    fn a_streamed_body_is_never_retried() {
        let r = server_error();
        let mut a = Attempts::new(&r, Some(Instant::now() + Duration::from_secs(5)), false);
        assert_eq!(
            a.after(Outcome::ConnectFailure, Instant::now(), 1),
            Next::Stop
        );
    }

    fn route(targets: &[(&str, u32)]) -> Route {
        Route::for_tests(
            targets
                .iter()
                .map(|(c, w)| WeightedCluster {
                    cluster: (*c).to_owned(),
                    weight: *w,
                })
                .collect(),
        )
    }

    #[test]
    fn the_drawn_target_keeps_the_retry_while_it_has_a_healthy_endpoint() {
        let r = route(&[("white", 1), ("blue", 1)]);
        let drawn = &r.config.targets[1];
        for roll in 0..10 {
            let t = choose_target(&r, Some(drawn), |_| Usable::Healthy, roll).unwrap();
            assert_eq!(t.cluster, "blue");
        }
    }

    #[test]
    fn a_target_with_no_usable_endpoint_left_hands_the_retry_to_the_others_by_weight() {
        let r = route(&[("white", 1), ("blue", 1), ("black", 3)]);
        let drawn = &r.config.targets[1];
        let usable = |t: &WeightedCluster| match t.cluster.as_str() {
            "blue" => Usable::No,
            _ => Usable::Healthy,
        };
        let mut seen = std::collections::BTreeMap::<String, u32>::new();
        for roll in 0..400u32 {
            let t = choose_target(&r, Some(drawn), usable, roll).unwrap();
            *seen.entry(t.cluster.clone()).or_default() += 1;
        }
        assert_eq!(seen.get("blue"), None);
        assert_eq!(seen["white"], 100, "{seen:?}");
        assert_eq!(seen["black"], 300, "{seen:?}");
    }

    #[test]
    fn a_panicking_target_is_used_only_when_no_target_has_a_healthy_endpoint() {
        let r = route(&[("white", 1), ("blue", 1)]);
        let some = |t: &WeightedCluster| match t.cluster.as_str() {
            "white" => Usable::Panic,
            _ => Usable::Healthy,
        };
        assert_eq!(choose_target(&r, None, some, 0).unwrap().cluster, "blue");
        let none_healthy = |t: &WeightedCluster| match t.cluster.as_str() {
            "white" => Usable::Panic,
            _ => Usable::No,
        };
        assert_eq!(
            choose_target(&r, None, none_healthy, 1).unwrap().cluster,
            "white"
        );
        assert!(choose_target(&r, None, |_| Usable::No, 1).is_none());
    }
}
