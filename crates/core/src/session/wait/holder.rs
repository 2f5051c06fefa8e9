//! [`Holder`]: what a queue last saw of the lock's holder.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Default)]
pub(super) struct Holder {
    /// Left by a head that took the lock: the generation then and the TTL it took it for, so the
    /// next head sleeps until that lock is released instead of trying a lock it knows is held.
    taken_here: Option<(u64, Duration)>,
    /// The holder's remaining TTL as last seen, for the `retryAfter` of waiters that time out.
    busy_until: Option<Instant>,
}

impl Holder {
    /// A waiter of the queue took the lock for `ttl`, at release `generation`.
    pub(super) fn taken_here(&mut self, generation: u64, ttl: Duration) {
        self.taken_here = Some((generation, ttl));
        self.busy_until = Some(Instant::now() + ttl);
    }

    /// The TTL of the lock a waiter here took, if no release was announced since (the queue is
    /// still at `generation`); asked once.
    pub(super) fn take_taken_since(&mut self, generation: u64) -> Option<Duration> {
        match self.taken_here.take() {
            Some((taken_at, ttl)) if taken_at == generation => Some(ttl),
            _ => None,
        }
    }

    /// Forgets the lock a waiter here took: announcements of its release may have been missed.
    pub(super) fn forget_taken(&mut self) {
        self.taken_here = None;
    }

    /// An attempt found the lock busy, its holder's TTL `retry_after` from now.
    pub(super) fn saw_busy(&mut self, retry_after: Option<Duration>) {
        self.busy_until = retry_after.map(|after| Instant::now() + after);
    }

    /// The holder's remaining TTL as last seen.
    pub(super) fn retry_after(&self) -> Option<Duration> {
        self.busy_until
            .map(|until| until.saturating_duration_since(Instant::now()))
    }
}
