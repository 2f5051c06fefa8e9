//! A request waiting at its place in a local queue: once it heads the queue, it carries out the
//! steps [`Head`] decides (attempt, look, sleep offering to take a local release over, give up)
//! on the topology and the queue, until it has the lock, the wait runs out or is cancelled, or
//! the locker closes.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::LockError;
use crate::protocol::keys::LockKeys;
use crate::protocol::lock::HeldLock;
use crate::session::head::{Head, Step};
use crate::session::lifecycle::Lifecycle;
use crate::session::options::AcquireOptions;
use crate::session::wait::Ticket;

/// How a head's sleep while it offered ended.
enum Woke {
    /// A release in this process handed it the lock.
    Handed(HeldLock),
    /// The deadline passed while a release that took the offer was still handing the lock over.
    TooLate,
    /// A release was announced, the sleep timed out or a hand-over failed: the queue's next turn.
    Turn,
}

impl Lifecycle {
    /// Waits at `ticket`'s place in the queue for a release, up to `deadline`, unless the wait
    /// is cancelled or the locker closes.
    pub(super) async fn wait_at(
        &self,
        ticket: Ticket,
        keys: Arc<LockKeys>,
        options: &AcquireOptions,
        deadline: Option<Instant>,
        retry_after: Option<Duration>,
    ) -> Result<HeldLock, LockError> {
        if options.is_cancelled() {
            return Err(aborted(&keys));
        }
        let waiting = self.wait_in_queue(&ticket, &keys, options, deadline, retry_after);
        let cancelled = async {
            match &options.cancel {
                Some(cancel) => cancel.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            outcome = waiting => outcome,
            () = cancelled => Err(aborted(&keys)),
            () = self.closed.cancelled() => Err(LockError::Closed {
                key: keys.first().to_owned(),
            }),
        };
        match outcome {
            Ok(lock) if options.is_cancelled() => {
                self.give_back(lock.keys, lock.token);
                Err(aborted(&keys))
            }
            Ok(lock) => {
                ticket.took_lock(lock.ttl);
                Ok(lock)
            }
            Err(error) => Err(error),
        }
    }

    /// Waits at `ticket`'s place in the queue, then as its head does what [`Head`] decides:
    /// attempts, looks, sleeps (offering to take a local release over meanwhile), gives up.
    async fn wait_in_queue(
        &self,
        ticket: &Ticket,
        keys: &Arc<LockKeys>,
        options: &AcquireOptions,
        deadline: Option<Instant>,
        retry_after: Option<Duration>,
    ) -> Result<HeldLock, LockError> {
        if !ticket.until_head(deadline).await {
            return Err(busy(keys, ticket.retry_after().or(retry_after)));
        }
        let subscribed = ticket.subscribe().await;
        let can_take_over = self.can_hand_over(keys);
        let mut head = Head::new(deadline, retry_after);
        let mut step = head.turn(ticket.turn(), Instant::now());
        loop {
            step = match step {
                Step::Pause(pause) => {
                    tokio::time::sleep(pause).await;
                    head.paused()
                }
                Step::Probe => {
                    let may_be_free = self.topology.may_be_free(keys, options.ttl).await;
                    head.probed(may_be_free, Instant::now())
                }
                Step::Attempt => match self.attempt(keys, options).await? {
                    Ok(lock) => return Ok(lock),
                    Err(refused) => {
                        ticket.saw_busy(refused.retry_after);
                        head.refused(refused.retry_after, refused.foreign, Instant::now())
                    }
                },
                Step::GiveUp { retry_after } => return Err(busy(keys, retry_after)),
                Step::Sleep { generation, until } => {
                    if !can_take_over {
                        let released = ticket.await_release(generation, until, subscribed).await;
                        self.spread_after_release(ticket, released).await;
                        head.turn(ticket.turn(), Instant::now())
                    } else {
                        match self
                            .sleep_offering(
                                ticket, options, deadline, generation, until, subscribed,
                            )
                            .await
                        {
                            Woke::Handed(lock) => return Ok(lock),
                            Woke::TooLate => {
                                return Err(busy(keys, head.retry_after()));
                            }
                            Woke::Turn => head.turn(ticket.turn(), Instant::now()),
                        }
                    }
                }
            };
        }
    }

    /// The head's sleep (see [`Lifecycle::wait_in_queue`]) while it offers to take the lock
    /// over from a release in this process.
    async fn sleep_offering(
        &self,
        ticket: &Ticket,
        options: &AcquireOptions,
        deadline: Option<Instant>,
        generation: u64,
        until: Instant,
        subscribed: bool,
    ) -> Woke {
        let mut handed = ticket.offer(options.ttl, options.replicas);
        let outcome = tokio::select! {
            biased;
            outcome = &mut handed => outcome,
            released = ticket.await_release(generation, until, subscribed) => {
                if ticket.withdraw_offer() {
                    self.spread_after_release(ticket, released).await;
                    return Woke::Turn;
                }
                // A release took the offer: an attempt now would only find the lock held,
                // so the head waits for the hand-over's outcome instead.
                match deadline {
                    Some(deadline) => match tokio::time::timeout_at(deadline, handed).await {
                        Ok(outcome) => outcome,
                        // Dropping the receiver makes the releaser give the lock back.
                        Err(_) => return Woke::TooLate,
                    },
                    None => handed.await,
                }
            }
        };
        // A failed hand-over (the releaser had lost the lock, or Redis failed) leaves the
        // receiver empty: the next turn attempts, as after a release.
        match outcome {
            Ok(handed) => Woke::Handed(handed.into_lock()),
            Err(_) => Woke::Turn,
        }
    }

    /// Where votes can split (see [`crate::topology::Topology::attempt_spread`]), the head's
    /// pause before it attempts after a release was announced.
    async fn spread_after_release(&self, ticket: &Ticket, released: bool) {
        let spread = self.topology.attempt_spread();
        if released && !spread.is_zero() {
            let pause = ticket.pause_after_release(spread);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// The error of a wait whose caller gave up on it (see [`AcquireOptions::cancel`]).
pub(super) fn aborted(keys: &LockKeys) -> LockError {
    LockError::Aborted {
        key: keys.first().to_owned(),
    }
}

/// The error of a wait that ran out with the lock still held, `retry_after` being the holder's
/// remaining TTL as last seen.
pub(super) fn busy(keys: &LockKeys, retry_after: Option<Duration>) -> LockError {
    LockError::Busy {
        key: keys.first().to_owned(),
        retry_after,
    }
}
