//! Extending a held lock.

use std::time::{Duration, SystemTime};

use crate::error::LockError;
use crate::protocol::lock::{valid_until, HeldLock};
use crate::session::lifecycle::Lifecycle;

impl Lifecycle {
    /// Gives the lock `ttl` more life from now, or fails with [`LockError::Lost`].
    pub async fn extend(&self, lock: &HeldLock, ttl: Duration) -> Result<HeldLock, LockError> {
        let started = SystemTime::now();
        if self.topology.extend(&lock.keys, &lock.token, ttl).await? {
            Ok(HeldLock {
                ttl,
                expires_at: valid_until(started, ttl, self.drift_factor),
                ..lock.clone()
            })
        } else {
            Err(LockError::Lost {
                key: lock.key().to_owned(),
            })
        }
    }
}
