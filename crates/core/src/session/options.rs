//! What an acquire asks for besides its keys.

use std::time::Duration;

use tokio::time::Instant;

use crate::session::cancel::CancelToken;
use crate::topology::Replicas;

#[derive(Clone, Debug)]
pub struct AcquireOptions {
    /// How long the lock lives unless extended.
    pub ttl: Duration,
    /// How long to wait while the lock is busy; `None` waits until acquired or cancelled.
    pub wait: Option<Duration>,
    pub cancel: Option<CancelToken>,
    /// How many replicas must acknowledge the lock before it is granted, and how long to wait
    /// for them; such an acquire never goes on the wire, whose socket `WAIT` would block.
    pub replicas: Replicas,
}

impl AcquireOptions {
    /// Until when a request made at `now` waits; `None`: until acquired or cancelled.
    pub fn deadline(&self, now: Instant) -> Option<Instant> {
        self.wait.map(|wait| now + wait)
    }

    /// Whether the caller has cancelled the wait.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelToken::is_cancelled)
    }
}
