//! What a sleeping head offers (to take the lock over from a local release, see [`Offer`]) and
//! what answers it ([`HandedLock`]).

use std::time::Duration;

use tokio::sync::oneshot;

use crate::protocol::lock::HeldLock;
use crate::session::clean_up::CleanUps;
use crate::topology::Replicas;

/// A head ready to take the lock over: the ticket, the TTL and replicas it asks for, and where to
/// send it.
pub(super) struct Offer {
    pub(super) ticket: u64,
    pub(super) ttl: Duration,
    pub(super) replicas: Replicas,
    pub(super) deliver: oneshot::Sender<HandedLock>,
}

/// A lock handed over to a waiting head. Dropped before [`HandedLock::into_lock`] (its waiter
/// gave up in the meantime, perhaps on a thread without a runtime), it is given back.
pub struct HandedLock {
    lock: Option<HeldLock>,
    /// The queues' clean-ups, where the give-back goes (unset only in unit tests of the queues).
    clean_ups: Option<CleanUps>,
}

impl HandedLock {
    pub(super) fn new(lock: HeldLock, clean_ups: Option<CleanUps>) -> Self {
        Self {
            lock: Some(lock),
            clean_ups,
        }
    }

    pub fn into_lock(mut self) -> HeldLock {
        self.lock.take().expect("a handed lock is taken once")
    }
}

impl Drop for HandedLock {
    fn drop(&mut self) {
        if let (Some(lock), Some(clean_ups)) = (self.lock.take(), &self.clean_ups) {
            clean_ups.give_back(lock.keys, lock.token);
        }
    }
}
