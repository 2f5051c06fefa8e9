//! The lock operations every entry point shares: acquire with waiting, release, extend.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::backend::{Attempt, Backend, SingleBackend};
use crate::config::{LockerConfig, Target};
use crate::error::LockError;
use crate::keys::LockKeys;
use crate::lock::{valid_until, AcquireOptions, HeldLock};
use crate::wait::ReleaseWaiter;

pub struct Locker {
    backend: Arc<dyn Backend>,
    waiter: ReleaseWaiter,
    key_prefix: String,
    drift_factor: f64,
}

impl Locker {
    /// Builds a locker; no connection is opened until the first operation.
    pub fn new(config: &LockerConfig) -> Result<Self, String> {
        let backend: Arc<dyn Backend> = match &config.target {
            Target::Single(node) => Arc::new(SingleBackend::new(
                node,
                config.connect_timeout,
                config.command_timeout,
            )?),
        };
        Ok(Self {
            backend,
            waiter: ReleaseWaiter,
            key_prefix: config.key_prefix.clone(),
            drift_factor: config.drift_factor,
        })
    }

    pub fn keys(&self, names: Vec<String>) -> Arc<LockKeys> {
        Arc::new(LockKeys::new(&self.key_prefix, names))
    }

    /// Takes every key of `keys` or none, waiting up to `options.wait` while any is busy.
    pub async fn acquire(
        &self,
        keys: Arc<LockKeys>,
        options: &AcquireOptions,
    ) -> Result<HeldLock, LockError> {
        let token = uuid::Uuid::new_v4().to_string();
        let deadline = options.wait.map(|wait| Instant::now() + wait);
        let aborted = || LockError::Aborted {
            key: keys.first().to_owned(),
        };
        loop {
            if options
                .cancel
                .as_ref()
                .is_some_and(|cancel| cancel.is_cancelled())
            {
                return Err(aborted());
            }
            let started = SystemTime::now();
            let attempt = match self.backend.try_acquire(&keys, &token, options.ttl).await {
                Ok(attempt) => attempt,
                Err(error) => {
                    // The SET may have landed before the connection failed: undo it by token.
                    self.release_in_background(keys.clone(), token);
                    return Err(error);
                }
            };
            match attempt {
                Attempt::Acquired { fence } => {
                    let lock = HeldLock {
                        keys: keys.clone(),
                        token,
                        fence,
                        ttl: options.ttl,
                        expires_at: valid_until(started, options.ttl, self.drift_factor),
                    };
                    if options
                        .cancel
                        .as_ref()
                        .is_some_and(|cancel| cancel.is_cancelled())
                    {
                        self.release_in_background(lock.keys, lock.token);
                        return Err(aborted());
                    }
                    return Ok(lock);
                }
                Attempt::Busy { retry_after } => {
                    if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                        return Err(LockError::Busy {
                            key: keys.first().to_owned(),
                            retry_after,
                        });
                    }
                    let wait = self.waiter.wait(&keys, retry_after, deadline);
                    match &options.cancel {
                        Some(cancel) => tokio::select! {
                            _ = wait => {}
                            _ = cancel.cancelled() => return Err(aborted()),
                        },
                        None => wait.await,
                    }
                }
            }
        }
    }

    /// `true` when the lock was still ours and is now gone.
    pub async fn release(&self, lock: &HeldLock) -> Result<bool, LockError> {
        self.backend.release(&lock.keys, &lock.token).await
    }

    /// Gives the lock `ttl` more life from now, or fails with [`LockError::Lost`].
    pub async fn extend(&self, lock: &HeldLock, ttl: Duration) -> Result<HeldLock, LockError> {
        let started = SystemTime::now();
        if self.backend.extend(&lock.keys, &lock.token, ttl).await? {
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

    pub fn close(&self) {
        self.backend.close();
    }

    fn release_in_background(&self, keys: Arc<LockKeys>, token: String) {
        let backend = self.backend.clone();
        tokio::spawn(async move {
            let _ = backend.release(&keys, &token).await;
        });
    }
}
