//! The lock operations every entry point shares: acquire with waiting, release, extend.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::config::LockerConfig;
use crate::error::LockError;
use crate::protocol::keys::LockKeys;
use crate::protocol::lock::{valid_until, Claim, HeldLock};
use crate::session::cancel::CancelToken;
use crate::session::clean_up::CleanUps;
use crate::session::head::{Head, Step};
use crate::session::options::AcquireOptions;
use crate::session::wait::{Arrival, FirstAttempt, Handing, Ticket, WaitQueues};
use crate::topology::{self, Attempt, HandOver, ReleaseListener, Topology};

pub struct Lifecycle {
    topology: Arc<dyn Topology>,
    queues: Arc<WaitQueues>,
    key_prefix: String,
    drift_factor: f64,
    /// Cancelled by [`Lifecycle::close`]: every wait ends then, rather than at its deadline.
    closed: CancelToken,
    /// Give-backs of locks nobody will hold, performed on the runtime whoever queues them.
    clean_ups: CleanUps,
}

impl Lifecycle {
    /// Builds the lifecycle of `config`'s locks; no connection is opened until the first
    /// operation. Called inside the tokio runtime its background work is to run on (it panics
    /// elsewhere, as `tokio::spawn` does).
    pub fn new(config: &LockerConfig) -> Result<Self, String> {
        Self::with_topology(&config.key_prefix, config.drift_factor, |listener| {
            topology::for_target(config, listener)
        })
    }

    /// Builds the lifecycle over the topology `topology` makes, given whom to tell of the
    /// releases it hears; inside the runtime, as [`Lifecycle::new`].
    pub(super) fn with_topology(
        key_prefix: &str,
        drift_factor: f64,
        topology: impl FnOnce(Weak<dyn ReleaseListener>) -> Result<Arc<dyn Topology>, String>,
    ) -> Result<Self, String> {
        let queues = Arc::new(WaitQueues::default());
        let listener: Weak<dyn ReleaseListener> =
            Arc::downgrade(&queues) as Weak<dyn ReleaseListener>;
        let topology = topology(listener)?;
        let waiters = Arc::downgrade(&queues);
        let clean_ups =
            CleanUps::start(&Handle::current(), topology.clone(), move |keys, token| {
                if let Some(queues) = waiters.upgrade() {
                    queues.released_here(&keys.channels, token);
                }
            });
        queues.attach(Arc::downgrade(&topology), clean_ups.clone());
        Ok(Self {
            topology,
            queues,
            key_prefix: key_prefix.to_owned(),
            drift_factor,
            closed: CancelToken::default(),
            clean_ups,
        })
    }

    pub fn keys(&self, names: Vec<String>) -> Arc<LockKeys> {
        Arc::new(LockKeys::new(&self.key_prefix, names))
    }

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

