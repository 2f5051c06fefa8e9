//! One Redis server: the lock protocol's script calls on one node connection, with one-key
//! acquires and releases asked together travelling as one call ([`one_key`]). The same calls
//! also travel on the wire, the JS thread's own socket, built and read by [`WireCalls`]. Writes
//! that wait for replicas go on a connection of their own ([`replicated`]).

mod one_key;
mod replicated;
mod wire_calls;

pub(super) use one_key::{all_released, Acquires, OneKeyAcquire, OneKeyRelease, Releases};
pub(super) use replicated::{by_replicas, granted, ReplicatedAcquire};
pub use wire_calls::{OneKeyWire, WireAnswer, WireCalls};

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::join_all;

use super::subscriber::Subscriber;
use super::{handed_key, Attempt, BoxFuture, HandOver, ReleaseListener, Replicas, Topology};
use crate::config::{NodeConfig, SentinelConfig};
use crate::error::LockError;
use crate::protocol::keys::LockKeys;
use crate::protocol::resp;
use crate::protocol::script_call::ScriptCall;
use crate::protocol::script_reply::{self, Refusal};
use crate::protocol::scripts;
use crate::transport::batch::{Batch, Reply};
use crate::transport::node::{NodeConnection, Resend};
use crate::transport::sentinel::Sentinels;

pub struct Single {
    server: Arc<Server>,
    subscriber: Arc<Subscriber>,
    /// Behind Sentinel: who say where the master is.
    sentinels: Option<Arc<Sentinels>>,
}

/// The connections and the request batches; shared with the tasks that flush the batches.
struct Server {
    connection: NodeConnection,
    /// Only for the writes that wait for replicas (see [`replicated`]); opened on first use.
    replicated: NodeConnection,
    acquires: Batch<OneKeyAcquire, Attempt>,
    replicated_acquires: Batch<ReplicatedAcquire, Attempt>,
    releases: Batch<OneKeyRelease, bool>,
    lifts: Batch<FenceLift, ()>,
}

/// A fencing counter to raise to at least `fence`, waiting in [`Server::lifts`].
struct FenceLift {
    name: String,
    counter: String,
    fence: String,
}

impl Single {
    pub fn new(
        node: &NodeConfig,
        connect_timeout: Duration,
        command_timeout: Duration,
        listener: Weak<dyn ReleaseListener>,
    ) -> Result<Self, String> {
        let connection = NodeConnection::new(node, connect_timeout, command_timeout)?;
        Ok(Self::over(connection, None, listener))
    }

    /// The master `config`'s sentinels name, followed across failovers: when they announce a
    /// new master, every connection goes there (the subscriber resubscribing every channel and
    /// waking every waiter to look again), and so does the wire ([`Topology::wire_address`]).
    pub fn behind_sentinels(
        config: &SentinelConfig,
        connect_timeout: Duration,
        command_timeout: Duration,
        listener: Weak<dyn ReleaseListener>,
    ) -> Result<Self, String> {
        let sentinels = Sentinels::new(config, connect_timeout)?;
        let connection = NodeConnection::to_master(&sentinels, connect_timeout, command_timeout);
        let single = Self::over(connection, Some(sentinels.clone()), listener);
        let (server, subscriber) = (
            Arc::downgrade(&single.server),
            Arc::downgrade(&single.subscriber),
        );
        sentinels.on_switch(Box::new(move || {
            if let Some(server) = server.upgrade() {
                server.connection.reconnect();
                server.replicated.reconnect();
            }
            if let Some(subscriber) = subscriber.upgrade() {
                subscriber.redial();
            }
        }));
        Ok(single)
    }

    fn over(
        connection: NodeConnection,
        sentinels: Option<Arc<Sentinels>>,
        listener: Weak<dyn ReleaseListener>,
    ) -> Self {
        Self {
            subscriber: Subscriber::new(
                connection.dial().clone(),
                connection.call_timeout(),
                listener,
            ),
            server: Arc::new(Server {
                replicated: connection.for_replicated_writes(),
                connection,
                acquires: Batch::default(),
                replicated_acquires: Batch::default(),
                releases: Batch::default(),
                lifts: Batch::default(),
            }),
            sentinels,
        }
    }

