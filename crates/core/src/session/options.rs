//! What an acquire asks for besides its keys.

use std::time::Duration;

use crate::session::cancel::CancelToken;

#[derive(Clone, Debug)]
pub struct AcquireOptions {
    /// How long the lock lives unless extended.
    pub ttl: Duration,
    /// How long to wait while the lock is busy; `None` waits until acquired or cancelled.
    pub wait: Option<Duration>,
    pub cancel: Option<CancelToken>,
}

impl AcquireOptions {
    /// Whether the caller has cancelled the wait.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelToken::is_cancelled)
    }
}
