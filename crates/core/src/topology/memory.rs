//! `memory://`: an in-process store with the semantics of one Redis, for unit tests and
//! single-process tools. It excludes only within this process.
//!
//! Every operation does under one mutex what the Lua scripts in [`crate::protocol::scripts`] do on
//! Redis: all-or-nothing `SET NX PX`, the fencing counters lifted to a common value,
//! compare-the-token release and extend, and the hand-over of a one-key lock to a local waiter with
//! its block of fencing tokens, so waiting here takes the same path as on one Redis. Keys expire
//! lazily (checked on access) and expired ones are pruned as the map grows, so locks that are never
//! released do not pile up. A release is announced to the
//! [`ReleaseListener`] of every locker on the store directly, instead of through a channel.
//!
//! `memory://` alone gives each locker a store of its own. `memory://<name>` names a store
//! that every locker on the same name in this process shares, like lockers on one Redis; it lives
//! as long as the process.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::{handed_key, Attempt, BoxFuture, HandOver, ReleaseListener, Replicas, Topology};
use crate::error::LockError;
use crate::protocol::keys::LockKeys;

/// The map is pruned of expired keys once it holds this many, then whenever it doubles.
const PRUNE_MIN: usize = 1024;

/// The named stores of this process.
static NAMED: LazyLock<Mutex<HashMap<String, Arc<Store>>>> = LazyLock::new(Mutex::default);

struct Entry {
    token: String,
    /// `None`: no TTL, like a Redis key set without `PX`.
    expires_at: Option<Instant>,
}

impl Entry {
    fn alive(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Default)]
struct State {
    locks: HashMap<String, Entry>,
    /// The fencing counters, named by [`LockKeys::fence_keys`]: one per hash slot, so bounded.
    fences: HashMap<String, u64>,
    prune_at: usize,
    #[cfg(test)]
    attempts: u64,
}

impl State {
    /// The live entry of `key`; an expired one is removed on the way.
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.locks.get(key).is_some_and(|entry| !entry.alive(now)) {
            self.locks.remove(key);
        }
        self.locks.get_mut(key)
    }

    fn insert(&mut self, key: &str, entry: Entry, now: Instant) {
        if self.locks.len() >= self.prune_at.max(PRUNE_MIN) {
            self.locks.retain(|_, entry| entry.alive(now));
            self.prune_at = self.locks.len() * 2;
        }
        self.locks.insert(key.to_owned(), entry);
    }
}

/// The keys and counters, and the lockers to tell about releases.
#[derive(Default)]
struct Store {
    state: Mutex<State>,
    listeners: Mutex<Vec<Weak<dyn ReleaseListener>>>,
}

impl Store {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("memory store")
    }

    fn listen(&self, listener: Weak<dyn ReleaseListener>) {
        let mut listeners = self.listeners.lock().expect("memory listeners");
        listeners.retain(|each| each.strong_count() > 0);
        listeners.push(listener);
    }

    fn unlisten(&self, listener: &Weak<dyn ReleaseListener>) {
        self.listeners
            .lock()
            .expect("memory listeners")
            .retain(|each| each.strong_count() > 0 && !Weak::ptr_eq(each, listener));
    }

    /// What `PUBLISH <channel> <token>` does on Redis: tells every locker on this store.
    fn announce(&self, channels: &[&str], token: &str) {
        if channels.is_empty() {
            return;
        }
        let listeners: Vec<Arc<dyn ReleaseListener>> = self
            .listeners
            .lock()
            .expect("memory listeners")
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for listener in listeners {
            for channel in channels {
                listener.released(channel, token);
            }
        }
    }
}

/// One locker's handle on a store.
pub struct Memory {
    /// `None` once closed.
    store: Mutex<Option<Arc<Store>>>,
    listener: Weak<dyn ReleaseListener>,
}

impl Memory {
    /// A handle on the store called `name` (shared with every other locker on that name in this
    /// process), or with `None` on a new store of its own.
    pub fn new(name: Option<&str>, listener: Weak<dyn ReleaseListener>) -> Self {
        let store = match name {
            Some(name) => NAMED
                .lock()
                .expect("named memory stores")
                .entry(name.to_owned())
                .or_default()
                .clone(),
            None => Arc::default(),
        };
        store.listen(listener.clone());
        Self {
            store: Mutex::new(Some(store)),
            listener,
        }
    }

