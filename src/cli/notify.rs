//! systemd integration: `READY=1` once a role really serves, and `WATCHDOG=1` pings while
//! the runtime is alive. Without `NOTIFY_SOCKET` (not under systemd) both do nothing.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Tells systemd the role is serving. Call only after every listener is bound.
pub fn ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(%e, "cannot notify systemd of readiness");
    }
}

/// Pings systemd's watchdog at half its interval until `shutdown`. The pings come from the
/// async runtime, so a wedged runtime stops them and systemd restarts the service.
pub fn spawn_watchdog(shutdown: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (interval / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
            }
        }
    });
}

/// Tells systemd the role is stopping, so `systemctl stop` does not wait on a dead socket.
pub fn stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}
