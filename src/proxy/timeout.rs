//! App Mesh's `timeout.perRequest` and `timeout.idle` at run time, with Envoy's meaning: the
//! per-request timeout bounds the whole response (headers and body, as Envoy's route
//! timeout), the idle timeout bounds the silence between two events of one stream, and a
//! value of 0 disables either. Before the response headers a timeout is the proxy's own
//! answer (504, or 408 for idle); after them the stream is cut, as Envoy resets it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::error::{Body, BodyError, ProxyError};

/// A timeout in milliseconds as the config carries it, 0 meaning none.
pub(super) fn limit(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// The timers of one request, started when the proxy begins waiting for its answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timers {
    /// When the whole response must have arrived (`perRequest`), if ever.
    pub deadline: Option<Instant>,
    /// The most either side may stay silent (`idle`), if bounded.
    pub idle: Option<Duration>,
    /// The configured per-request timeout, for the error text.
    pub per_request_ms: u64,
}

impl Timers {
    pub(super) fn start(per_request_ms: u64, idle_ms: u64) -> Timers {
        Timers {
            deadline: limit(per_request_ms).map(|d| Instant::now() + d),
            idle: limit(idle_ms),
            per_request_ms,
        }
    }

    /// Waits for `fut` (the response headers) as long as both timers allow.
    pub(super) async fn headers<F: Future>(&self, fut: F) -> Result<F::Output, ProxyError> {
        let idle_at = self.idle.map(|d| Instant::now() + d);
        let first = match (self.deadline, idle_at) {
            (Some(d), Some(i)) => Some(d.min(i)),
            (d, i) => d.or(i),
        };
        let Some(at) = first else {
            return Ok(fut.await);
        };
        match tokio::time::timeout_at(at, fut).await {
            Ok(out) => Ok(out),
            Err(_) if self.deadline == Some(at) => Err(ProxyError::Timeout(self.per_request_ms)),
            Err(_) => Err(ProxyError::StreamIdle(
                self.idle.map_or(0, |d| d.as_millis()),
            )),
        }
    }

    /// `body` under the same timers: it ends in an error (which resets the downstream
    /// stream) when the deadline passes or it stays silent for the idle timeout.
    pub(super) fn body(&self, body: Body) -> Body {
        if self.deadline.is_none() && self.idle.is_none() {
            return body;
        }
        http_body_util::BodyExt::boxed(Timed {
            inner: body,
            deadline: self.deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            idle: self
                .idle
                .map(|d| (d, Box::pin(tokio::time::sleep_until(Instant::now() + d)))),
        })
    }
}

/// Why a response body was cut.
#[derive(Debug, thiserror::Error)]
pub(super) enum Cut {
    #[error("upstream response not complete within the per-request timeout")]
    Deadline,
    #[error("upstream stream idle for {0:?}")]
    Idle(Duration),
}

struct Timed {
    inner: Body,
    deadline: Option<Pin<Box<Sleep>>>,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
}

impl HttpBody for Timed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let me = &mut *self;
        if let Poll::Ready(next) = Pin::new(&mut me.inner).poll_frame(cx) {
            if let Some((d, sleep)) = &mut me.idle {
                sleep.as_mut().reset(Instant::now() + *d);
            }
            return Poll::Ready(next);
        }
        if let Some(sleep) = &mut me.deadline {
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Err(Box::new(Cut::Deadline))));
            }
        }
        if let Some((d, sleep)) = &mut me.idle {
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Err(Box::new(Cut::Idle(*d)))));
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that sends `left` one-byte frames, one every `gap`.
    struct Trickle {
        left: usize,
        gap: Duration,
        sleep: Pin<Box<Sleep>>,
    }

    fn trickle(left: usize, gap: Duration) -> Body {
        Trickle {
            left,
            gap,
            sleep: Box::pin(tokio::time::sleep(gap)),
        }
        .boxed()
    }

    impl HttpBody for Trickle {
        type Data = Bytes;
        type Error = BodyError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.left -= 1;
            let next = Instant::now() + self.gap;
            self.sleep.as_mut().reset(next);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
        }
    }

    /// The body's length, or the `Cut` that ended it (any other error fails the test).
    async fn read_all(body: Body) -> Result<usize, Cut> {
        match body.collect().await {
            Ok(c) => Ok(c.to_bytes().len()),
            Err(e) => match e.downcast::<Cut>() {
                Ok(cut) => Err(*cut),
                Err(other) => panic!("body failed for another reason: {other}"),
            },
        }
    }

    // Real time with wide margins (tokio's paused clock needs its test-util feature, which
    // this crate does not build with): every pair differs twentyfold or more.

    #[test]
    fn zero_disables_a_timeout() {
        assert_eq!(limit(0), None);
        assert_eq!(limit(5), Some(Duration::from_millis(5)));
    }

    #[tokio::test]
    async fn the_per_request_timeout_cuts_a_body_that_outlasts_it() {
        let t = Timers::start(100, 0);
        let cut = read_all(t.body(trickle(40, Duration::from_millis(50)))).await;
        assert!(matches!(cut, Err(Cut::Deadline)), "{cut:?}");
    }

    #[tokio::test]
    async fn a_body_that_keeps_talking_survives_an_idle_timeout_longer_than_its_gaps() {
        let t = Timers::start(0, 2_000);
        let whole = read_all(t.body(trickle(5, Duration::from_millis(10)))).await;
        assert_eq!(whole.ok(), Some(5));
    }

    #[tokio::test]
    async fn a_silent_body_is_cut_by_the_idle_timeout() {
        let t = Timers::start(0, 50);
        let cut = read_all(t.body(trickle(2, Duration::from_secs(2)))).await;
        assert!(matches!(cut, Err(Cut::Idle(_))), "{cut:?}");
    }

    #[tokio::test]
    async fn with_both_disabled_nothing_is_cut() {
        let t = Timers::start(0, 0);
        assert!(t.deadline.is_none() && t.idle.is_none());
        let slow = tokio::time::sleep(Duration::from_millis(100));
        assert!(t.headers(slow).await.is_ok());
        let whole = read_all(t.body(trickle(3, Duration::from_millis(50)))).await;
        assert_eq!(whole.ok(), Some(3));
    }

    #[tokio::test]
    async fn headers_late_for_the_deadline_are_a_timeout_and_for_idle_a_stream_idle() {
        let slow = || tokio::time::sleep(Duration::from_secs(3));
        let per_request = Timers::start(50, 60_000).headers(slow()).await;
        assert!(matches!(per_request, Err(ProxyError::Timeout(50))));
        let idle = Timers::start(0, 50).headers(slow()).await;
        assert!(matches!(idle, Err(ProxyError::StreamIdle(50))));
    }
}