    fn store(&self, key: &str) -> Result<Arc<Store>, LockError> {
        self.store
            .lock()
            .expect("memory topology")
            .clone()
            .ok_or_else(|| LockError::Closed {
                key: key.to_owned(),
            })
    }
}

/// What Redis answers to `SET … PX 0`.
fn refuse_zero_ttl(keys: &LockKeys, ttl: Duration) -> Result<(), LockError> {
    if ttl.as_millis() == 0 {
        return Err(LockError::Connection {
            key: keys.first().to_owned(),
            message: "memory://: invalid expire time in 'set' command".into(),
        });
    }
    Ok(())
}

/// When a key set now with `ttl` expires: Redis counts whole milliseconds, and a TTL too large
/// for the clock never expires.
fn expiry(now: Instant, ttl: Duration) -> Option<Instant> {
    now.checked_add(Duration::from_millis(ttl.as_millis() as u64))
}

impl Topology for Memory {
    /// `replicas` asks nothing of a store that has no replicas and no failover to lose a lock in.
    fn try_acquire<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
        _replicas: Replicas,
    ) -> BoxFuture<'a, Result<Attempt, LockError>> {
        Box::pin(async move {
            let store = self.store(keys.first())?;
            refuse_zero_ttl(keys, ttl)?;
            let now = Instant::now();
            let mut state = store.state();
            #[cfg(test)]
            {
                state.attempts += 1;
            }
            // Busy: the longest remaining TTL among the held keys, `None` if one has no TTL.
            let mut busy = false;
            let mut longest = Some(Duration::ZERO);
            for key in &keys.redis_keys {
                if let Some(entry) = state.live(key, now) {
                    busy = true;
                    longest = match (longest, entry.expires_at) {
                        (Some(longest), Some(at)) => Some(longest.max(at - now)),
                        _ => None,
                    };
                }
            }
            if busy {
                // Only ironlock writes to a memory store.
                return Ok(Attempt::Busy {
                    retry_after: longest,
                    foreign: false,
                });
            }
            let expires_at = expiry(now, ttl);
            for key in &keys.redis_keys {
                let entry = Entry {
                    token: token.to_owned(),
                    expires_at,
                };
                state.insert(key, entry, now);
            }
            // INCR every counter, then lift them all to the highest, so each key's next fence
            // is higher than this one.
            let mut fence = 0;
            for counter in &keys.fence_keys {
                let value = state.fences.entry(counter.clone()).or_insert(0);
                *value += 1;
                fence = fence.max(*value);
            }
            for counter in &keys.fence_keys {
                state.fences.insert(counter.clone(), fence);
            }
            Ok(Attempt::Acquired { fence })
        })
    }

    fn release<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(async move {
            let store = self.store(keys.first())?;
            let now = Instant::now();
            let mut released = Vec::new();
            {
                let mut state = store.state();
                for (key, channel) in keys.redis_keys.iter().zip(&keys.channels) {
                    if state
                        .live(key, now)
                        .is_some_and(|entry| entry.token == token)
                    {
                        state.locks.remove(key);
                        released.push(channel.as_str());
                    }
                }
            }
            // Outside the store's lock: a listener may call back into the topology.
            store.announce(&released, token);
            Ok(released.len() == keys.redis_keys.len())
        })
    }

    fn extend<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(async move {
            let store = self.store(keys.first())?;
            let now = Instant::now();
            let mut state = store.state();
            for key in &keys.redis_keys {
                if state
                    .live(key, now)
                    .is_none_or(|entry| entry.token != token)
                {
                    return Ok(false);
                }
            }
            // Like `PEXPIRE key 0`, a zero TTL lets the key expire at once.
            let expires_at = expiry(now, ttl);
            for key in &keys.redis_keys {
                if let Some(entry) = state.locks.get_mut(key) {
                    entry.expires_at = expires_at;
                }
            }
            Ok(true)
        })
    }

    /// What `HAND_OVER` does on Redis, without the clock floor of its fencing tokens: a store
    /// lives only as long as the process, so its counters never go back.
    fn hand_over<'a>(
        &'a self,
        keys: &'a LockKeys,
        old_token: &'a str,
        _old_fence: u64,
        new_token: &'a str,
        ttl: Duration,
        reserve: u64,
        _replicas: Replicas,
    ) -> BoxFuture<'a, Result<HandOver, LockError>> {
        Box::pin(async move {
            let store = self.store(keys.first())?;
            let (key, counter) = handed_key(keys)?;
            refuse_zero_ttl(keys, ttl)?;
            let now = Instant::now();
            let mut state = store.state();
            let Some(entry) = state
                .live(key, now)
                .filter(|entry| entry.token == old_token)
            else {
                return Ok(HandOver::NotHeld);
            };
            entry.token = new_token.to_owned();
            entry.expires_at = expiry(now, ttl);
            if reserve == 0 {
                return Ok(HandOver::Done { reserved: None });
            }
            let last = state.fences.entry(counter.to_owned()).or_insert(0);
            *last += reserve;
            Ok(HandOver::Done {
                reserved: Some(*last),
            })
        })
    }

    /// Nothing to subscribe: releases are announced to the listener directly.
    fn watch_releases<'a>(
        &'a self,
        channels: &'a [String],
    ) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            self.store(channels.first().map_or("", String::as_str))
                .map(|_| ())
        })
    }

    fn unwatch_releases(&self, _channels: &[String]) {}

    fn close(&self) {
        if let Some(store) = self.store.lock().expect("memory topology").take() {
            store.unlisten(&self.listener);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LockerConfig, Target};
    use crate::session::lifecycle::Lifecycle;
    use crate::session::options::AcquireOptions;

    /// Records every announced release.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, String)>>);

    impl ReleaseListener for Recorder {
        fn released(&self, channel: &str, token: &str) {
            self.0
                .lock()
                .unwrap()
                .push((channel.to_owned(), token.to_owned()));
        }

        fn resync(&self) {}
    }

    impl Recorder {
        fn take(&self) -> Vec<(String, String)> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    fn topology() -> (Memory, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::default());
        let listener = Arc::downgrade(&recorder) as Weak<dyn ReleaseListener>;
        (Memory::new(None, listener), recorder)
    }

    fn keys(names: &[&str]) -> LockKeys {
        LockKeys::new("", names.iter().map(|name| (*name).to_owned()))
    }

    const MS: Duration = Duration::from_millis(1);

    async fn fence(topology: &Memory, names: &[&str], token: &str, ttl: Duration) -> u64 {
        match topology
            .try_acquire(&keys(names), token, ttl, Replicas::NONE)
            .await
            .unwrap()
        {
            Attempt::Acquired { fence } => fence,
            busy => panic!("{names:?} should be free, got {busy:?}"),
        }
    }

    async fn retry_after(topology: &Memory, names: &[&str]) -> Option<Duration> {
        match topology
            .try_acquire(&keys(names), "other", 1000 * MS, Replicas::NONE)
            .await
            .unwrap()
        {
            Attempt::Busy { retry_after, .. } => retry_after,
            acquired => panic!("{names:?} should be busy, got {acquired:?}"),
        }
    }

    fn holds(topology: &Memory, key: &str, token: &str) -> bool {
        let store = topology.store(key).unwrap();
        let mut state = store.state();
        state
            .live(key, Instant::now())
            .is_some_and(|entry| entry.token == token)
    }

    #[tokio::test]
    async fn a_held_key_is_busy_until_it_expires() {
        let (topology, _) = topology();
        assert_eq!(fence(&topology, &["k"], "a", 60 * MS).await, 1);
        let after = retry_after(&topology, &["k"]).await.unwrap();
        assert!(after <= 60 * MS && after > 30 * MS, "{after:?}");
        tokio::time::sleep(90 * MS).await;
        assert_eq!(fence(&topology, &["k"], "b", 1000 * MS).await, 2);
        assert!(holds(&topology, "k", "b"));
    }

    #[tokio::test]
    async fn a_multi_key_lock_is_all_or_nothing() {
        let (topology, _) = topology();
        fence(&topology, &["b"], "holder", 1000 * MS).await;
        retry_after(&topology, &["a", "b", "c"]).await;
        assert!(!holds(&topology, "a", "other") && !holds(&topology, "c", "other"));
        // Nothing was written: a and c are free on their own.
        fence(&topology, &["a"], "x", 1000 * MS).await;
        fence(&topology, &["c"], "y", 1000 * MS).await;
        assert!(topology.release(&keys(&["b"]), "holder").await.unwrap());
        retry_after(&topology, &["a", "b", "c"]).await;
        assert!(topology.release(&keys(&["a"]), "x").await.unwrap());
        assert!(topology.release(&keys(&["c"]), "y").await.unwrap());
        fence(&topology, &["a", "b", "c"], "all", 1000 * MS).await;
        for key in ["a", "b", "c"] {
            assert!(holds(&topology, key, "all"), "{key}");
        }
    }

    #[tokio::test]
    async fn retry_after_is_the_longest_ttl_and_none_without_ttl() {
        let (topology, _) = topology();
        fence(&topology, &["short"], "s", 1000 * MS).await;
        fence(&topology, &["long"], "l", 3000 * MS).await;
        let after = retry_after(&topology, &["short", "long", "free"])
            .await
            .unwrap();
        assert!(after > 2900 * MS && after <= 3000 * MS, "{after:?}");
        // A key without TTL (SET without PX, as another client may write it) never expires.
        topology.store("forever").unwrap().state().locks.insert(
            "forever".into(),
            Entry {
                token: "f".into(),
                expires_at: None,
            },
        );
        assert_eq!(retry_after(&topology, &["forever"]).await, None);
        assert_eq!(retry_after(&topology, &["long", "forever"]).await, None);
        assert_eq!(retry_after(&topology, &["forever", "long"]).await, None);
    }

    #[tokio::test]
    async fn fences_grow_strictly_and_multi_key_locks_lift_every_counter() {
        let (topology, _) = topology();
        let mut previous = 0;
        for _ in 0..5 {
            let next = fence(&topology, &["f"], "t", 1000 * MS).await;
            assert!(next > previous);
            previous = next;
            topology.release(&keys(&["f"]), "t").await.unwrap();
        }
        // "alpha" and "omega" live in different slots, so they have their own counters.
        let both = keys(&["alpha", "omega"]);
        assert_eq!(both.fence_keys.len(), 2);
        for token in ["t", "u"] {
            fence(&topology, &["alpha"], token, 1000 * MS).await;
            topology.release(&keys(&["alpha"]), token).await.unwrap();
        }
        // alpha's counter is at 2, omega's at 0: the pair takes 3 and lifts omega to it.
        let lifted = fence(&topology, &["alpha", "omega"], "both", 1000 * MS).await;
        assert_eq!(lifted, 3, "the highest counter after the bump");
        topology.release(&both, "both").await.unwrap();
        let store = topology.store("alpha").unwrap();
        for counter in &both.fence_keys {
            assert_eq!(store.state().fences[counter], lifted, "{counter}");
        }
        assert!(fence(&topology, &["omega"], "o", 1000 * MS).await > lifted);
        assert!(fence(&topology, &["alpha"], "a", 1000 * MS).await > lifted);
    }

    #[tokio::test]
    async fn release_deletes_only_our_keys_and_announces_each() {
        let (topology, recorder) = topology();
        let pair = keys(&["x", "y"]);
        fence(&topology, &["x", "y"], "ours", 1000 * MS).await;
        assert!(!topology.release(&pair, "not-ours").await.unwrap());
        assert!(recorder.take().is_empty());
        assert!(topology.release(&pair, "ours").await.unwrap());
        assert_eq!(
            recorder.take(),
            [
                ("{x}:released".to_owned(), "ours".to_owned()),
                ("{y}:released".to_owned(), "ours".to_owned())
            ]
        );
        assert!(!topology.release(&pair, "ours").await.unwrap());
        assert!(recorder.take().is_empty());

        // x expired and was taken by someone else: only y is ours to delete.
        fence(&topology, &["x", "y"], "slow", 1000 * MS).await;
        topology
            .extend(&keys(&["x"]), "slow", Duration::ZERO)
            .await
            .unwrap();
        fence(&topology, &["x"], "next", 1000 * MS).await;
        assert!(!topology.release(&pair, "slow").await.unwrap());
        assert!(holds(&topology, "x", "next") && !holds(&topology, "y", "slow"));
        assert_eq!(
            recorder.take(),
            [("{y}:released".to_owned(), "slow".to_owned())]
        );
    }

    #[tokio::test]
    async fn extend_renews_every_key_only_while_all_are_ours() {
        let (topology, _) = topology();
        let pair = keys(&["x", "y"]);
        fence(&topology, &["x", "y"], "t", 60 * MS).await;
        assert!(topology.extend(&pair, "t", 1000 * MS).await.unwrap());
        tokio::time::sleep(90 * MS).await;
        assert!(holds(&topology, "x", "t") && holds(&topology, "y", "t"));
        assert!(!topology.extend(&pair, "other", 1000 * MS).await.unwrap());

        // y taken after it expired: extend refuses and changes no TTL.
        topology
            .extend(&keys(&["y"]), "t", Duration::ZERO)
            .await
            .unwrap();
        fence(&topology, &["y"], "next", 60 * MS).await;
        assert!(!topology.extend(&pair, "t", 5000 * MS).await.unwrap());
        let after = retry_after(&topology, &["x"]).await.unwrap();
        assert!(after <= 1000 * MS, "x was extended anyway: {after:?}");
    }

    #[tokio::test]
    async fn expired_keys_are_pruned_as_the_map_grows() {
        let (topology, _) = topology();
        for i in 0..PRUNE_MIN {
            fence(&topology, &[&format!("short:{i}")], "t", MS).await;
        }
        tokio::time::sleep(5 * MS).await;
        for i in 0..10 * PRUNE_MIN {
            fence(&topology, &[&format!("long:{i}")], "t", 60_000 * MS).await;
            topology
                .extend(&keys(&[&format!("long:{i}")]), "t", MS)
                .await
                .unwrap();
            if i % PRUNE_MIN == 0 {
                tokio::time::sleep(5 * MS).await;
            }
        }
        let store = topology.store("").unwrap();
        let left = store.state().locks.len();
        assert!(left <= 2 * PRUNE_MIN, "{left} keys kept");
    }

    #[tokio::test]
    async fn a_closed_backend_fails_with_closed() {
        let (topology, _) = topology();
        fence(&topology, &["k"], "t", 1000 * MS).await;
        topology.close();
        let k = keys(&["k"]);
        let closed = LockError::Closed { key: "k".into() };
        assert_eq!(
            topology.try_acquire(&k, "u", MS, Replicas::NONE).await,
            Err(closed.clone())
        );
        assert_eq!(topology.release(&k, "t").await, Err(closed.clone()));
        assert_eq!(topology.extend(&k, "t", MS).await, Err(closed));
        assert!(matches!(
            topology.watch_releases(&k.channels).await,
            Err(LockError::Closed { .. })
        ));
    }

    #[tokio::test]
    async fn a_zero_ttl_is_refused_like_redis() {
        let (topology, _) = topology();
        let error = topology
            .try_acquire(
                &keys(&["k"]),
                "t",
                Duration::from_micros(500),
                Replicas::NONE,
            )
            .await
            .unwrap_err();
        assert_eq!(error.code(), "ECONNECTION");
        fence(&topology, &["k"], "t", MS).await;
    }

    #[tokio::test]
    async fn named_stores_are_shared_and_unnamed_ones_are_not() {
        let recorders: Vec<Arc<Recorder>> = (0..4).map(|_| Arc::default()).collect();
        let listener = |i: usize| Arc::downgrade(&recorders[i]) as Weak<dyn ReleaseListener>;
        let name = "memory-test:named_stores_are_shared";
        let (one, two) = (
            Memory::new(Some(name), listener(0)),
            Memory::new(Some(name), listener(1)),
        );
        let (own, other_own) = (
            Memory::new(None, listener(2)),
            Memory::new(None, listener(3)),
        );
        fence(&one, &["k"], "t", 1000 * MS).await;
        retry_after(&two, &["k"]).await;
        fence(&own, &["k"], "u", 1000 * MS).await;
        fence(&other_own, &["k"], "v", 1000 * MS).await;

        // A release through one handle is announced to every locker on the store.
        assert!(two.release(&keys(&["k"]), "t").await.unwrap());
        let announced = vec![("{k}:released".to_owned(), "t".to_owned())];
        assert_eq!(recorders[0].take(), announced);
        assert_eq!(recorders[1].take(), announced);
        assert!(recorders[2].take().is_empty() && recorders[3].take().is_empty());

        // Closing one handle leaves the store to the others, and stops its announcements.
        one.close();
        fence(&two, &["k"], "w", 1000 * MS).await;
        let again = Memory::new(Some(name), listener(0));
        retry_after(&again, &["k"]).await;
        assert!(two.release(&keys(&["k"]), "w").await.unwrap());
        assert_eq!(recorders[0].take().len(), 1, "only `again` announces to it");
    }

    #[tokio::test]
    async fn hand_over_replaces_only_the_old_token_and_reserves_a_block() {
        let (topology, recorder) = topology();
        let k = keys(&["k"]);
        let first = fence(&topology, &["k"], "old", 1000 * MS).await;
        assert_eq!(
            topology
                .hand_over(&k, "stranger", first, "new", 1000 * MS, 64, Replicas::NONE)
                .await
                .unwrap(),
            HandOver::NotHeld
        );
        assert!(holds(&topology, "k", "old"));
        assert_eq!(
            topology
                .hand_over(&k, "old", first, "new", 1000 * MS, 64, Replicas::NONE)
                .await
                .unwrap(),
            HandOver::Done {
                reserved: Some(first + 64)
            }
        );
        assert!(holds(&topology, "k", "new"), "the key was never free");
        assert_eq!(
            topology
                .hand_over(&k, "new", first + 1, "newer", 1000 * MS, 0, Replicas::NONE)
                .await
                .unwrap(),
            HandOver::Done { reserved: None }
        );
        assert!(recorder.take().is_empty(), "a hand-over announces nothing");
        assert!(topology.release(&k, "newer").await.unwrap());
        assert!(
            fence(&topology, &["k"], "next", 1000 * MS).await > first + 64,
            "the next acquisition is fenced above the whole block"
        );
        assert!(topology
            .hand_over(
                &keys(&["k", "l"]),
                "next",
                0,
                "n",
                1000 * MS,
                0,
                Replicas::NONE
            )
            .await
            .is_err());
    }

    #[tokio::test]
    async fn an_expired_lock_is_not_handed_over() {
        let (topology, _recorder) = topology();
        fence(&topology, &["k"], "old", 20 * MS).await;
        tokio::time::sleep(40 * MS).await;
        assert_eq!(
            topology
                .hand_over(
                    &keys(&["k"]),
                    "old",
                    1,
                    "new",
                    1000 * MS,
                    64,
                    Replicas::NONE
                )
                .await
                .unwrap(),
            HandOver::NotHeld
        );
        assert!(!holds(&topology, "k", "new"));
    }

    fn memory_locker(name: &str) -> Lifecycle {
        Lifecycle::new(&LockerConfig::new(Target::Memory {
            name: Some(name.to_owned()),
        }))
        .unwrap()
    }

    fn attempts(name: &str) -> u64 {
        NAMED.lock().unwrap()[name].state().attempts
    }

    /// The locker announces its own releases (`released_here`) and the store announces them too;
    /// the wait queues must wake once per release, so no attempt is wasted on a held lock. A
    /// two-key lock is never handed over: every release is announced.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_release_wakes_one_waiter_once() {
        let name = "memory-test:each_release_wakes_one_waiter_once";
        let names = || vec!["k".to_owned(), "l".to_owned()];
        let locker = Arc::new(memory_locker(name));
        let options = AcquireOptions {
            ttl: Duration::from_secs(10),
            wait: Some(Duration::from_secs(5)),
            cancel: None,
            replicas: Replicas::NONE,
        };
        let holder = locker
            .acquire(locker.keys(names()), &options)
            .await
            .unwrap();
        let (sender, mut taken) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..5 {
            let (locker, options, sender) = (locker.clone(), options.clone(), sender.clone());
            tokio::spawn(async move {
                let lock = locker
                    .acquire(locker.keys(names()), &options)
                    .await
                    .unwrap();
                sender.send((i, lock)).unwrap();
            });
            tokio::time::sleep(10 * MS).await;
        }
        // The holder's attempt, then the first waiter's direct try and its try as queue head;
        // the others queue behind it without trying.
        assert_eq!(attempts(name), 3);
        let started = std::time::Instant::now();
        locker.release(&holder).await.unwrap();
        for expected in 0..5 {
            let (i, lock) = taken.recv().await.unwrap();
            assert_eq!(i, expected, "served in arrival order");
            // Work under the lock: a stray wake-up now would cost the next waiter an attempt.
            tokio::time::sleep(20 * MS).await;
            locker.release(&lock).await.unwrap();
        }
        assert!(started.elapsed() < Duration::from_millis(500));
        // One more attempt per waiter: each succeeded on its first try after a release.
        assert_eq!(attempts(name), 3 + 5);
    }

    /// A one-key lock goes from its holder straight to the head sleeping for it, as on one Redis:
    /// no attempt, and fences in order from the chain's block.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_release_hands_a_one_key_lock_to_the_sleeping_head() {
        let name = "memory-test:a_release_hands_a_one_key_lock_to_the_sleeping_head";
        let locker = Arc::new(memory_locker(name));
        let options = AcquireOptions {
            ttl: Duration::from_secs(10),
            wait: Some(Duration::from_secs(5)),
            cancel: None,
            replicas: Replicas::NONE,
        };
        let mut lock = locker
            .acquire(locker.keys(vec!["k".into()]), &options)
            .await
            .unwrap();
        let (sender, mut taken) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..3 {
            let (locker, options, sender) = (locker.clone(), options.clone(), sender.clone());
            tokio::spawn(async move {
                let lock = locker
                    .acquire(locker.keys(vec!["k".into()]), &options)
                    .await
                    .unwrap();
                sender.send((i, lock)).unwrap();
            });
            tokio::time::sleep(10 * MS).await;
        }
        assert_eq!(attempts(name), 3);
        let mut fences = vec![lock.fence];
        for expected in 0..3 {
            // The head offers while it sleeps: give it the time to.
            tokio::time::sleep(10 * MS).await;
            assert!(locker.release(&lock).await.unwrap());
            let (i, next) = taken.recv().await.unwrap();
            assert_eq!(i, expected, "served in arrival order");
            fences.push(next.fence);
            lock = next;
        }
        assert_eq!(attempts(name), 3, "every waiter was handed the lock");
        let first = fences[0];
        assert_eq!(fences, [first, first + 1, first + 2, first + 3]);
        assert!(locker.release(&lock).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_release_by_another_locker_on_the_store_wakes_a_waiter() {
        let name = "memory-test:a_release_by_another_locker_wakes";
        let (holding, waiting) = (memory_locker(name), Arc::new(memory_locker(name)));
        let options = AcquireOptions {
            ttl: Duration::from_secs(10),
            wait: Some(Duration::from_secs(5)),
            cancel: None,
            replicas: Replicas::NONE,
        };
        let holder = holding
            .acquire(holding.keys(vec!["k".into()]), &options)
            .await
            .unwrap();
        let waiter = {
            let (waiting, options) = (waiting.clone(), options.clone());
            tokio::spawn(async move {
                waiting
                    .acquire(waiting.keys(vec!["k".into()]), &options)
                    .await
            })
        };
        tokio::time::sleep(50 * MS).await;
        let released = std::time::Instant::now();
        assert!(holding.release(&holder).await.unwrap());
        waiter.await.unwrap().unwrap();
        assert!(released.elapsed() < Duration::from_millis(100));
    }
}
