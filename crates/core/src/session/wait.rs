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

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::protocol::lock::HeldLock;
use crate::session::clean_up::CleanUps;
use crate::session::handover::{Chain, Link, Plan, MAX_LINKS};
use crate::topology::{HandOver, ReleaseListener, Topology};

/// Longest sleep of a head whose release channel could not be subscribed.
const UNSUBSCRIBED_POLL: Duration = Duration::from_millis(250);

/// How many announced releases to remember: a release is announced more than once (directly when
/// this process made it, and on the channel of every node that held it), in any order, and must
/// wake the queue only once.
const REMEMBERED_RELEASES: usize = 16;

/// The queues of local waiters, one per set of lock keys.
#[derive(Default)]
pub struct WaitQueues {
    /// What this process has under way on each set of keys, by identity: a request arriving
    /// while anything is there queues behind it, in arrival order.
    places: Mutex<HashMap<String, Place>>,
    /// How many queues wait on more than one key: only those need a search to route a release.
    multi_key_queues: AtomicUsize,
    topology: OnceLock<Weak<dyn Topology>>,
    /// Where a departing waiter leaves what it cannot do in its `Drop`.
    clean_ups: OnceLock<CleanUps>,
}

/// What this process has under way on one set of keys.
enum Place {
    /// A first attempt with nobody behind it: the uncontended case, which makes no queue.
    Attempting,
    /// Local waiters in arrival order, the first of them perhaps a first attempt still in flight.
    Queue(Arc<Queue>),
}

impl Place {
    fn queue(&self) -> Option<&Arc<Queue>> {
        match self {
            Self::Queue(queue) => Some(queue),
            Self::Attempting => None,
        }
    }
}

struct Queue {
    identity: String,
    channels: Vec<String>,
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    waiters: VecDeque<(u64, Arc<Notify>)>,
    next_ticket: u64,
    /// The waiter that stands for a first attempt still in flight: requests queued behind it, and
    /// the attempt takes it up should it find the lock busy.
    attempt_place: Option<u64>,
    /// Bumped by every release of any of the queue's keys.
    generation: u64,
    /// Tokens of recent releases, to recognise the second announcement of each.
    announced: VecDeque<String>,
    subscribed: bool,
    /// Left by a head that took the lock: the generation then and the TTL it took it for, so the
    /// next head sleeps until that lock is released instead of trying a lock it knows is held.
    handed_over: Option<(u64, Duration)>,
    /// The holder's remaining TTL as last seen, for the `retryAfter` of waiters that time out.
    busy_until: Option<Instant>,
    /// The sleeping head's offer to take the lock over from a local release.
    offer: Option<Offer>,
    /// The hand-overs of the key since it was last taken normally (one-key queues only).
    chain: Option<Chain>,
    /// A hand-over chain just ended: the head lets other processes try first.
    pause_next_attempt: bool,
    /// The last release announced was another process's.
    released_elsewhere: bool,
    /// Tokens this process is releasing: their announcements are its own, whichever way they come.
    own_releases: VecDeque<String>,
    /// Releases in a row made by this process.
    releases_here: u32,
}

/// A head ready to take the lock over: the ticket, the TTL it asks for, and where to send it.
struct Offer {
    ticket: u64,
    ttl: Duration,
    deliver: oneshot::Sender<HandedLock>,
}

impl WaitQueues {
    /// The topology that subscribes the queues' release channels (held weakly: it holds us), and
    /// where departing waiters leave their clean-ups.
    pub fn attach(&self, topology: Weak<dyn Topology>, clean_ups: CleanUps) {
        let _ = self.topology.set(topology);
        let _ = self.clean_ups.set(clean_ups);
    }

    fn topology(&self) -> Option<Arc<dyn Topology>> {
        self.topology.get().and_then(Weak::upgrade)
    }

