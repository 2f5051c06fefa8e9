//! [`WaitQueues`]: a locker's queues of local waiters, one per set of lock keys, the places of the
//! first attempts, and the routing of announced releases to the queues they concern. The handles
//! a request gets (a ticket, a first attempt, a hand-over) are made in their own files.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::queue::Queue;
use crate::session::clean_up::CleanUps;
use crate::topology::{ReleaseListener, Topology};

#[derive(Default)]
pub struct WaitQueues {
    /// What this process has under way on each set of keys, by identity: a request arriving
    /// while anything is there queues behind it, in arrival order.
    places: Mutex<Places>,
    /// How many queues wait on more than one key: only those need a search to route a release.
    multi_key_queues: AtomicUsize,
    topology: OnceLock<Weak<dyn Topology>>,
    /// Where a departing waiter leaves what it cannot do in its `Drop`.
    clean_ups: OnceLock<CleanUps>,
}

pub(super) type Places = HashMap<String, Place>;

/// What this process has under way on one set of keys.
pub(super) enum Place {
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

/// A waiter's spot in a queue: the queue, its ticket, and what wakes it.
pub(super) struct Spot {
    pub(super) queue: Arc<Queue>,
    pub(super) id: u64,
    pub(super) wake: Arc<Notify>,
}

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

    /// The places, locked: whatever is decided under this lock, nobody comes in between.
    pub(super) fn places(&self) -> MutexGuard<'_, Places> {
        self.places.lock().expect("wait queues")
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

    /// Holds the place of `channels` for a first attempt when nothing is under way on those
    /// keys: the place's identity, or `None` when the request must queue.
    pub(super) fn start_attempt(places: &mut Places, channels: &[String]) -> Option<String> {
        match places.entry(identity(channels)) {
            Entry::Vacant(vacant) => {
                let identity = vacant.key().clone();
                vacant.insert(Place::Attempting);
                Some(identity)
            }
            Entry::Occupied(_) => None,
        }
    }

    /// A spot at the tail of the queue for `channels`. The first request to queue behind a
    /// first attempt makes the queue, with the attempt's place at its head.
    pub(super) fn join_in(&self, places: &mut Places, channels: &[String]) -> Spot {
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
        Spot { queue, id, wake }
    }

    /// Removes the first attempt on `identity` from `places`: the spot of its place when
    /// requests queued behind it.
    pub(super) fn leave_attempt(&self, places: &mut Places, identity: String) -> Option<Spot> {
        let queue = match places.get(&identity)? {
            Place::Attempting => {
                places.remove(&identity);
                return None;
            }
            Place::Queue(queue) => queue.clone(),
        };
        let (id, wake) = queue.state().line.take_attempt_place()?;
        Some(Spot { queue, id, wake })
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

    /// The queue waiting for the one-key lock on `channel`, if any.
    pub(super) fn one_key_queue(&self, channel: &str) -> Option<Arc<Queue>> {
        self.places().get(channel)?.queue().cloned()
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
