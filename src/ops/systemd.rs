//! systemd integration without libsystemd: readiness, reload and stop
//! notifications and watchdog pings over `$NOTIFY_SOCKET` (the `sd-notify`
//! crate, pure Rust). Everything here is a no-op when not started by
//! systemd (no `NOTIFY_SOCKET`), so the same binary runs anywhere.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// Start-up is complete: listeners are bound and the server accepts
/// connections (`Type=notify` units become "active" now).
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A configuration reload (SIGHUP) has begun. `MONOTONIC_USEC` lets
/// `Type=notify-reload` (systemd ≥ 253) match it to its own request.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// Shutdown has begun (SIGTERM); the grace period is running.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// A free-form status line shown by `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// The interval systemd expects pings at (`WatchdogSec=`), when enabled
/// for this process.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Pings the watchdog at half its interval for as long as the runtime
/// schedules this task. A wedged runtime (every worker blocked, a
/// deadlock) stops the pings and systemd restarts the service. Returns
/// `None` when no watchdog is configured.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let interval = watchdog_interval()?;
    let every = (interval / 2).max(Duration::from_millis(100));
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog enabled"
    );
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}