    /// `host:port` of the server, for errors.
    pub fn label(&self) -> &str {
        self.server.connection.label()
    }

    /// How many of `keys` are held, by anyone (see [`scripts::COUNT_HELD`]).
    pub async fn count_held(&self, keys: &LockKeys) -> Result<u64, LockError> {
        let mut call = ScriptCall::new(&scripts::COUNT_HELD, keys.redis_keys.len(), 0);
        for key in &keys.redis_keys {
            call.key(key);
        }
        let reply = self.server.run(keys.first(), &call, Resend::Never).await?;
        script_reply::count_held(reply).map_err(|refusal| self.server.refused(&keys.names, refusal))
    }

    /// Runs one script of Redlock's own (the topology builds the call and reads the reply),
    /// not resent.
    pub(super) async fn run_script(
        &self,
        key: &str,
        call: &ScriptCall<'_>,
    ) -> Result<resp::Reply, LockError> {
        self.server.run(key, call, Resend::Never).await
    }

    /// Raises the fencing counters of `keys` to at least `fence` (see [`scripts::LIFT_FENCES`]),
    /// in the background. Lifts asked for together travel as one script call, which leaves
    /// before anything asked for later.
    pub fn lift_fences(&self, keys: &LockKeys, fence: u64) {
        let fence = fence.to_string();
        for counter in &keys.fence_keys {
            let (_, first) = self.server.lifts.push(FenceLift {
                name: keys.first().to_owned(),
                counter: counter.clone(),
                fence: fence.clone(),
            });
            if first {
                tokio::spawn(self.server.clone().flush_lifts());
            }
        }
    }
}

impl Server {
    /// Runs one script call on the node (see [`NodeConnection::run`]).
    async fn run(
        &self,
        key: &str,
        call: &ScriptCall<'_>,
        resend: Resend,
    ) -> Result<resp::Reply, LockError> {
        self.connection.run(key, call, resend).await
    }

    /// Runs a call that takes a lock (never resent: its token decides), followed by `WAIT` when
    /// `replicas` are wanted: the reply, and how many replicas acknowledged it if asked.
    async fn run_for(
        &self,
        key: &str,
        call: &ScriptCall<'_>,
        replicas: Replicas,
    ) -> Result<(resp::Reply, Option<u32>), LockError> {
        if replicas.are_wanted() {
            let (reply, acknowledged) = self.run_then_wait(key, call, replicas).await?;
            return Ok((reply, Some(acknowledged)));
        }
        Ok((self.run(key, call, Resend::Never).await?, None))
    }

