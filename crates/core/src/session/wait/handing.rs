//! A hand-over under way ([`Handing`]), and the lock it hands to the head ([`HandedLock`]).

use std::sync::Arc;
use std::time::Duration;

use super::offer::Offer;
use super::queue::Queue;
use super::queues::WaitQueues;
use crate::protocol::lock::HeldLock;
use crate::session::handover::Link;
use crate::topology::HandOver;

/// A hand-over under way: the head's offer, taken by a release of the lock it waits for.
/// Dropped without [`Handing::deliver`], the head learns the hand-over failed and attempts.
pub struct Handing {
    queues: Arc<WaitQueues>,
    queue: Arc<Queue>,
    offer: Offer,
    /// Taken once the hand-over is done.
    link: Option<Link>,
}

impl Handing {
    pub(super) fn new(
        queues: Arc<WaitQueues>,
        queue: Arc<Queue>,
        offer: Offer,
        link: Link,
    ) -> Self {
        Self {
            queues,
            queue,
            offer,
            link: Some(link),
        }
    }

    /// The TTL the waiting head asked for.
    pub fn ttl(&self) -> Duration {
        self.offer.ttl
    }

    /// How many fencing tokens the hand-over should reserve.
    pub fn reserve(&self) -> u64 {
        self.link.as_ref().map_or(0, Link::reserve)
    }

    /// The lock went to `token` (with the block ending at `reserved`, if one was reserved):
    /// continues the key's chain and gives the new holder's fence; `None` when the answer does
    /// not fit the request.
    pub fn handed_to(&mut self, token: &str, reserved: Option<u64>) -> Option<u64> {
        let (fence, chain) = self.link.take()?.done(token.to_owned(), reserved)?;
        self.queue.state().hand_overs.continue_chain(chain);
        Some(fence)
    }

    /// The lock went to `token`, as `done` says: [`Handing::handed_to`] for a fence from the
    /// chain's block; for a fence the topology chose (Redlock), continues the chain with it.
    /// `None` when `done` is not a hand-over or does not fit the request.
    pub fn handed(&mut self, token: &str, done: HandOver) -> Option<u64> {
        match done {
            HandOver::Done { reserved } => self.handed_to(token, reserved),
            HandOver::Fenced { fence } => {
                let chain = self.link.take()?.done_fenced(token.to_owned(), fence);
                self.queue.state().hand_overs.continue_chain(chain);
                Some(fence)
            }
            HandOver::NotHeld | HandOver::Released => None,
        }
    }

    /// Sends the lock to the head. Should the head have left meanwhile, or leave before it takes
    /// the lock, the lock is given back (and the queue woken) so nothing stays locked.
    pub fn deliver(self, lock: HeldLock) {
        let handed = HandedLock {
            lock: Some(lock),
            queues: self.queues.clone(),
        };
        // On failure the lock comes back and its drop releases it.
        let _ = self.offer.deliver.send(handed);
    }
}

/// A lock handed over to a waiting head. Dropped before [`HandedLock::into_lock`] (its waiter
/// gave up in the meantime, perhaps on a thread without a runtime), it is given back.
pub struct HandedLock {
    lock: Option<HeldLock>,
    queues: Arc<WaitQueues>,
}

impl HandedLock {
    pub fn into_lock(mut self) -> HeldLock {
        self.lock.take().expect("a handed lock is taken once")
    }
}

impl Drop for HandedLock {
    fn drop(&mut self) {
        if let (Some(lock), Some(clean_ups)) = (self.lock.take(), self.queues.clean_ups()) {
            clean_ups.give_back(lock.keys, lock.token);
        }
    }
}
