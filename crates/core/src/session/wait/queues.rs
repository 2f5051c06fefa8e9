//! [`WaitQueues`]: a locker's queues of local waiters, one per set of lock keys, and where each
//! request finds its place among them.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use super::first_attempt::{Arrival, FirstAttempt};
use super::handing::Handing;
use super::queue::Queue;
use super::ticket::Ticket;
use crate::session::clean_up::CleanUps;
use crate::topology::{ReleaseListener, Topology};

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

type Places = HashMap<String, Place>;

impl WaitQueues {
    /// The topology that subscribes the queues' release channels (held weakly: it holds us), and
    /// where departing waiters leave their clean-ups.
    pub fn attach(&self, topology: Weak<dyn Topology>, clean_ups: CleanUps) {
        let _ = self.topology.set(topology);
        let _ = self.clean_ups.set(clean_ups);
    }

    pub(super) fn topology(&self) -> Option<Arc<dyn Topology>> {
        self.topology.get().and_then(Weak::upgrade)
    }

    pub(super) fn clean_ups(&self) -> Option<&CleanUps> {
        self.clean_ups.get()
    }

    fn places(&self) -> MutexGuard<'_, Places> {
        self.places.lock().expect("wait queues")
    }

    /// Gives a request for `channels` its place as it arrives: a first attempt, which holds the
    /// place while it tries Redis, when nobody in this process waits for or is trying the same
    /// keys; else a ticket behind them. Decided under one lock, so nobody comes in between.
    pub fn arrive(self: &Arc<Self>, channels: &[String]) -> Arrival {
        let mut places = self.places();
        match places.entry(identity(channels)) {
            Entry::Vacant(vacant) => {
                let identity = vacant.key().clone();
                vacant.insert(Place::Attempting);
                Arrival::Attempt(FirstAttempt::new(self.clone(), identity))
            }
            Entry::Occupied(_) => Arrival::Wait(self.join_in(&mut places, channels)),
        }
    }

    /// Whether a queue waits on any of `channels`.
    pub fn has_waiters(&self, channels: &[String]) -> bool {
        let places = self.places();
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
        let mut places = self.places();
        self.join_in(&mut places, channels)
    }

    /// [`WaitQueues::join`] under the lock of `places`. The first request to queue behind a
    /// first attempt makes the queue, with the attempt's place at its head.
    fn join_in(self: &Arc<Self>, places: &mut Places, channels: &[String]) -> Ticket {
        let identity = identity(channels);
        let queue = match places.get(&identity) {
            Some(Place::Queue(queue)) => queue.clone(),
            attempting => {
                if channels.len() > 1 {
                    self.multi_key_queues.fetch_add(1, Ordering::Relaxed);
                }
                let queue = Arc::new(Queue::new(identity.clone(), channels.to_vec()));
                if attempting.is_some() {
                    queue.state().line.hold_for_attempt();
                }
                places.insert(identity, Place::Queue(queue.clone()));
                queue
            }
        };
        let (id, wake) = queue.state().line.enqueue();
        Ticket::new(self.clone(), queue, id, wake)
    }

    /// The first attempt on `identity` found the lock busy: the ticket of its place, ahead of
    /// the requests that arrived meanwhile (at the tail of a new queue for `channels` when none
    /// did).
    pub(super) fn wait_after_attempt(
        self: &Arc<Self>,
        identity: String,
        channels: &[String],
    ) -> Ticket {
        let mut places = self.places();
        match self.leave_attempt(&mut places, identity) {
            Some(place) => place,
            None => self.join_in(&mut places, channels),
        }
    }

    /// The first attempt on `identity` ends: the ticket of its place when requests queued behind
    /// it (to keep, or to drop once the places are unlocked, which moves the next one up).
    pub(super) fn end_attempt(self: &Arc<Self>, identity: String) -> Option<Ticket> {
        let mut places = self.places();
        self.leave_attempt(&mut places, identity)
    }

    /// Removes the first attempt on `identity` from `places`: the ticket of its place when
    /// requests queued behind it.
    fn leave_attempt(self: &Arc<Self>, places: &mut Places, identity: String) -> Option<Ticket> {
        let queue = match places.get(&identity)? {
            Place::Attempting => {
                places.remove(&identity);
                return None;
            }
            Place::Queue(queue) => queue.clone(),
        };
        let (id, wake) = queue.state().line.take_attempt_place()?;
        Some(Ticket::new(self.clone(), queue, id, wake))
    }

    /// Takes waiter `id` out of `queue` (it took the lock for `took_lock`, if set). The last to
    /// leave removes the queue and gives back its use of the release channels.
    pub(super) fn leave(&self, queue: &Queue, id: u64, took_lock: Option<Duration>) {
        let mut places = self.places();
        let mut state = queue.state();
        if !state.leave(id, took_lock) {
            return;
        }
        places.remove(&queue.identity);
        if queue.channels.len() > 1 {
            self.multi_key_queues.fetch_sub(1, Ordering::Relaxed);
        }
        let subscribed = state.releases.is_subscribed();
        drop(state);
        drop(places);
        if let (true, Some(clean_ups)) = (subscribed, self.clean_ups()) {
            clean_ups.unwatch(queue.channels.clone());
        }
    }

    /// Takes the offer of the head waiting for the one-key lock on `channel` that `token` holds,
    /// when it makes sense to hand the lock over; `None`: release it normally. A chain that has
    /// run its length ends here: the head will pause before its next attempt.
    pub fn hand_over(self: &Arc<Self>, channel: &str, token: &str) -> Option<Handing> {
        let queue = self.places().get(channel)?.queue()?.clone();
        let (offer, link) = queue.state().hand_overs.take_for_release(token)?;
        Some(Handing::new(self.clone(), queue, offer, link))
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
        let places = self.places();
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

    /// Nothing is under way on any keys: no attempt, no queue.
    #[cfg(test)]
    pub(super) fn is_idle(&self) -> bool {
        self.places().is_empty()
    }
}

impl ReleaseListener for WaitQueues {
    fn released(&self, channel: &str, token: &str) {
        self.route(&[channel], token, true);
    }

    fn resync(&self) {
        let places = self.places();
        for queue in places.values().filter_map(Place::queue) {
            queue.resync();
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
