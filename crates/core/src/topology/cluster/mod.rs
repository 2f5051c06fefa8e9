//! Redis Cluster: the one-Redis protocol, each call on the master that owns its keys' hash slot,
//! over redis-rs's cluster connection ([`ClusterConnection`]), with releases announced and heard
//! on the key's shard ([`ShardSubscriber`]).
//!
//! Every helper name of a lock shares its key's slot (see [`crate::protocol::keys`]), so a
//! one-key lock and a lock whose keys share a slot (a hash tag: `{order:7}:items`) are one script
//! call, atomic, as on one Redis. Keys across slots are taken slot by slot in ascending slot
//! order, all or nothing ([`across_slots`]). One-key acquires and releases asked for together
//! travel as one call per slot, as on one Redis (see `super::single`).
//!
//! Writes that wait for replicas (`replicas: n`) go on each master's connection of their own,
//! with `WAIT` behind them ([`replicated`]). One-key acquires and releases may also travel on the
//! wire, the JS thread's own socket to each master ([`ShardWires`]), routed by the same slot map.
//!
//! Fencing tokens come from one counter per slot on the slot's master, which moves with the slot
//! (a migration carries it with the keys) and never hands out a token below the master's clock in
//! microseconds, so a replica promoted without the latest counter still counts on above every
//! token given before (see `scripts::next_fence_lua`).

mod across_slots;
mod replicated;
mod shard_subscriber;
mod slots;
mod wires;

pub use wires::{ShardWires, ShardWrite};

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::join_all;

use super::single::{
    all_released, Acquires, OneKeyAcquire, OneKeyRelease, Releases, ReplicatedAcquire,
};
use super::{handed_key, Attempt, BoxFuture, HandOver, ReleaseListener, Replicas, Topology};
use crate::config::NodeConfig;
use crate::error::LockError;
use crate::protocol::chunks::per_slot;
use crate::protocol::keys::{hash_slot, LockKeys};
use crate::protocol::script_call::ScriptCall;
use crate::protocol::script_reply;
use crate::protocol::scripts;
use crate::transport::batch::{Batch, Reply};
use crate::transport::cluster::ClusterConnection;
use crate::transport::cluster_masters::ClusterMasters;
use crate::transport::slot_map::{SlotMap, SlotMaps};
use shard_subscriber::ShardSubscriber;
use slots::SlotKeys;

pub struct Cluster {
    shards: Arc<Shards>,
    subscriber: Arc<ShardSubscriber>,
}

/// The connections and the request batches; shared with the tasks that flush the batches.
struct Shards {
    connection: ClusterConnection,
    /// Only for the writes that wait for replicas (see [`replicated`]); opened on first use.
    masters: ClusterMasters,
    /// The one slot map, which `masters` and the wire route by.
    slots: Arc<SlotMaps>,
    acquires: Batch<OneKeyAcquire, Attempt>,
    replicated_acquires: Batch<ReplicatedAcquire, Attempt>,
    releases: Batch<OneKeyRelease, bool>,
}

impl Cluster {
    pub fn new(
        seeds: &[NodeConfig],
        connect_timeout: Duration,
        command_timeout: Duration,
        listener: Weak<dyn ReleaseListener>,
    ) -> Result<Self, String> {
        let slots = Arc::new(SlotMaps::default());
        Ok(Self {
            shards: Arc::new(Shards {
                connection: ClusterConnection::new(seeds, connect_timeout, command_timeout)?,
                masters: ClusterMasters::new(
                    seeds,
                    connect_timeout,
                    command_timeout,
                    slots.clone(),
                )?,
                slots,
                acquires: Batch::default(),
                replicated_acquires: Batch::default(),
                releases: Batch::default(),
            }),
            subscriber: ShardSubscriber::new(seeds, connect_timeout, command_timeout, listener),
        })
    }
}

impl Cluster {
    /// Reads the slot map in the background, unless a read is under way. A map that cannot be
    /// read leaves the wire's calls on the runtime's connection until a later read succeeds.
    fn read_slot_map(&self) {
        if !self.shards.slots.start_reading() {
            return;
        }
        let shards = self.shards.clone();
        tokio::spawn(async move {
            let _ = shards.masters.slot_map(&shards.connection, "").await;
            shards.slots.done_reading();
        });
    }
}