    /// The error of a script call for the lock of `names` that was refused with `refusal`.
    fn refused(&self, names: &[String], refusal: Refusal) -> LockError {
        self.connection.refused(names, refusal)
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

    async fn flush_acquires(self: Arc<Self>) {
        let chunks = self.acquires.take();
        join_all(chunks.into_iter().map(|chunk| self.acquire_chunk(chunk))).await;
    }

    async fn flush_releases(self: Arc<Self>) {
        let chunks = self.releases.take();
        join_all(chunks.into_iter().map(|chunk| self.release_chunk(chunk))).await;
    }

    /// Nobody waits for a lift's answer: a failed one leaves a counter as it was.
    async fn flush_lifts(self: Arc<Self>) {
        let chunks = self.lifts.take();
        let server = &self;
        join_all(chunks.into_iter().map(|chunk| async move {
            let mut call = ScriptCall::new(&scripts::LIFT_FENCES, chunk.len(), chunk.len());
            for (lift, _) in &chunk {
                call.key(&lift.counter);
            }
            for (lift, _) in &chunk {
                call.arg(&lift.fence);
            }
            let _ = server
                .run(&chunk[0].0.name, &call, Resend::OnDroppedConnection)
                .await;
        }))
        .await;
    }

    async fn acquire_chunk(self: &Arc<Self>, chunk: Vec<(OneKeyAcquire, Reply<Attempt>)>) {
        let acquires = Acquires(chunk);
        let reply = self
            .run(acquires.first_name(), &acquires.call(), Resend::Never)
            .await;
        let refused = |names: &[String], refusal| self.refused(names, refusal);
        for (attempt, reply_to, outcome) in acquires.answers(reply, &refused) {
            if let Err(Ok(Attempt::Acquired { .. }) | Err(_)) = reply_to.send(outcome) {
                // Its caller gave up while the lock was being taken: give back whatever the
                // attempt may have set (a failed one may have, before Redis refused the rest).
                let server = self.clone();
                tokio::spawn(async move {
                    let _ = server.release_one(attempt.undo()).await;
                });
            }
        }
    }

    async fn release_chunk(&self, chunk: Vec<(OneKeyRelease, Reply<bool>)>) {
        let releases = Releases(chunk);
        let reply = self
            .run(
                releases.first_name(),
                &releases.call(),
                Resend::OnDroppedConnection,
            )
            .await;
        let refused = |names: &[String], refusal| self.refused(names, refusal);
        for (_, reply_to, outcome) in releases.answers(reply, &refused) {
            let _ = reply_to.send(outcome);
        }
    }
}

impl Topology for Single {
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
                    return self.server.acquire_one_replicated(attempt, replicas).await;
                }
                return self.server.acquire_one(attempt).await;
            }
            let ttl_arg = ttl.as_millis().to_string();
            let lock_keys = keys.redis_keys.len().to_string();
            let all_keys = keys.redis_keys.len() + keys.fence_keys.len();
            let mut call = ScriptCall::new(&scripts::ACQUIRE_ALL, all_keys, 3);
            for key in keys.redis_keys.iter().chain(&keys.fence_keys) {
                call.key(key);
            }
            call.arg(token).arg(&ttl_arg).arg(&lock_keys);
            let (reply, acknowledged) = self.server.run_for(keys.first(), &call, replicas).await?;
            let attempt = script_reply::acquire_all(reply)
                .map_err(|refusal| self.server.refused(&keys.names, refusal))?;
            replicas.checked(keys.first(), attempt, acknowledged)
        })
    }

    /// Each key goes as its own release; every one must have been ours.
    fn release<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(async move {
            let releases = (0..keys.redis_keys.len()).map(|index| {
                self.server
                    .release_one(OneKeyRelease::new(keys, index, token))
            });
            all_released(join_all(releases).await, keys)
        })
    }

    fn extend<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(async move {
            let ttl_arg = ttl.as_millis().to_string();
            let mut call = ScriptCall::new(&scripts::EXTEND, keys.redis_keys.len(), 2);
            for key in &keys.redis_keys {
                call.key(key);
            }
            call.arg(token).arg(&ttl_arg);
            let reply = self
                .server
                .run(keys.first(), &call, Resend::OnDroppedConnection)
                .await?;
            script_reply::extend(reply).map_err(|refusal| self.server.refused(&keys.names, refusal))
        })
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
            // Not resent: a hand-over that ran gave the lock a new token; `Lifecycle::hand_over`
            // gives it back when the call fails.
            let (reply, acknowledged) = self.server.run_for(keys.first(), &call, replicas).await?;
            let handed = script_reply::hand_over(reply, reserve)
                .map_err(|refusal| self.server.refused(&keys.names, refusal))?;
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
                .map_err(|message| self.server.connection.failure(key, &message))
        })
    }

    fn unwatch_releases(&self, channels: &[String]) {
        self.subscriber.unwatch(channels);
    }

    fn wire_address(&self) -> Option<(String, u16)> {
        self.server.connection.dial().address_now()
    }

    fn close(&self) {
        self.server.connection.close();
        self.server.replicated.close();
        self.subscriber.close();
        if let Some(sentinels) = &self.sentinels {
            sentinels.close();
        }
    }
}
