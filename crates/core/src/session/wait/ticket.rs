//! [`Ticket`]: a waiter's place in a queue, and what the head of the queue does with it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::offer::{HandedLock, Offer};
use super::queue::{Queue, Turn};
use super::queues::{Spot, WaitQueues};
use crate::topology::Replicas;

/// Longest sleep of a head whose release channel could not be subscribed.
const UNSUBSCRIBED_POLL: Duration = Duration::from_millis(250);

/// A place in a queue. Dropping it leaves the queue and hands the head to the next waiter.
pub struct Ticket {
    queues: Arc<WaitQueues>,
    queue: Arc<Queue>,
    id: u64,
    wake: Arc<Notify>,
    took_lock: Option<Duration>,
}

impl WaitQueues {
    /// Joins the queue for `channels` at its tail.
    pub fn join(self: &Arc<Self>, channels: &[String]) -> Ticket {
        let spot = self.join_in(&mut self.places(), channels);
        Ticket::new(self.clone(), spot)
    }
}

impl Ticket {
    pub(super) fn new(queues: Arc<WaitQueues>, Spot { queue, id, wake }: Spot) -> Self {
        Self {
            queues,
            queue,
            id,
            wake,
            took_lock: None,
        }
    }

    pub(super) fn is_head(&self) -> bool {
        self.queue.state().line.is_head(self.id)
    }

    /// Waits until this ticket heads its queue, or until `deadline`; `false` when the deadline
    /// came first.
    pub async fn until_head(&self, deadline: Option<Instant>) -> bool {
        loop {
            let woken = self.wake.notified();
            if self.is_head() {
                return true;
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, woken).await.is_err() {
                        return self.is_head();
                    }
                }
                None => woken.await,
            }
        }
    }

    /// Subscribes the queue's release channels once, for all its waiters; `false` when that
    /// failed and the head must poll.
    pub async fn subscribe(&self) -> bool {
        if self.queue.state().releases.is_subscribed() {
            return true;
        }
        let Some(topology) = self.queues.topology() else {
            return false;
        };
        let subscribed = topology.watch_releases(&self.queue.channels).await.is_ok();
        self.queue.state().releases.set_subscribed(subscribed);
        subscribed
    }

    /// What the head does next: attempt, or wait for the release of a lock a local waiter took.
    pub fn turn(&self) -> Turn {
        self.queue.state().turn()
    }

    /// Offers to take the lock over, for `ttl` and with `replicas`, from a release in this
    /// process; the lock arrives on the receiver, which fails when a hand-over was tried and did
    /// not work. Only the head offers, while it sleeps.
    pub fn offer(&self, ttl: Duration, replicas: Replicas) -> oneshot::Receiver<HandedLock> {
        let (deliver, handed) = oneshot::channel();
        self.queue.state().hand_overs.offer(Offer {
            ticket: self.id,
            ttl,
            replicas,
            deliver,
        });
        handed
    }

    /// Takes back this ticket's offer: `true` when done, `false` when a release took it and its
    /// hand-over is under way (or done): its outcome then arrives on the offer's receiver.
    pub fn withdraw_offer(&self) -> bool {
        self.queue.state().hand_overs.withdraw(self.id)
    }

    /// Sleeps until a release after `generation` is announced (`true`) or `until` passes.
    pub async fn await_release(&self, generation: u64, until: Instant, subscribed: bool) -> bool {
        let until = if subscribed {
            until
        } else {
            until.min(Instant::now() + UNSUBSCRIBED_POLL)
        };
        loop {
            let woken = self.wake.notified();
            if self.queue.state().releases.generation() != generation {
                return true;
            }
            if tokio::time::timeout_at(until, woken).await.is_err() {
                return false;
            }
        }
    }

    /// How long the head pauses before attempting after a release was announced, where attempts
    /// from several processes can split votes (`spread`: see `Topology::attempt_spread`). After
    /// another process's release every process's head was woken: a random pause up to `spread`
    /// lets one attempt first. After this process's own release its head goes at once (the
    /// others are still pausing), except after [`crate::session::handover::MAX_LINKS`] of them in
    /// a row, when it pauses the whole spread so that other processes get their turn, as a
    /// hand-over chain ends.
    pub fn pause_after_release(&self, spread: Duration) -> Duration {
        self.queue.state().releases.pause_after_release(spread)
    }

    /// Remembers the holder's remaining TTL for the waiters behind.
    pub fn saw_busy(&self, retry_after: Option<Duration>) {
        self.queue.state().holder.saw_busy(retry_after);
    }

    /// The holder's remaining TTL as the queue last saw it.
    pub fn retry_after(&self) -> Option<Duration> {
        self.queue.state().holder.retry_after()
    }

    /// Marks that this waiter leaves because it took the lock for `ttl`.
    pub fn took_lock(mut self, ttl: Duration) {
        self.took_lock = Some(ttl);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.queues.leave(&self.queue, self.id, self.took_lock);
    }
}