    /// Gives a request for `channels` its place as it arrives: a first attempt, which holds the
    /// place while it tries Redis, when nobody in this process waits for or is trying the same
    /// keys; else a ticket behind them. Decided under one lock, so nobody comes in between.
    pub fn arrive(self: &Arc<Self>, channels: &[String]) -> Arrival {
        let mut places = self.places.lock().expect("wait queues");
        match places.entry(identity(channels)) {
            Entry::Vacant(vacant) => {
                let identity = vacant.key().clone();
                vacant.insert(Place::Attempting);
                Arrival::Attempt(FirstAttempt {
                    queues: self.clone(),
                    identity: Some(identity),
                })
            }
            Entry::Occupied(_) => Arrival::Wait(self.join_in(&mut places, channels)),
        }
    }

    /// Whether a queue waits on any of `channels`.
    pub fn has_waiters(&self, channels: &[String]) -> bool {
        let places = self.places.lock().expect("wait queues");
        channels
            .iter()
            .any(|channel| matches!(places.get(channel), Some(Place::Queue(_))))
            || (self.multi_key_queues.load(Ordering::Relaxed) > 0
                && places
                    .values()
                    .filter_map(Place::queue)
                    .any(|queue| queue.channels.iter().any(|own| channels.contains(own))))
    }

    /// Joins the queue for `channels` at its tail.
    pub fn join(self: &Arc<Self>, channels: &[String]) -> Ticket {
        let mut places = self.places.lock().expect("wait queues");
        self.join_in(&mut places, channels)
    }

    /// [`WaitQueues::join`] under the lock of `places`. The first request to queue behind a
    /// first attempt makes the queue, with the attempt's place at its head.
    fn join_in(
        self: &Arc<Self>,
        places: &mut HashMap<String, Place>,
        channels: &[String],
    ) -> Ticket {
        let identity = identity(channels);
        let queue = match places.get(&identity) {
            Some(Place::Queue(queue)) => queue.clone(),
            attempting => {
                if channels.len() > 1 {
                    self.multi_key_queues.fetch_add(1, Ordering::Relaxed);
                }
                let queue = Arc::new(Queue {
                    identity: identity.clone(),
                    channels: channels.to_vec(),
                    state: Mutex::default(),
                });
                if attempting.is_some() {
                    let mut state = queue.state.lock().expect("queue state");
                    let (id, _) = state.enqueue();
                    state.attempt_place = Some(id);
                }
                places.insert(identity, Place::Queue(queue.clone()));
                queue
            }
        };
        let (id, wake) = queue.state.lock().expect("queue state").enqueue();
        Ticket {
            queues: self.clone(),
            queue,
            id,
            wake,
            took_lock: None,
        }
    }

    /// Removes the first attempt on `identity` from `places`: the ticket of its place when
    /// requests queued behind it (to keep, or to drop once `places` is unlocked).
    fn leave_attempt(
        self: &Arc<Self>,
        places: &mut HashMap<String, Place>,
        identity: String,
    ) -> Option<Ticket> {
        let queue = match places.get(&identity)? {
            Place::Attempting => {
                places.remove(&identity);
                return None;
            }
            Place::Queue(queue) => queue.clone(),
        };
        let (id, wake) = {
            let mut state = queue.state.lock().expect("queue state");
            let id = state.attempt_place.take()?;
            let (_, wake) = state.waiters.iter().find(|(waiter, _)| *waiter == id)?;
            (id, wake.clone())
        };
        Some(Ticket {
            queues: self.clone(),
            queue,
            id,
            wake,
            took_lock: None,
        })
    }

    /// Takes the offer of the head waiting for the one-key lock on `channel` that `token` holds,
    /// when it makes sense to hand the lock over; `None`: release it normally. A chain that has
    /// run its length ends here: the head will pause before its next attempt.
    pub fn hand_over(self: &Arc<Self>, channel: &str, token: &str) -> Option<Handing> {
        let queue = self
            .places
            .lock()
            .expect("wait queues")
            .get(channel)?
            .queue()?
            .clone();
        let mut state = queue.state.lock().expect("queue state");
        // Nobody sleeps ready to take it over: a normal release wakes the head.
        state.offer.as_ref()?;
        match Plan::for_release(state.chain.take(), token) {
            Plan::End => {
                state.pause_next_attempt = true;
                None
            }
            Plan::HandOver(link) => {
                let offer = state.offer.take()?;
                drop(state);
                Some(Handing {
                    queues: self.clone(),
                    queue,
                    offer,
                    link: Some(link),
                })
            }
        }
    }

