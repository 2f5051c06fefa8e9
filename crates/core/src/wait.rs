//! Waiting while a lock is busy, and cancelling that wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::keys::LockKeys;

/// Cancels a wait from outside, e.g. from a JS `AbortSignal`.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    cancelled: AtomicBool,
    notify: Notify,
}

impl CancelToken {
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    pub async fn cancelled(&self) {
        loop {
            // Created before the check, so a cancel between the two still wakes it.
            let notified = self.0.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// Longest single sleep while polling: a release is noticed at most this late.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Decides when a busy lock is worth another attempt.
#[derive(Debug, Default)]
pub struct ReleaseWaiter;

impl ReleaseWaiter {
    /// Sleeps until the lock may be free: the holder's TTL (`retry_after`) ends, a poll interval
    /// passes, or `until` is reached.
    pub async fn wait(
        &self,
        _keys: &LockKeys,
        retry_after: Option<Duration>,
        until: Option<Instant>,
    ) {
        let jitter = Duration::from_millis(rand::rng().random_range(0..10));
        let mut nap = retry_after.map_or(POLL_INTERVAL, |left| left.min(POLL_INTERVAL)) + jitter;
        if let Some(until) = until {
            nap = nap.min(until.saturating_duration_since(Instant::now()));
        }
        tokio::time::sleep(nap).await;
    }
}
