//! Watches a held lock's lease from a tokio timer while its holder works, like Redisson's
//! watchdog: it extends the lock every third of its TTL, so a busy JS event loop cannot make it
//! expire, and it declares the lock lost by the time its lease can have ended, whatever the
//! network does, so the holder learns before anyone else can take it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::LockError;
use crate::protocol::lock::HeldLock;
use crate::session::lifecycle::Lifecycle;

/// How long before `expiresAt` a lease with no successful extension counts as lost: a twentieth
/// of the TTL, at most a quarter second. It leaves the holder time to hear of the loss and stop
/// before the lock can be anyone else's (the TTL less clock drift already is).
pub fn loss_margin(ttl: Duration) -> Duration {
    (ttl / 20).min(Duration::from_millis(250))
}

/// What the watchdog does besides watching the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upkeep {
    /// Extends the lock every third of its TTL.
    Extend,
    /// Only reports the lease's end (`using` with `autoExtend: false`).
    WatchOnly,
}

/// What a watchdog's task and the lock's holder share.
#[derive(Clone, Copy, Debug)]
struct Lease {
    /// Until when the lock is surely ours.
    expires_at: SystemTime,
    upkeep: Upkeep,
    /// The holder asked for the lease to run out: no more extensions, and once its loss is
    /// reported the lock is forgotten rather than released.
    lapsing: bool,
    /// The loss was reported (set before the holder can hear of it).
    lost: bool,
}

/// Watches one lock until dropped. Dropping it stops the extensions.
pub struct Watchdog {
    task: tokio::task::JoinHandle<()>,
    lease: Arc<watch::Sender<Lease>>,
}

impl Watchdog {
    /// Starts watching `lock`; `on_lost` runs once if it stops being ours (taken, deleted, or no
    /// extension succeeded before its lease ran out).
    pub fn start(
        locker: Arc<Lifecycle>,
        lock: HeldLock,
        upkeep: Upkeep,
        on_lost: impl FnOnce(LockError) + Send + 'static,
    ) -> Self {
        let lease = Arc::new(
            watch::channel(Lease {
                expires_at: lock.expires_at,
                upkeep,
                lapsing: false,
                lost: false,
            })
            .0,
        );
        let task = tokio::spawn(watch_lease(locker, lock, lease.clone(), on_lost));
        Self { task, lease }
    }

    /// The holder extended the lock itself: its lease now runs until `expires_at`.
    pub fn extended(&self, expires_at: SystemTime) {
        self.lease
            .send_modify(|lease| lease.expires_at = expires_at);
    }

    /// Stops extending the lock and lets its lease run out: the loss is still reported when the
    /// lease can have ended, and from then on [`Self::has_lapsed`] says so.
    pub fn let_lapse(&self) {
        self.lease.send_modify(|lease| {
            lease.upkeep = Upkeep::WatchOnly;
            lease.lapsing = true;
        });
    }

    /// The lock was let lapse and its lease has run out: it lapses in Redis by itself, and a
    /// release now could only end it early (its loss is reported a margin before the TTL ends).
    pub fn has_lapsed(&self) -> bool {
        let lease = self.lease.borrow();
        lease.lapsing && lease.lost
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch_lease(
    locker: Arc<Lifecycle>,
    lock: HeldLock,
    lease: Arc<watch::Sender<Lease>>,
    on_lost: impl FnOnce(LockError),
) {
    let error = keep_alive(&locker, lock, &lease).await;
    lease.send_modify(|lease| lease.lost = true);
    on_lost(error);
}

/// When a lease that ends at `expires_at` counts as lost.
fn loss_deadline(expires_at: SystemTime, ttl: Duration) -> Instant {
    let left = expires_at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left.saturating_sub(loss_margin(ttl))
}

/// Returns only when the lock is lost.
async fn keep_alive(
    locker: &Lifecycle,
    mut lock: HeldLock,
    lease: &watch::Sender<Lease>,
) -> LockError {
    let lost = |lock: &HeldLock| LockError::Lost {
        key: lock.key().to_owned(),
    };
    let mut changes = lease.subscribe();
    let period = lock.ttl / 3;
    let mut next_extension = Instant::now() + period;
    loop {
        let Lease {
            expires_at, upkeep, ..
        } = *changes.borrow_and_update();
        let deadline = loss_deadline(expires_at, lock.ttl);
        let extend_now = async {
            match upkeep {
                Upkeep::Extend => tokio::time::sleep_until(next_extension).await,
                Upkeep::WatchOnly => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return lost(&lock),
            // The holder extended it (the deadline moved) or stopped the extensions.
            Ok(()) = changes.changed() => continue,
            () = extend_now => {}
        }
        // A stalled Redis must not hold the extension past the deadline.
        let extension = tokio::select! {
            () = tokio::time::sleep_until(deadline) => return lost(&lock),
            extension = locker.extend(&lock, lock.ttl) => extension,
        };
        match extension {
            Ok(extended) => {
                lease.send_modify(|lease| lease.expires_at = extended.expires_at);
                lock = extended;
                next_extension = Instant::now() + period;
            }
            Err(error @ LockError::Lost { .. }) => return error,
            // Redis unreachable: try again soon, while the lease lasts.
            Err(_) => {
                next_extension =
                    Instant::now() + (period / 4).clamp(Duration::from_millis(1), period);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_a_twentieth_of_the_ttl_up_to_a_quarter_second() {
        assert_eq!(
            loss_margin(Duration::from_millis(1000)),
            Duration::from_millis(50)
        );
        assert_eq!(
            loss_margin(Duration::from_secs(30)),
            Duration::from_millis(250)
        );
    }

    #[tokio::test]
    async fn a_lease_that_has_ended_is_lost_at_once() {
        let past = SystemTime::now() - Duration::from_secs(1);
        assert!(loss_deadline(past, Duration::from_secs(1)) <= Instant::now());
    }
}
