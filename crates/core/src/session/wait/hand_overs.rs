//! [`HandOvers`]: a one-key queue's side of a hand-over: the sleeping head's offer to take the lock
//! over from a local release, and the chain of hand-overs since the key was last taken normally.

use super::offer::Offer;
use crate::session::handover::{Chain, Link, Plan};

#[derive(Default)]
pub(super) struct HandOvers {
    /// The sleeping head's offer to take the lock over from a local release.
    offer: Option<Offer>,
    /// The hand-overs of the key since it was last taken normally (one-key queues only).
    chain: Option<Chain>,
    /// A hand-over chain just ended: the head lets other processes try first.
    pause_next_attempt: bool,
}

impl HandOvers {
    pub(super) fn offer(&mut self, offer: Offer) {
        self.offer = Some(offer);
    }

    /// Takes back `ticket`'s offer: `true` when it was still there.
    pub(super) fn withdraw(&mut self, ticket: u64) -> bool {
        if self
            .offer
            .as_ref()
            .is_some_and(|offer| offer.ticket == ticket)
        {
            self.offer = None;
            true
        } else {
            false
        }
    }

    /// For the release of `token`: the head's offer and the chain's next link, when the lock is
    /// to be handed over; `None` when nobody offers, or when the chain has run its length (the
    /// head then pauses before its next attempt).
    pub(super) fn take_for_release(&mut self, token: &str) -> Option<(Offer, Link)> {
        // Nobody sleeps ready to take it over: a normal release wakes the head.
        self.offer.as_ref()?;
        match Plan::for_release(self.chain.take(), token) {
            Plan::End => {
                self.pause_next_attempt = true;
                None
            }
            Plan::HandOver(link) => Some((self.offer.take()?, link)),
        }
    }

    /// A hand-over is done: the chain goes on with it.
    pub(super) fn continue_chain(&mut self, chain: Chain) {
        self.chain = Some(chain);
    }

    /// The next hand-over starts a new chain, with a block of its own.
    pub(super) fn break_chain(&mut self) {
        self.chain = None;
    }

    /// Whether the head pauses before its next attempt (a chain just ended); asked once.
    pub(super) fn take_pause(&mut self) -> bool {
        std::mem::take(&mut self.pause_next_attempt)
    }
}