    /// Waits at `ticket`'s place in the queue for a release, up to `deadline`, unless the wait
    /// is cancelled or the locker closes.
    async fn wait_at(
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

    /// Whether local requests wait for any of `keys`: their release should then go through
    /// [`Lifecycle::release`], which wakes them at once.
    pub(super) fn has_waiters(&self, keys: &LockKeys) -> bool {
        self.queues.has_waiters(&keys.channels)
    }

    /// The lock `claim` asked for, granted with `fence` elsewhere (by the wire).
    pub(super) fn granted(&self, claim: Claim, fence: u64) -> HeldLock {
        claim.granted(fence, self.drift_factor)
    }

    /// Tells local waiters that `lock` was released elsewhere (by the wire).
    pub(super) fn announce_release(&self, lock: &HeldLock) {
        self.queues.released_here(&lock.keys.channels, &lock.token);
    }

    /// Deletes whatever `token` holds of `keys`, on the runtime (see [`CleanUps`]): the undo of
    /// an attempt whose caller is gone or whose outcome is unknown. Needs no runtime here.
    pub(super) fn give_back(&self, keys: Arc<LockKeys>, token: String) {
        self.clean_ups.give_back(keys, token);
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
        let mut handed = ticket.offer(options.ttl);
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

    /// Where votes can split (see [`Topology::attempt_spread`]), the head's pause before it
    /// attempts after a release was announced.
    async fn spread_after_release(&self, ticket: &Ticket, released: bool) {
        let spread = self.topology.attempt_spread();
        if released && !spread.is_zero() {
            let pause = ticket.pause_after_release(spread);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// Whether releases of `keys` in this process can hand the lock to a local waiter: a one-key
    /// lock can, on every topology.
    fn can_hand_over(&self, keys: &LockKeys) -> bool {
        keys.redis_keys.len() == 1
    }

    /// One try: `Ok(Ok(lock))` when taken, `Ok(Err(refused))` when busy.
    ///
    /// Every attempt has a token of its own: the undo of a lost attempt may still be on its way
    /// to a node when the next attempt wins there, and must not delete the new lock.
    async fn attempt(
        &self,
        keys: &Arc<LockKeys>,
        options: &AcquireOptions,
    ) -> Result<Result<HeldLock, Refused>, LockError> {
        // The SET may land even though no answer comes back (the connection failed, or the
        // waiter went away meanwhile, its future dropped): `undo` then gives it back by token.
        let undo = GiveBack::new(&self.clean_ups, Claim::new(keys.clone(), options.ttl));
        match self
            .topology
            .try_acquire(keys, undo.token(), options.ttl)
            .await
        {
            Ok(Attempt::Acquired { fence }) => {
                Ok(Ok(undo.keep().granted(fence, self.drift_factor)))
            }
            Ok(Attempt::Busy {
                retry_after,
                foreign,
            }) => {
                undo.keep();
                Ok(Err(Refused {
                    retry_after,
                    foreign,
                }))
            }
            Err(error) => Err(error),
        }
    }

    /// `true` when the lock was still ours and is now gone.
    ///
    /// A one-key lock that a local waiter is sleeping for is handed straight to it instead,
    /// still in this call's one round trip.
    pub async fn release(&self, lock: &HeldLock) -> Result<bool, LockError> {
        if self.can_hand_over(&lock.keys) {
            if let Some(handing) = self.queues.hand_over(&lock.keys.channels[0], &lock.token) {
                return self.hand_over(lock, handing).await;
            }
        }
        if !self.topology.attempt_spread().is_zero() {
            // Only heads that spread their attempts ask whose release woke them.
            self.queues.releasing(&lock.keys.channels, &lock.token);
        }
        let released = self.topology.release(&lock.keys, &lock.token).await?;
        if released {
            self.queues.released_here(&lock.keys.channels, &lock.token);
        }
        Ok(released)
    }

    /// Replaces `lock`'s token in Redis by a new one and sends the lock to the waiting head.
    /// Whenever the head does not get it, its receiver fails and it attempts as after a release.
    async fn hand_over(&self, lock: &HeldLock, mut handing: Handing) -> Result<bool, LockError> {
        let ttl = handing.ttl();
        // Should this call be dropped while the script is on its way, or the script fail, whatever
        // it set is given back.
        let undo = GiveBack::new(&self.clean_ups, Claim::new(lock.keys.clone(), ttl));
        let outcome = self
            .topology
            .hand_over(
                &lock.keys,
                &lock.token,
                lock.fence,
                undo.token(),
                ttl,
                handing.reserve(),
            )
            .await;
        match outcome {
            Ok(done @ (HandOver::Done { .. } | HandOver::Fenced { .. })) => {
                let Some(fence) = handing.handed(undo.token(), done) else {
                    return Err(LockError::Internal {
                        key: lock.key().to_owned(),
                        what: format!("the topology answered a hand-over with {done:?}"),
                    });
                };
                handing.deliver(undo.keep().granted(fence, self.drift_factor));
                Ok(true)
            }
            Ok(HandOver::NotHeld) => {
                undo.keep();
                Ok(false)
            }
            // The old lock is released but not handed: dropping `handing` makes the head attempt.
            Ok(HandOver::Released) => {
                undo.keep();
                Ok(true)
            }
            Err(error) => Err(error),
        }
    }

    /// Gives the lock `ttl` more life from now, or fails with [`LockError::Lost`].
    pub async fn extend(&self, lock: &HeldLock, ttl: Duration) -> Result<HeldLock, LockError> {
        let started = SystemTime::now();
        if self.topology.extend(&lock.keys, &lock.token, ttl).await? {
            Ok(HeldLock {
                ttl,
                expires_at: valid_until(started, ttl, self.drift_factor),
                ..lock.clone()
            })
        } else {
            Err(LockError::Lost {
                key: lock.key().to_owned(),
            })
        }
    }

    /// Drops the connections and ends every wait with [`LockError::Closed`].
    pub fn close(&self) {
        self.closed.cancel();
        self.topology.close();
    }
}

/// What a new request does first (see [`Lifecycle::first_turn`]).
pub(super) enum FirstTurn {
    /// Attempts at once; `place`, when it waits, holds the local queue's place meanwhile.
    Attempt { place: Option<FirstAttempt> },
    /// Local requests for the same keys are ahead of it: it waits behind them, at `ticket`.
    Queue { ticket: Ticket },
}

/// How a head's sleep while it offered ended.
enum Woke {
    /// A release in this process handed it the lock.
    Handed(HeldLock),
    /// The deadline passed while a release that took the offer was still handing the lock over.
    TooLate,
    /// A release was announced, the sleep timed out or a hand-over failed: the queue's next turn.
    Turn,
}

/// What an attempt that found the lock busy learned about its holder.
struct Refused {
    /// The holder's remaining TTL (`None`: it has none).
    retry_after: Option<Duration>,
    /// The holder is not ironlock's and will not announce its release.
    foreign: bool,
}

/// The claim of an attempt or hand-over on its way: dropped before [`GiveBack::keep`], whatever
/// its token took of its keys is given back (queued, so it needs no runtime where it is dropped).
struct GiveBack<'a> {
    clean_ups: &'a CleanUps,
    claim: Option<Claim>,
}

impl<'a> GiveBack<'a> {
    fn new(clean_ups: &'a CleanUps, claim: Claim) -> Self {
        Self {
            clean_ups,
            claim: Some(claim),
        }
    }

    fn token(&self) -> &str {
        &self.claim.as_ref().expect("kept only once").token
    }

    /// The outcome is known and nothing is to be given back: the claim, to hold or drop.
    fn keep(mut self) -> Claim {
        self.claim.take().expect("kept only once")
    }
}

impl Drop for GiveBack<'_> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.clean_ups.give_back(claim.keys, claim.token);
        }
    }
}

fn aborted(keys: &LockKeys) -> LockError {
    LockError::Aborted {
        key: keys.first().to_owned(),
    }
}

fn busy(keys: &LockKeys, retry_after: Option<Duration>) -> LockError {
    LockError::Busy {
        key: keys.first().to_owned(),
        retry_after,
    }
}