    /// Called after this process released a lock: wakes its waiters at once.
    pub fn released_here(&self, channels: &[String], token: &str) {
        let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
        self.route(&channels, token, false);
    }

    /// Bumps the generation of every queue that includes one of `channels` and wakes its head,
    /// unless the release of `token` was already announced. A single-key queue is found by its
    /// channel; only the (rarer) multi-key queues are searched.
    fn route(&self, channels: &[&str], token: &str, elsewhere: bool) {
        self.each_queue(channels, |queue| queue.announce(token, elsewhere));
    }

    /// Called before this process sends the release of `token`: its announcement on the
    /// channel, which may arrive before the release call returns, is then known as its own.
    pub fn releasing(&self, channels: &[String], token: &str) {
        let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
        self.each_queue(&channels, |queue| queue.expect_own_release(token));
    }

    /// Visits every queue that includes one of `channels`.
    fn each_queue(&self, channels: &[&str], mut visit: impl FnMut(&Queue)) {
        let places = self.places.lock().expect("wait queues");
        for channel in channels {
            if let Some(queue) = places.get(*channel).and_then(Place::queue) {
                visit(queue);
            }
        }
        if self.multi_key_queues.load(Ordering::Relaxed) > 0 {
            places
                .values()
                .filter_map(Place::queue)
                .filter(|queue| queue.channels.len() > 1)
                .filter(|queue| {
                    queue
                        .channels
                        .iter()
                        .any(|own| channels.contains(&own.as_str()))
                })
                .for_each(|queue| visit(queue));
        }
    }
}

impl QueueState {
    /// Adds a waiter at the tail: its ticket and what wakes it.
    fn enqueue(&mut self) -> (u64, Arc<Notify>) {
        self.next_ticket += 1;
        let wake = Arc::new(Notify::new());
        self.waiters.push_back((self.next_ticket, wake.clone()));
        (self.next_ticket, wake)
    }
}

impl Queue {
    fn expect_own_release(&self, token: &str) {
        let mut state = self.state.lock().expect("queue state");
        if state.own_releases.len() == REMEMBERED_RELEASES {
            state.own_releases.pop_front();
        }
        state.own_releases.push_back(token.to_owned());
    }

    fn announce(&self, token: &str, elsewhere: bool) {
        let mut state = self.state.lock().expect("queue state");
        if state.announced.iter().any(|seen| seen == token) {
            return;
        }
        if state.announced.len() == REMEMBERED_RELEASES {
            state.announced.pop_front();
        }
        state.announced.push_back(token.to_owned());
        state.generation += 1;
        state.released_elsewhere = elsewhere && !state.own_releases.iter().any(|own| own == token);
        state.releases_here = if state.released_elsewhere {
            0
        } else {
            state.releases_here + 1
        };
        if let Some((_, head)) = state.waiters.front() {
            head.notify_one();
        }
    }
}

impl ReleaseListener for WaitQueues {
    fn released(&self, channel: &str, token: &str) {
        self.route(&[channel], token, true);
    }

    fn resync(&self) {
        let places = self.places.lock().expect("wait queues");
        for queue in places.values().filter_map(Place::queue) {
            let mut state = queue.state.lock().expect("queue state");
            state.generation += 1;
            state.handed_over = None;
            state.chain = None;
            if let Some((_, head)) = state.waiters.front() {
                head.notify_one();
            }
        }
    }
}

/// The name of the queue for `channels`: one key's channel, or the set's, whatever order a
/// request names its keys in, so requests for the same keys share one queue and its order.
fn identity(channels: &[String]) -> String {
    if let [channel] = channels {
        return channel.clone();
    }
    let mut set: Vec<&str> = channels.iter().map(String::as_str).collect();
    set.sort_unstable();
    set.join("\n")
}