impl Shards {
    /// Takes every key of `part` (one slot) or none: one script call, followed by `WAIT` when
    /// `replicas` are wanted. The attempt, and how many replicas acknowledged it if asked.
    async fn acquire_all(
        &self,
        part: &SlotKeys,
        token: &str,
        ttl: Duration,
        replicas: Replicas,
    ) -> Result<(Attempt, Option<u32>), LockError> {
        let keys = &part.keys;
        let ttl_arg = ttl.as_millis().to_string();
        let lock_keys = keys.redis_keys.len().to_string();
        let all_keys = keys.redis_keys.len() + keys.fence_keys.len();
        let mut call = ScriptCall::new(&scripts::ACQUIRE_ALL, all_keys, 3);
        for key in keys.redis_keys.iter().chain(&keys.fence_keys) {
            call.key(key);
        }
        call.arg(token).arg(&ttl_arg).arg(&lock_keys);
        let (reply, acknowledged) = self
            .run_for(keys.first(), part.slot, call, replicas)
            .await?;
        let attempt = script_reply::acquire_all(reply)
            .map_err(|refusal| self.connection.refused(&keys.names, refusal))?;
        Ok((attempt, acknowledged))
    }

    /// What an attempt at `part` (one slot) would find busy, writing nothing; `None`: all free.
    async fn held_by_others(&self, part: &SlotKeys) -> Result<Option<Attempt>, LockError> {
        let keys = &part.keys;
        let mut call = ScriptCall::new(&scripts::HELD_BY_OTHERS, keys.redis_keys.len(), 0);
        for key in &keys.redis_keys {
            call.key(key);
        }
        let reply = self.connection.run(keys.first(), part.slot, &call).await?;
        script_reply::held_by_others(reply)
            .map_err(|refusal| self.connection.refused(&keys.names, refusal))
    }

    /// Resets the TTL of every key of `part` (one slot), only if all still hold `token`.
    async fn extend(&self, part: &SlotKeys, token: &str, ttl: Duration) -> Result<bool, LockError> {
        let keys = &part.keys;
        let ttl_arg = ttl.as_millis().to_string();
        let mut call = ScriptCall::new(&scripts::EXTEND, keys.redis_keys.len(), 2);
        for key in &keys.redis_keys {
            call.key(key);
        }
        call.arg(token).arg(&ttl_arg);
        let reply = self.connection.run(keys.first(), part.slot, &call).await?;
        script_reply::extend(reply).map_err(|refusal| self.connection.refused(&keys.names, refusal))
    }

    /// Raises the fencing counters of `part` (one slot) to at least `fence`.
    async fn lift_fences(&self, part: &SlotKeys, fence: &str) -> Result<(), LockError> {
        let counters = &part.keys.fence_keys;
        let mut call = ScriptCall::new(&scripts::LIFT_FENCES, counters.len(), counters.len());
        for counter in counters {
            call.key(counter);
        }
        for _ in counters {
            call.arg(fence);
        }
        self.connection
            .run(part.keys.first(), part.slot, &call)
            .await
            .map(drop)
    }

    /// Deletes every key of `keys` that still holds `token`; `true` when all did.
    async fn release(self: &Arc<Self>, keys: &LockKeys, token: &str) -> Result<bool, LockError> {
        let releases = (0..keys.redis_keys.len())
            .map(|index| self.release_one(OneKeyRelease::new(keys, index, token)));
        all_released(join_all(releases).await, keys)
    }

    /// Queues a one-key acquire; its batch leaves once the tasks runnable now have queued theirs.
    async fn acquire_one(self: &Arc<Self>, item: OneKeyAcquire) -> Result<Attempt, LockError> {
        let name = item.name().to_owned();
        let flush = || self.clone().flush_acquires();
        self.acquires.queue(item, &name, flush).await
    }

    async fn release_one(self: &Arc<Self>, item: OneKeyRelease) -> Result<bool, LockError> {
        let name = item.name().to_owned();
        let flush = || self.clone().flush_releases();
        self.releases.queue(item, &name, flush).await
    }

    /// Sends what was queued, one call per slot (and chunk).
    async fn flush_acquires(self: Arc<Self>) {
        let queued = self.acquires.take().into_iter().flatten();
        let calls = per_slot(queued, |(attempt, _)| attempt.slot());
        join_all(
            calls
                .into_iter()
                .map(|(slot, chunk)| self.acquire_chunk(slot, chunk)),
        )
        .await;
    }

    async fn flush_releases(self: Arc<Self>) {
        let queued = self.releases.take().into_iter().flatten();
        let calls = per_slot(queued, |(release, _)| release.slot());
        join_all(
            calls
                .into_iter()
                .map(|(slot, chunk)| self.release_chunk(slot, chunk)),
        )
        .await;
    }

