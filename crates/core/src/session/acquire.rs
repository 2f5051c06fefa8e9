//! The way an acquire goes: its first turn, taken as it arrives (attempt at once, or queue behind
//! the local requests for the same keys), then the attempt, and the queue should it find the
//! lock busy.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::LockError;
use crate::protocol::keys::LockKeys;
use crate::protocol::lock::HeldLock;
use crate::session::lifecycle::Lifecycle;
use crate::session::options::AcquireOptions;
use crate::session::wait::{Arrival, FirstAttempt, Ticket};
use crate::session::wait_driver::{aborted, busy};

/// What a new request does first (see [`Lifecycle::first_turn`]).
pub(super) enum FirstTurn {
    /// Attempts at once; `place`, when it waits, holds the local queue's place meanwhile.
    Attempt { place: Option<FirstAttempt> },
    /// Local requests for the same keys are ahead of it: it waits behind them, at `ticket`.
    Queue { ticket: Ticket },
}

impl Lifecycle {
    /// Takes every key of `keys` or none, waiting up to `options.wait` while any is busy.
    ///
    /// The first attempt goes straight to Redis unless local requests for the same keys are
    /// ahead (waiting, or attempting); after that the request waits at its place in the local
    /// queue and only the queue's head retries, woken by releases rather than by a timer.
    pub async fn acquire(
        &self,
        keys: Arc<LockKeys>,
        options: &AcquireOptions,
    ) -> Result<HeldLock, LockError> {
        let first = self.first_turn(&keys, options);
        self.acquire_from(keys, options, first).await
    }

    /// [`Lifecycle::acquire`] from the first turn the request took when it arrived.
    pub(super) async fn acquire_from(
        &self,
        keys: Arc<LockKeys>,
        options: &AcquireOptions,
        first: FirstTurn,
    ) -> Result<HeldLock, LockError> {
        let deadline = options.deadline(Instant::now());
        if options.is_cancelled() {
            return Err(aborted(&keys));
        }
        let place = match first {
            FirstTurn::Attempt { place } => place,
            FirstTurn::Queue { ticket } => {
                return self.wait_at(ticket, keys, options, deadline, None).await;
            }
        };
        let retry_after = match self.attempt(&keys, options).await? {
            Ok(lock) if options.is_cancelled() => {
                self.give_back(lock.keys, lock.token);
                return Err(aborted(&keys));
            }
            Ok(lock) => {
                if let Some(place) = place {
                    place.took_lock(lock.ttl);
                }
                return Ok(lock);
            }
            Err(refused) => refused.retry_after,
        };
        self.still_waiting(&keys, deadline, retry_after)?;
        self.queue_after_busy(keys, options, deadline, retry_after, place)
            .await
    }

    /// Whether a new request for `keys` attempts at once or queues, decided as it arrives (so it
    /// keeps its place while it waits for the runtime to start it). `tryAcquire` always asks
    /// Redis; a waiting request does only when no local request for the same keys is ahead of
    /// it, and then holds their place while it attempts (wherever it attempts: here or on the
    /// wire), so requests arriving meanwhile queue behind it.
    pub(super) fn first_turn(&self, keys: &LockKeys, options: &AcquireOptions) -> FirstTurn {
        if options.wait == Some(Duration::ZERO) {
            return FirstTurn::Attempt { place: None };
        }
        match self.queues.arrive(&keys.channels) {
            Arrival::Attempt(place) => FirstTurn::Attempt { place: Some(place) },
            Arrival::Wait(ticket) => FirstTurn::Queue { ticket },
        }
    }

    /// After a first attempt found `keys` busy: `Err(busy)` when the wait is over by `deadline`,
    /// else the request goes on to [`Lifecycle::queue_after_busy`].
    pub(super) fn still_waiting(
        &self,
        keys: &LockKeys,
        deadline: Option<Instant>,
        retry_after: Option<Duration>,
    ) -> Result<(), LockError> {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(busy(keys, retry_after));
        }
        Ok(())
    }

    /// The rest of [`Lifecycle::acquire`] after a first attempt found the lock busy (`retry_after`:
    /// the holder's remaining TTL, as that attempt saw it): waits at the place that attempt held
    /// (`place`; without one, behind the local waiters for the same keys) for a release, up to
    /// `deadline`.
    pub(super) async fn queue_after_busy(
        &self,
        keys: Arc<LockKeys>,
        options: &AcquireOptions,
        deadline: Option<Instant>,
        retry_after: Option<Duration>,
        place: Option<FirstAttempt>,
    ) -> Result<HeldLock, LockError> {
        let ticket = match place {
            Some(place) => place.wait(&keys.channels),
            None => self.queues.join(&keys.channels),
        };
        self.wait_at(ticket, keys, options, deadline, retry_after)
            .await
    }
}
