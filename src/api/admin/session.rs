//! The admin page's sessions and the limit on failed sign-ins. Plain state with the time
//! passed in, so the rules are tested without a clock or a socket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// A session unused for this long ends: a laptop left open does not stay signed in.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// No session outlives this, however busy: a stolen cookie dies within a working day.
pub const MAX_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Most sessions held at once. Sign-ins past it push out the least recently used, so a
/// script signing in in a loop cannot grow the table without bound.
pub const MAX_SESSIONS: usize = 1024;

/// Failed sign-ins from one address allowed per `FAILURE_WINDOW`. Five covers typos;
/// guessing a 40-character secret at five tries per five minutes goes nowhere.
pub const MAX_FAILURES: u32 = 5;
/// How long failures are remembered, and so the longest lock-out.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Addresses tracked at once; past it, expired entries are dropped, then the oldest.
const MAX_TRACKED: usize = 10_000;

/// A random, URL-safe token of 256 bits.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The table is keyed by the token's digest, so a dump of memory or a timing side channel
/// on the map lookup does not give out live cookies.
fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// One signed-in browser.
#[derive(Clone)]
pub struct Session {
    /// The access key id or admin user name that signed in.
    pub user: String,
    /// Sent back in `X-CSRF-Token` on every write. A page on another origin cannot read it,
    /// so it cannot forge a write even if the browser were to send the cookie along.
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The CSRF token is a secret of the session; the user name is not.
        f.debug_struct("Session").field("user", &self.user).finish()
    }
}

/// Live sessions, by the digest of their cookie token.
#[derive(Default)]
pub struct Sessions {
    by_digest: HashMap<[u8; 32], Session>,
}

