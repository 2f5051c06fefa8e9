//! A lock as Redis holds it for us: its keys, token and fence, and until when it is surely ours.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::protocol::keys::LockKeys;
use crate::protocol::token::new_token;

/// A lock being asked for, whichever way (an attempt on either connection, a hand-over): its
/// token, minted here and nowhere else, and when it was asked, from which its validity counts.
#[derive(Debug)]
pub struct Claim {
    pub keys: Arc<LockKeys>,
    pub token: String,
    pub ttl: Duration,
    asked_at: SystemTime,
}

impl Claim {
    pub fn new(keys: Arc<LockKeys>, ttl: Duration) -> Self {
        Self {
            keys,
            token: new_token(),
            ttl,
            asked_at: SystemTime::now(),
        }
    }

    /// The lock, granted with `fence`.
    pub fn granted(self, fence: u64, drift_factor: f64) -> HeldLock {
        HeldLock {
            expires_at: valid_until(self.asked_at, self.ttl, drift_factor),
            keys: self.keys,
            token: self.token,
            fence,
            ttl: self.ttl,
        }
    }
}

/// A lock this process holds (or held: it may have expired since).
#[derive(Clone, Debug)]
pub struct HeldLock {
    pub keys: Arc<LockKeys>,
    /// The uuid v4 stored as the value of every lock key.
    pub token: String,
    /// Fencing token: strictly greater than any earlier acquisition's of the same key.
    pub fence: u64,
    pub ttl: Duration,
    /// Until when the lock is surely still ours: the request's start + ttl − clock drift.
    pub expires_at: SystemTime,
}

impl HeldLock {
    pub fn key(&self) -> &str {
        self.keys.first()
    }
}

/// How much of a TTL to trust, given the clocks of client and server may run at different speeds
/// (the Redlock paper's `driftFactor × ttl + 2 ms`).
pub fn drift(ttl: Duration, drift_factor: f64) -> Duration {
    ttl.mul_f64(drift_factor) + Duration::from_millis(2)
}

/// Epoch time until which a lock requested at `started` with `ttl` is surely still held.
pub fn valid_until(started: SystemTime, ttl: Duration, drift_factor: f64) -> SystemTime {
    (started + ttl)
        .checked_sub(drift(ttl, drift_factor))
        .map_or(started, |until| until.max(started))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_follows_the_redlock_formula() {
        assert_eq!(
            drift(Duration::from_millis(10_000), 0.01),
            Duration::from_millis(102)
        );
        assert_eq!(
            drift(Duration::from_millis(1), 0.0),
            Duration::from_millis(2)
        );
    }

    #[test]
    fn validity_never_precedes_the_request() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(valid_until(start, Duration::from_millis(1), 0.01), start);
        assert_eq!(
            valid_until(start, Duration::from_millis(1_000), 0.01),
            start + Duration::from_millis(988)
        );
    }
}
