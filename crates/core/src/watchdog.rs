//! Keeps a lock alive from a tokio timer while its holder works, like Redisson's watchdog, so a
//! busy JS event loop cannot make it expire.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::LockError;
use crate::lock::HeldLock;
use crate::locker::Locker;

/// Extends a lock every third of its TTL until dropped. Dropping it stops the extensions.
pub struct Watchdog {
    task: tokio::task::JoinHandle<()>,
}

impl Watchdog {
    /// Starts extending `lock`; `on_lost` runs once if it stops being ours (taken, deleted, or
    /// expired while Redis could not be reached).
    pub fn start(
        locker: Arc<Locker>,
        lock: HeldLock,
        on_lost: impl FnOnce(LockError) + Send + 'static,
    ) -> Self {
        let task = tokio::spawn(async move {
            let error = keep_alive(&locker, lock).await;
            on_lost(error);
        });
        Self { task }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Returns only when the lock is lost.
async fn keep_alive(locker: &Locker, mut lock: HeldLock) -> LockError {
    let period = lock.ttl / 3;
    let mut next_extension = period;
    loop {
        tokio::time::sleep(next_extension).await;
        match locker.extend(&lock, lock.ttl).await {
            Ok(extended) => {
                lock = extended;
                next_extension = period;
            }
            Err(lost @ LockError::Lost { .. }) => return lost,
            Err(_) => {
                // Redis unreachable: keep trying while the lock is surely still ours.
                let left = lock
                    .expires_at
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                if left.is_zero() {
                    return LockError::Lost {
                        key: lock.key().to_owned(),
                    };
                }
                next_extension = left.min(period / 4).max(Duration::from_millis(1));
            }
        }
    }
}