impl Sessions {
    /// Starts a session; returns the cookie token (only ever sent to this browser).
    pub fn start(&mut self, user: &str, now: Instant) -> (String, Session) {
        self.by_digest.retain(|_, s| alive(s, now));
        if self.by_digest.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .by_digest
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k)
            {
                self.by_digest.remove(&oldest);
            }
        }
        let token = random_token();
        let session = Session {
            user: user.to_owned(),
            csrf: random_token(),
            created: now,
            last_seen: now,
        };
        self.by_digest.insert(digest(&token), session.clone());
        (token, session)
    }

    /// The session of a cookie token, if it is live; using it counts as activity.
    pub fn touch(&mut self, token: &str, now: Instant) -> Option<Session> {
        let key = digest(token);
        let session = self.by_digest.get_mut(&key)?;
        if !alive(session, now) {
            self.by_digest.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// Ends every session of `user` (deleted, or given a new password).
    pub fn end_user(&mut self, user: &str) {
        self.by_digest.retain(|_, s| s.user != user);
    }

    /// Ends a session (sign-out). Unknown tokens are ignored: signing out twice is fine.
    pub fn end(&mut self, token: &str) {
        self.by_digest.remove(&digest(token));
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_seen) < IDLE_TIMEOUT && now.duration_since(s.created) < MAX_LIFETIME
}

/// Failed sign-ins per client address, in a fixed window that starts at the first failure.
#[derive(Default)]
pub struct FailureLimiter {
    by_addr: HashMap<IpAddr, (u32, Instant)>,
}

impl FailureLimiter {
    /// `Err(wait)` when `addr` used up its failures; `wait` is when it may try again.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.by_addr.get(&addr) {
            Some((n, since)) if *n >= MAX_FAILURES => {
                let elapsed = now.duration_since(*since);
                match FAILURE_WINDOW.checked_sub(elapsed) {
                    Some(wait) if !wait.is_zero() => Err(wait),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts an attempt from `addr` as a failure before its password is checked, and
    /// refuses it when the address has used up its failures. Counting first means a burst
    /// of parallel guesses cannot all pass the check while the first ones are still being
    /// hashed; a good sign-in then clears the count (`record_success`).
    pub fn begin_attempt(&mut self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        self.check(addr, now)?;
        self.record_failure(addr, now);
        Ok(())
    }

    pub fn record_failure(&mut self, addr: IpAddr, now: Instant) {
        if self.by_addr.len() >= MAX_TRACKED {
            self.by_addr
                .retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
            if self.by_addr.len() >= MAX_TRACKED {
                if let Some(oldest) = self
                    .by_addr
                    .iter()
                    .min_by_key(|(_, (_, since))| *since)
                    .map(|(a, _)| *a)
                {
                    self.by_addr.remove(&oldest);
                }
            }
        }
        let entry = self.by_addr.entry(addr).or_insert((0, now));
        if now.duration_since(entry.1) >= FAILURE_WINDOW {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }

    /// A good sign-in forgets the address's earlier typos.
    pub fn record_success(&mut self, addr: IpAddr) {
        self.by_addr.remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_session_is_found_by_its_token_and_not_by_another() {
        let now = Instant::now();
        let mut s = Sessions::default();
        let (token, started) = s.start("ops", now);
        let found = s.touch(&token, now).expect("live session");
        assert_eq!(found.user, "ops");
        assert_eq!(found.csrf, started.csrf);
        assert_ne!(found.csrf, token, "the CSRF token is not the cookie");
        assert!(s.touch("not-a-token", now).is_none());
    }

    #[test]
    fn an_idle_session_expires_and_activity_keeps_it_alive() {
        let now = Instant::now();
        let mut s = Sessions::default();
        let (token, _) = s.start("ops", now);
        let half = IDLE_TIMEOUT / 2;
        assert!(s.touch(&token, now + half).is_some());
        assert!(s.touch(&token, now + half * 2).is_some(), "touched at half");
        assert!(s.touch(&token, now + half * 5).is_none());
        assert!(s.touch(&token, now).is_none(), "an expired session is gone");
    }

    #[test]
    fn a_busy_session_still_ends_at_its_maximum_lifetime() {
        let now = Instant::now();
        let mut s = Sessions::default();
        let (token, _) = s.start("ops", now);
        let step = IDLE_TIMEOUT / 2;
        let mut t = now;
        while t.duration_since(now) + step < MAX_LIFETIME {
            t += step;
            assert!(s.touch(&token, t).is_some());
        }
        assert!(s.touch(&token, now + MAX_LIFETIME).is_none());
    }

    #[test]
    fn signing_out_ends_the_session() {
        let now = Instant::now();
        let mut s = Sessions::default();
        let (token, _) = s.start("ops", now);
        s.end(&token);
        assert!(s.touch(&token, now).is_none());
    }

    #[test]
    fn ending_a_user_ends_all_its_sessions_and_no_one_elses() {
        let now = Instant::now();
        let mut s = Sessions::default();
        let (a, _) = s.start("ops", now);
        let (b, _) = s.start("ops", now);
        let (c, _) = s.start("dev", now);
        s.end_user("ops");
        assert!(s.touch(&a, now).is_none());
        assert!(s.touch(&b, now).is_none());
        assert!(s.touch(&c, now).is_some());
    }

    #[test]
    fn the_session_table_is_bounded() {
        let now = Instant::now();
        let mut s = Sessions::default();
        for _ in 0..MAX_SESSIONS + 10 {
            s.start("ops", now);
        }
        assert_eq!(s.by_digest.len(), MAX_SESSIONS);
    }

    #[test]
    fn failed_sign_ins_lock_the_address_out_until_the_window_passes() {
        let now = Instant::now();
        let mut l = FailureLimiter::default();
        for _ in 0..MAX_FAILURES {
            assert!(l.check(ADDR, now).is_ok());
            l.record_failure(ADDR, now);
        }
        let wait = l.check(ADDR, now).expect_err("locked out");
        assert_eq!(wait, FAILURE_WINDOW);
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
        assert!(
            l.check(other, now).is_ok(),
            "other addresses are not affected"
        );
        assert!(l.check(ADDR, now + FAILURE_WINDOW).is_ok());
    }

    #[test]
    fn attempts_are_counted_before_they_are_checked_so_a_burst_gets_only_the_limit() {
        let now = Instant::now();
        let mut l = FailureLimiter::default();
        // A parallel burst: every attempt begins before any of them has finished.
        let admitted = (0..60)
            .filter(|_| l.begin_attempt(ADDR, now).is_ok())
            .count();
        assert_eq!(admitted, MAX_FAILURES as usize);
    }

    #[test]
    fn a_good_sign_in_after_counted_attempts_clears_the_count() {
        let now = Instant::now();
        let mut l = FailureLimiter::default();
        for _ in 0..MAX_FAILURES {
            assert!(l.begin_attempt(ADDR, now).is_ok());
        }
        l.record_success(ADDR);
        assert!(l.begin_attempt(ADDR, now).is_ok());
    }

    #[test]
    fn a_good_sign_in_forgets_earlier_failures() {
        let now = Instant::now();
        let mut l = FailureLimiter::default();
        for _ in 0..MAX_FAILURES - 1 {
            l.record_failure(ADDR, now);
        }
        l.record_success(ADDR);
        l.record_failure(ADDR, now);
        assert!(l.check(ADDR, now).is_ok());
    }
}