/// Where a request starts (see [`WaitQueues::arrive`]).
pub enum Arrival {
    /// Nobody here is ahead of it: it attempts at once.
    Attempt(FirstAttempt),
    /// Local requests for the same keys are ahead of it: it waits behind them.
    Wait(Ticket),
}

/// A first attempt under way, and its place: requests for the same keys that arrive meanwhile
/// queue behind it. Dropping it ends the attempt and leaves the place to the next in line.
pub struct FirstAttempt {
    queues: Arc<WaitQueues>,
    /// `None` once the attempt has left its place.
    identity: Option<String>,
}

impl FirstAttempt {
    /// The attempt found the lock busy: it waits at its place, ahead of the requests that
    /// arrived meanwhile (at the tail of a new queue for `channels` when none did).
    pub fn wait(mut self, channels: &[String]) -> Ticket {
        let identity = self.identity.take().expect("a first attempt leaves once");
        let mut places = self.queues.places.lock().expect("wait queues");
        match self.queues.leave_attempt(&mut places, identity) {
            Some(place) => place,
            None => self.queues.join_in(&mut places, channels),
        }
    }

    /// The attempt took the lock for `ttl`: requests that queued meanwhile wait for its release
    /// instead of trying a lock they know is held.
    pub fn took_lock(mut self, ttl: Duration) {
        if let Some(place) = self.leave() {
            place.took_lock(ttl);
        }
    }

    /// Gives up the attempt's place: the ticket of it when requests queued behind it, to keep or
    /// drop.
    fn leave(&mut self) -> Option<Ticket> {
        let identity = self.identity.take()?;
        let mut places = self.queues.places.lock().expect("wait queues");
        self.queues.leave_attempt(&mut places, identity)
    }
}

impl Drop for FirstAttempt {
    fn drop(&mut self) {
        // Dropped after `leave` has unlocked the places: the next in line moves up.
        drop(self.leave());
    }
}

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
        self.queue.state.lock().expect("queue state").chain = Some(chain);
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
                self.queue.state.lock().expect("queue state").chain = Some(chain);
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
        if let (Some(lock), Some(clean_ups)) = (self.lock.take(), self.queues.clean_ups.get()) {
            clean_ups.give_back(lock.keys, lock.token);
        }
    }
}

/// What the head of a queue should do next.
pub enum Turn {
    /// Try to take the lock now; after `pause`, when a hand-over chain just ended.
    Attempt { generation: u64, pause: bool },
    /// A local waiter took the lock just before us: wait for its release first.
    AwaitRelease { generation: u64, bound: Duration },
}

/// A place in a queue. Dropping it leaves the queue and hands the head to the next waiter.
pub struct Ticket {
    queues: Arc<WaitQueues>,
    queue: Arc<Queue>,
    id: u64,
    wake: Arc<Notify>,
    took_lock: Option<Duration>,
}

impl Ticket {
    fn is_head(&self) -> bool {
        let state = self.queue.state.lock().expect("queue state");
        state.waiters.front().is_some_and(|(id, _)| *id == self.id)
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
        if self.queue.state.lock().expect("queue state").subscribed {
            return true;
        }
        let Some(topology) = self.queues.topology() else {
            return false;
        };
        let subscribed = topology.watch_releases(&self.queue.channels).await.is_ok();
        self.queue.state.lock().expect("queue state").subscribed = subscribed;
        subscribed
    }

    /// What the head does next: attempt, or wait for the release of a lock a local waiter took.
    pub fn turn(&self) -> Turn {
        let mut state = self.queue.state.lock().expect("queue state");
        let pause = std::mem::take(&mut state.pause_next_attempt);
        match state.handed_over.take() {
            Some((generation, bound)) if generation == state.generation => {
                Turn::AwaitRelease { generation, bound }
            }
            _ => Turn::Attempt {
                generation: state.generation,
                pause,
            },
        }
    }

