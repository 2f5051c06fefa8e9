//! Where locks are stored. Every topology speaks the same small protocol; the locker adds waiting,
//! validity and the watchdog on top, once for all of them.

mod channel_uses;
mod cluster;
mod memory;
mod redlock;
mod single;
mod subscriber;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

pub use cluster::{Cluster, ShardWires, ShardWrite};
pub use memory::Memory;
pub use redlock::Redlock;
pub use single::{OneKeyWire, Single, WireAnswer, WireCalls};

use crate::config::{LockerConfig, Target};
use crate::error::LockError;
use crate::protocol::keys::LockKeys;
pub use crate::protocol::replicas::Replicas;
pub use crate::protocol::script_reply::{Attempt, HandOver};
use crate::transport::slot_map::SlotMap;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Receives what the release channels announce: the topology calls it, the wait queues
/// ([`crate::session::wait`]) implement it.
pub trait ReleaseListener: Send + Sync {
    /// The lock behind `channel` held by `token` was released.
    fn released(&self, channel: &str, token: &str);
    /// Announcements may have been missed (the subscriber reconnected): everyone should look again.
    fn resync(&self);
}

/// The topology `config`'s target names, telling `listener` of the releases it hears. No
/// connection opens before the first call; built inside the tokio runtime its background work
/// runs on.
pub fn for_target(
    config: &LockerConfig,
    listener: Weak<dyn ReleaseListener>,
) -> Result<Arc<dyn Topology>, String> {
    Ok(match &config.target {
        Target::Single(node) => Arc::new(Single::new(
            node,
            config.connect_timeout,
            config.command_timeout,
            listener,
        )?),
        Target::Redlock(nodes) => Arc::new(Redlock::new(
            nodes,
            config.connect_timeout,
            config.command_timeout,
            config.drift_factor,
            listener,
        )?),
        Target::Cluster(seeds) => Arc::new(Cluster::new(
            seeds,
            config.connect_timeout,
            config.command_timeout,
            listener,
        )?),
        Target::Sentinel(sentinels) => Arc::new(Single::behind_sentinels(
            sentinels,
            config.connect_timeout,
            config.command_timeout,
            listener,
        )?),
        Target::Memory { name } => Arc::new(Memory::new(name.as_deref(), listener)),
    })
}

/// The lock key and fencing counter of a one-key lock, the only kind a hand-over takes: the
/// session never offers another kind (a bug if it does, hence [`LockError::Internal`]).
pub(crate) fn handed_key(keys: &LockKeys) -> Result<(&str, &str), LockError> {
    match (&keys.redis_keys[..], &keys.fence_keys[..]) {
        ([key], [counter]) => Ok((key, counter)),
        _ => Err(LockError::Internal {
            key: keys.first().to_owned(),
            what: format!(
                "a lock of {} keys was offered for hand-over, where only one-key locks are",
                keys.redis_keys.len()
            ),
        }),
    }
}

pub trait Topology: Send + Sync + 'static {
    /// Takes every key of `keys` for `token`, or none. With `replicas` wanted, a grant counts
    /// only once that many replicas acknowledged it (`WAIT` on the connection that wrote it),
    /// else the attempt fails with [`LockError::Replication`] (the session gives the token back);
    /// a topology with nothing to replicate to (`memory://`) grants as without.
    fn try_acquire<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
        replicas: Replicas,
    ) -> BoxFuture<'a, Result<Attempt, LockError>>;

    /// `true` when every key still held our token and is now deleted.
    fn release<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, LockError>>;

    /// `true` when every key still held our token and now lives `ttl` from now.
    fn extend<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, LockError>>;

    /// Whether to attempt `keys` now, asked without writing anything. A waiter behind a holder
    /// that is not ironlock's asks this before each attempt, so that its attempts do not hold
    /// nodes for a moment and split the votes of clients that never give partial votes back
    /// (`redlock`'s retries keep them until their TTL). Where one server decides, an attempt
    /// holds nothing it does not win, so the default answers yes without asking.
    fn may_be_free<'a>(&'a self, _keys: &'a LockKeys, _ttl: Duration) -> BoxFuture<'a, bool> {
        Box::pin(async { true })
    }

    /// How far apart heads in different processes spread their attempts after an announced
    /// release. Where votes can split (Redlock), every process's head attempting at once splits
    /// them, and each lost attempt's undo is announced and wakes everyone again; a random pause
    /// of up to this long lets one attempt arrive first. Zero where one server decides.
    fn attempt_spread(&self) -> Duration {
        Duration::ZERO
    }

    /// Replaces `old_token` (whose fence was `old_fence`) by `new_token` (living `ttl` from now)
    /// on a one-key lock, without the key ever being free; with `reserve > 0`, also reserves that
    /// many fencing tokens in one go, where the topology uses blocks (one Redis). Every topology
    /// hands over: one Redis and `memory://` in one script (or its equivalent), Redlock node by
    /// node, the new token needing a majority like an attempt. `replicas`: what the waiting
    /// head asked of its attempts, which the new token must meet as they would (a topology that
    /// cannot wait for replicas during a hand-over releases instead: [`HandOver::Released`]).
    // The old holder's token and fence, the new one's token, TTL and replicas, the block: each
    // a different thing the topology needs.
    #[allow(clippy::too_many_arguments)]
    fn hand_over<'a>(
        &'a self,
        keys: &'a LockKeys,
        old_token: &'a str,
        old_fence: u64,
        new_token: &'a str,
        ttl: Duration,
        reserve: u64,
        replicas: Replicas,
    ) -> BoxFuture<'a, Result<HandOver, LockError>>;

    /// Subscribes the release channels `channels` (counting uses), returning once confirmed.
    fn watch_releases<'a>(&'a self, channels: &'a [String])
        -> BoxFuture<'a, Result<(), LockError>>;

    /// Gives back one use of each of `channels`.
    fn unwatch_releases(&self, channels: &[String]);

    /// Where the wire (the JS thread's own socket, [`crate::transport::wire`]) connects now:
    /// one Redis's address, or behind Sentinel where the master was last found; `None` for a
    /// topology the wire does not serve, or while the master is not found yet.
    fn wire_address(&self) -> Option<(String, u16)> {
        None
    }

    /// On a Redis Cluster, which master serves each slot, for the wire's sockets to the masters
    /// ([`ShardWires`]) to route by: the map as last read, or `None` (not a cluster, or not read
    /// yet: reading it starts, on the runtime of the caller's context).
    fn wire_slot_map(&self) -> Option<Arc<SlotMap>> {
        None
    }

    /// The wire met a slot served elsewhere, or lost a master's socket: the slot map is read
    /// again (meanwhile the wire carries nothing).
    fn slot_map_stale(&self) {}

    /// Drops connections; later calls fail with [`LockError::Closed`].
    fn close(&self);
}