    async fn acquire_chunk(
        self: &Arc<Self>,
        slot: u16,
        chunk: Vec<(OneKeyAcquire, Reply<Attempt>)>,
    ) {
        let acquires = Acquires(chunk);
        let reply = self
            .connection
            .run(acquires.first_name(), slot, &acquires.call())
            .await;
        let refused = |names: &[String], refusal| self.connection.refused(names, refusal);
        for (attempt, reply_to, outcome) in acquires.answers(reply, &refused) {
            self.answer_attempt(attempt, reply_to, outcome);
        }
    }

    /// Sends `attempt`'s outcome to its caller; one that gave up while the lock was being taken
    /// has whatever the attempt may have set given back.
    fn answer_attempt(
        self: &Arc<Self>,
        attempt: OneKeyAcquire,
        reply_to: Reply<Attempt>,
        outcome: Result<Attempt, LockError>,
    ) {
        if let Err(Ok(Attempt::Acquired { .. }) | Err(_)) = reply_to.send(outcome) {
            let shards = self.clone();
            tokio::spawn(async move {
                let _ = shards.release_one(attempt.undo()).await;
            });
        }
    }

    async fn release_chunk(&self, slot: u16, chunk: Vec<(OneKeyRelease, Reply<bool>)>) {
        let releases = Releases(chunk);
        let reply = self
            .connection
            .run(releases.first_name(), slot, &releases.sharded_call())
            .await;
        let refused = |names: &[String], refusal| self.connection.refused(names, refusal);
        for (_, reply_to, outcome) in releases.answers(reply, &refused) {
            let _ = reply_to.send(outcome);
        }
    }
}

impl Topology for Cluster {
    fn try_acquire<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
        replicas: Replicas,
    ) -> BoxFuture<'a, Result<Attempt, LockError>> {
        Box::pin(async move {
            if let Some(attempt) = OneKeyAcquire::new(keys, token, ttl) {
                if replicas.are_wanted() {
                    return self.shards.acquire_one_replicated(attempt, replicas).await;
                }
                return self.shards.acquire_one(attempt).await;
            }
            across_slots::acquire(&self.shards, keys, token, ttl, replicas).await
        })
    }

    /// Each key goes as its own release; every one must have been ours.
    fn release<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(self.shards.release(keys, token))
    }

    fn extend<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(across_slots::extend(&self.shards, keys, token, ttl))
    }

    fn hand_over<'a>(
        &'a self,
        keys: &'a LockKeys,
        old_token: &'a str,
        _old_fence: u64,
        new_token: &'a str,
        ttl: Duration,
        reserve: u64,
        replicas: Replicas,
    ) -> BoxFuture<'a, Result<HandOver, LockError>> {
        Box::pin(async move {
            let (key, fence_key) = handed_key(keys)?;
            let (ttl_arg, reserve_arg) = (ttl.as_millis().to_string(), reserve.to_string());
            let mut call = ScriptCall::new(&scripts::HAND_OVER, 2, 4);
            call.key(key)
                .key(fence_key)
                .arg(old_token)
                .arg(new_token)
                .arg(&ttl_arg)
                .arg(&reserve_arg);
            let shards = &self.shards;
            let (reply, acknowledged) = shards
                .run_for(keys.first(), hash_slot(key), call, replicas)
                .await?;
            let handed = script_reply::hand_over(reply, reserve)
                .map_err(|refusal| shards.connection.refused(&keys.names, refusal))?;
            replicas.checked(keys.first(), handed, acknowledged)
        })
    }

    fn watch_releases<'a>(
        &'a self,
        channels: &'a [String],
    ) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            let key = channels.first().map_or("", String::as_str);
            self.subscriber
                .watch(channels)
                .await
                .map_err(|message| self.shards.connection.failure(key, &message))
        })
    }

    fn unwatch_releases(&self, channels: &[String]) {
        self.subscriber.unwatch(channels);
    }

    fn wire_slot_map(&self) -> Option<Arc<SlotMap>> {
        let map = self.shards.slots.current();
        if map.is_none() {
            self.read_slot_map();
        }
        map
    }

    fn slot_map_stale(&self) {
        self.shards.slots.forget();
        self.read_slot_map();
    }

    fn close(&self) {
        self.shards.connection.close();
        self.shards.masters.close();
        self.subscriber.close();
    }
}