    /// Offers to take the lock over, for `ttl`, from a release in this process; the lock
    /// arrives on the receiver, which fails when a hand-over was tried and did not work. Only
    /// the head offers, while it sleeps.
    pub fn offer(&self, ttl: Duration) -> oneshot::Receiver<HandedLock> {
        let (deliver, handed) = oneshot::channel();
        self.queue.state.lock().expect("queue state").offer = Some(Offer {
            ticket: self.id,
            ttl,
            deliver,
        });
        handed
    }

    /// Takes back this ticket's offer: `true` when done, `false` when a release took it and its
    /// hand-over is under way (or done): its outcome then arrives on the offer's receiver.
    pub fn withdraw_offer(&self) -> bool {
        let mut state = self.queue.state.lock().expect("queue state");
        if state
            .offer
            .as_ref()
            .is_some_and(|offer| offer.ticket == self.id)
        {
            state.offer = None;
            true
        } else {
            false
        }
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
            if self.queue.state.lock().expect("queue state").generation != generation {
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
    /// others are still pausing), except after [`MAX_LINKS`] of them in a row, when it pauses
    /// the whole spread so that other processes get their turn, as a hand-over chain ends.
    pub fn pause_after_release(&self, spread: Duration) -> Duration {
        let mut state = self.queue.state.lock().expect("queue state");
        if state.released_elsewhere {
            rand::rng().random_range(Duration::ZERO..spread)
        } else if state.releases_here >= MAX_LINKS {
            state.releases_here = 0;
            spread
        } else {
            Duration::ZERO
        }
    }

    /// Remembers the holder's remaining TTL for the waiters behind.
    pub fn saw_busy(&self, retry_after: Option<Duration>) {
        let mut state = self.queue.state.lock().expect("queue state");
        state.busy_until = retry_after.map(|after| Instant::now() + after);
    }

    /// The holder's remaining TTL as the queue last saw it.
    pub fn retry_after(&self) -> Option<Duration> {
        let state = self.queue.state.lock().expect("queue state");
        state
            .busy_until
            .map(|until| until.saturating_duration_since(Instant::now()))
    }

    /// Marks that this waiter leaves because it took the lock for `ttl`.
    pub fn took_lock(mut self, ttl: Duration) {
        self.took_lock = Some(ttl);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut places = self.queues.places.lock().expect("wait queues");
        let mut state = self.queue.state.lock().expect("queue state");
        let was_head = state.waiters.front().is_some_and(|(id, _)| *id == self.id);
        state.waiters.retain(|(id, _)| *id != self.id);
        if state
            .offer
            .as_ref()
            .is_some_and(|offer| offer.ticket == self.id)
        {
            state.offer = None;
        }
        if was_head {
            if let Some(ttl) = self.took_lock {
                state.handed_over = Some((state.generation, ttl));
                state.busy_until = Some(Instant::now() + ttl);
            }
            if let Some((_, next)) = state.waiters.front() {
                next.notify_one();
            }
        }
        if state.waiters.is_empty() {
            places.remove(&self.queue.identity);
            if self.queue.channels.len() > 1 {
                self.queues.multi_key_queues.fetch_sub(1, Ordering::Relaxed);
            }
            let subscribed = state.subscribed;
            drop(state);
            drop(places);
            if let (true, Some(clean_ups)) = (subscribed, self.queues.clean_ups.get()) {
                clean_ups.unwatch(self.queue.channels.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::protocol::keys::LockKeys;
    use crate::session::handover::FENCE_BLOCK;

    const TTL: Duration = Duration::from_millis(500);

    fn setup() -> (Arc<WaitQueues>, Arc<LockKeys>) {
        let keys = Arc::new(LockKeys::new("", ["k".to_owned()]));
        (Arc::new(WaitQueues::default()), keys)
    }

    fn lock(keys: &Arc<LockKeys>, token: &str, fence: u64) -> HeldLock {
        HeldLock {
            keys: keys.clone(),
            token: token.to_owned(),
            fence,
            ttl: TTL,
            expires_at: SystemTime::now(),
        }
    }

    /// Hands the lock of `token` to the offering head as the script would, `counter` being the
    /// fencing counter in Redis; the new token and fence, or `None` for a normal release.
    fn hand_over(
        queues: &Arc<WaitQueues>,
        keys: &Arc<LockKeys>,
        token: &str,
        counter: &mut u64,
    ) -> Option<(String, u64)> {
        let mut handing = queues.hand_over(&keys.channels[0], token)?;
        assert_eq!(handing.ttl(), TTL);
        let reserved = (handing.reserve() > 0).then(|| {
            *counter += handing.reserve();
            *counter
        });
        let new_token = format!("{token}+");
        let fence = handing
            .handed_to(&new_token, reserved)
            .expect("a fitting answer");
        handing.deliver(lock(keys, &new_token, fence));
        Some((new_token, fence))
    }

    /// The place of a request arriving on `channels`, which must be a first attempt.
    fn attempting(queues: &Arc<WaitQueues>, channels: &[String]) -> FirstAttempt {
        match queues.arrive(channels) {
            Arrival::Attempt(first) => first,
            Arrival::Wait(_) => panic!("expected nobody ahead"),
        }
    }

    /// The place of a request arriving on `channels`, which must be behind someone.
    fn behind(queues: &Arc<WaitQueues>, channels: &[String]) -> Ticket {
        match queues.arrive(channels) {
            Arrival::Wait(ticket) => ticket,
            Arrival::Attempt(_) => panic!("expected someone ahead"),
        }
    }

    #[tokio::test]
    async fn a_first_attempt_keeps_its_place_ahead_of_requests_that_came_meanwhile() {
        let (queues, keys) = setup();
        let busy = attempting(&queues, &keys.channels);
        let next = behind(&queues, &keys.channels);
        assert!(!next.is_head(), "the attempt in flight is ahead");
        let head = busy.wait(&keys.channels);
        assert!(head.is_head());
        drop(head);
        assert!(next.is_head());
    }

    #[tokio::test]
    async fn a_first_attempt_that_took_the_lock_leaves_the_next_awaiting_its_release() {
        let (queues, keys) = setup();
        let taken = attempting(&queues, &keys.channels);
        let next = behind(&queues, &keys.channels);
        taken.took_lock(TTL);
        assert!(next.is_head());
        assert!(matches!(next.turn(), Turn::AwaitRelease { bound, .. } if bound == TTL));

        // A failed attempt leaves its place too, and the next one attempts.
        let other = ["other".to_owned()];
        let failed = attempting(&queues, &other);
        let next = behind(&queues, &other);
        drop(failed);
        assert!(next.is_head());
        assert!(matches!(next.turn(), Turn::Attempt { .. }));
    }

    #[tokio::test]
    async fn an_uncontended_attempt_leaves_nothing_behind() {
        let (queues, keys) = setup();
        attempting(&queues, &keys.channels).took_lock(TTL);
        assert!(!queues.has_waiters(&keys.channels));
        assert!(queues.places.lock().unwrap().is_empty());
        let head = attempting(&queues, &keys.channels).wait(&keys.channels);
        assert!(head.is_head(), "alone in a queue of its own");
        drop(head);
        assert!(queues.places.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn keys_named_in_another_order_share_one_queue() {
        let queues = Arc::new(WaitQueues::default());
        let forward = LockKeys::new("", ["a".to_owned(), "b".to_owned()]);
        let backward = LockKeys::new("", ["b".to_owned(), "a".to_owned()]);
        let first = queues.join(&forward.channels);
        let second = queues.join(&backward.channels);
        assert!(!second.is_head(), "behind the first");
        drop(first);
        assert!(second.is_head());
    }

    #[tokio::test]
    async fn only_heads_woken_by_another_process_spread_their_attempts() {
        let (queues, keys) = setup();
        let head = queues.join(&keys.channels);
        let spread = Duration::from_millis(3);

        // Another process's release, on the channel: a random pause within the spread.
        queues.released(&keys.channels[0], "theirs");
        assert!(head.pause_after_release(spread) < spread);
        // Our own release, announced on the channel before the release call returned: no pause.
        queues.releasing(&keys.channels, "ours");
        queues.released(&keys.channels[0], "ours");
        assert_eq!(head.pause_after_release(spread), Duration::ZERO);
        // Many of our own in a row: the head steps back once, for the whole spread.
        for round in 1..MAX_LINKS {
            queues.released_here(&keys.channels, &format!("ours {round}"));
        }
        assert_eq!(head.pause_after_release(spread), spread);
        queues.released_here(&keys.channels, "ours again");
        assert_eq!(head.pause_after_release(spread), Duration::ZERO);
    }

    #[tokio::test]
    async fn only_an_offering_head_is_handed_the_lock() {
        let (queues, keys) = setup();
        let mut counter = 1;
        assert!(
            hand_over(&queues, &keys, "t", &mut counter).is_none(),
            "no queue"
        );
        let head = queues.join(&keys.channels);
        let behind = queues.join(&keys.channels);
        assert!(
            hand_over(&queues, &keys, "t", &mut counter).is_none(),
            "no offer"
        );

        let handed = head.offer(TTL);
        let (token, fence) = hand_over(&queues, &keys, "t", &mut counter).expect("handed over");
        assert!(!head.withdraw_offer(), "the offer was taken");
        let lock = handed.await.expect("delivered").into_lock();
        assert_eq!((lock.token.as_str(), lock.fence), (token.as_str(), fence));
        assert_eq!((fence, counter), (2, 1 + FENCE_BLOCK));
        head.took_lock(TTL);

        // The next head's turn: wait for the release of the lock just handed over.
        assert!(matches!(behind.turn(), Turn::AwaitRelease { bound, .. } if bound == TTL));
        let _withdrawn = behind.offer(TTL);
        assert!(behind.withdraw_offer());
        assert!(
            hand_over(&queues, &keys, &token, &mut counter).is_none(),
            "withdrawn"
        );
    }

    #[tokio::test]
    async fn a_failed_hand_over_tells_the_head_to_attempt() {
        let (queues, keys) = setup();
        let head = queues.join(&keys.channels);
        let handed = head.offer(TTL);
        let handing = queues.hand_over(&keys.channels[0], "t").expect("an offer");
        // The key no longer held "t": the hand-over is dropped undelivered.
        drop(handing);
        assert!(handed.await.is_err(), "the head learns it must attempt");
        assert!(matches!(head.turn(), Turn::Attempt { pause: false, .. }));
    }

    #[tokio::test]
    async fn a_departed_head_takes_its_offer_along() {
        let (queues, keys) = setup();
        let head = queues.join(&keys.channels);
        let _behind = queues.join(&keys.channels);
        let handed = head.offer(TTL);
        drop(head);
        drop(handed);
        assert!(queues.hand_over(&keys.channels[0], "t").is_none());
    }

    #[tokio::test]
    async fn a_chain_ends_after_its_links_and_the_head_pauses() {
        let (queues, keys) = setup();
        let mut counter = 7;
        let mut token = "first".to_owned();
        let mut fences = Vec::new();
        let mut head = queues.join(&keys.channels);
        loop {
            // Someone always waits behind: the queue, and its chain, stay.
            let behind = queues.join(&keys.channels);
            let handed = head.offer(TTL);
            match hand_over(&queues, &keys, &token, &mut counter) {
                Some((next, fence)) => {
                    let lock = handed.await.expect("delivered").into_lock();
                    assert_eq!(lock.fence, fence);
                    fences.push(fence);
                    token = next;
                    head.took_lock(TTL);
                    head = behind;
                }
                None => {
                    // The releaser releases normally and announces it; the head then pauses
                    // before it attempts, so other processes get a turn.
                    queues.released_here(&keys.channels, &token);
                    assert!(head.withdraw_offer());
                    assert!(matches!(head.turn(), Turn::Attempt { pause: true, .. }));
                    assert!(matches!(head.turn(), Turn::Attempt { pause: false, .. }));
                    break;
                }
            }
        }
        assert_eq!(fences, (8..8 + u64::from(MAX_LINKS)).collect::<Vec<_>>());
        assert_eq!(counter, 7 + FENCE_BLOCK);
    }
}
