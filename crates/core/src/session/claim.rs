//! Who completes a waiting acquire. The waiter's own task on the runtime may, and so may a
//! release on the wire that hands it the lock: that one completes it on the caller's thread,
//! without a hop to the runtime and back. Whoever takes the claim first completes the operation;
//! the other completes nothing.

use std::sync::{Arc, Mutex};

use crate::session::cancel::CancelToken;
use crate::session::watchdog::Upkeep;

/// What completing a waiting acquire needs.
pub struct Waiter {
    pub op: u32,
    pub upkeep: Option<Upkeep>,
    /// Set when the wait can be cancelled: a cancelled waiter handed the lock gives it back.
    pub cancel: Option<CancelToken>,
}

/// The right to complete one waiting acquire, taken once.
pub struct Claim(Mutex<Option<Waiter>>);

impl Claim {
    pub fn new(waiter: Waiter) -> Arc<Self> {
        Arc::new(Self(Mutex::new(Some(waiter))))
    }

    /// The waiter, to the first caller only.
    pub fn take(&self) -> Option<Waiter> {
        self.0.lock().expect("claim").take()
    }
}
