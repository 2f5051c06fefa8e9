//! Waiting while a lock is busy, without polling Redis.
//!
//! Local waiters on the same keys queue in arrival order, and only the head of the queue talks to
//! Redis. The head sleeps until a release of the keys is announced (by this process directly, or
//! by any process through the release channel), bounded by the holder's remaining TTL, so a
//! crashed holder's expiry is noticed at once without any message.
//!
//! The sleeping head of a one-key lock's queue also *offers* to take the lock over, on every
//! topology: a release of the same lock in this process then hands it straight to the head
//! instead of deleting it (see [`crate::session::handover`]).
//!
//! [`WaitQueues`] (`queues.rs`) keeps the places: a queue per set of keys, or a first attempt
//! that makes none. A queue's state (`queue.rs`) is four parts, each with its own file: its
//! waiters in order (`line.rs`), the releases announced for its keys (`releases.rs`), what it
//! last saw of the holder (`holder.rs`), and the head's offer with the key's hand-over chain
//! (`hand_overs.rs`; `offer.rs` what the offer asks and receives). What a request holds is made
//! in its own file, over `queues.rs`: a [`FirstAttempt`], a [`Ticket`], a [`Handing`]. Imports go
//! one way: those handles → `queues` → `queue` → its parts.

mod first_attempt;
mod hand_overs;
mod handing;
mod holder;
mod line;
mod offer;
mod queue;
mod queues;
mod releases;
mod ticket;

pub use first_attempt::{Arrival, FirstAttempt};
pub use handing::Handing;
pub use offer::HandedLock;
pub use queue::Turn;
pub use queues::WaitQueues;
pub use ticket::Ticket;

#[cfg(test)]
mod tests;
