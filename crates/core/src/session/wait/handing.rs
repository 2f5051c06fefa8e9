//! [`Handing`]: a hand-over under way, from the release that took the head's offer to the lock
//! it delivers.

use std::sync::Arc;
use std::time::Duration;

use super::offer::{HandedLock, Offer};
use super::queue::Queue;
use super::queues::WaitQueues;
use crate::protocol::lock::HeldLock;
use crate::session::clean_up::CleanUps;
use crate::session::handover::Link;
use crate::topology::{HandOver, Replicas};

/// A hand-over under way: the head's offer, taken by a release of the lock it waits for.
/// Dropped without [`Handing::deliver`], the head learns the hand-over failed and attempts.
pub struct Handing {
    queue: Arc<Queue>,
    offer: Offer,
    /// Taken once the hand-over is done.
    link: Option<Link>,
    /// Where the lock goes back should the head not take it.
    clean_ups: Option<CleanUps>,
}

impl WaitQueues {
    /// Takes the offer of the head waiting for the one-key lock on `channel` that `token` holds,
    /// when it makes sense to hand the lock over; `None`: release it normally. A chain that has
    /// run its length ends here: the head will pause before its next attempt.
    pub fn hand_over(&self, channel: &str, token: &str) -> Option<Handing> {
        let queue = self.one_key_queue(channel)?;
        let (offer, link) = queue.state().hand_overs.take_for_release(token)?;
        Some(Handing {
            queue,
            offer,
            link: Some(link),
            clean_ups: self.clean_ups().cloned(),
        })
    }
}

impl Handing {
    /// The TTL the waiting head asked for.
    pub fn ttl(&self) -> Duration {
        self.offer.ttl
    }

    /// How many replicas must acknowledge the handed lock, as the head's attempts would ask.
    pub fn replicas(&self) -> Replicas {
        self.offer.replicas
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
        let handed = HandedLock::new(lock, self.clean_ups);
        // On failure the lock comes back and its drop releases it.
        let _ = self.offer.deliver.send(handed);
    }
}
