//! The release channels of a Redis Cluster, subscribed with `SSUBSCRIBE`: a release is announced
//! (`SPUBLISH`) on its key's shard only, and heard on one subscriber connection per shard. The
//! connection is redis-rs's cluster connection speaking RESP3, opened when a locker first waits:
//! it routes each `SSUBSCRIBE` to the master of the channel's slot and, when it learns of a new
//! slot map, moves the subscriptions there.
//!
//! redis-rs leaves two gaps a lock cannot: a shard whose master died keeps no subscriber until
//! something refreshes the slot map, and a channel whose slot migrated away is unsubscribed by
//! the server for good. So after a node's connection drops, or the server unsubscribes a channel
//! still in use, every channel in use is subscribed again, until it works, and the listener is
//! told to resync, since announcements may have been missed meanwhile. A missed one never strands
//! a waiter: the holder's TTL bounds every sleep.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::cluster_async::ClusterConnection as SlotRoutedConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use crate::config::NodeConfig;
use crate::protocol::keys::hash_slot;
use crate::topology::channel_uses::ChannelUses;
use crate::topology::ReleaseListener;
use crate::transport::cluster::cluster_client;
use crate::transport::connect::driver_error;

const RESUBSCRIBE_MIN_DELAY: Duration = Duration::from_millis(50);
const RESUBSCRIBE_MAX_DELAY: Duration = Duration::from_secs(1);

pub struct ShardSubscriber {
    seeds: Vec<NodeConfig>,
    connect_timeout: Duration,
    command_timeout: Duration,
    listener: Weak<dyn ReleaseListener>,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    connection: Option<SlotRoutedConnection>,
    channels: ChannelUses,
    resubscribing: bool,
    closed: bool,
    /// The task that routes what the nodes push; closing aborts it.
    router: Option<tokio::task::AbortHandle>,
}

impl ShardSubscriber {
    pub fn new(
        seeds: &[NodeConfig],
        connect_timeout: Duration,
        command_timeout: Duration,
        listener: Weak<dyn ReleaseListener>,
    ) -> Arc<Self> {
        Arc::new(Self {
            seeds: seeds.to_vec(),
            connect_timeout,
            command_timeout,
            listener,
            state: tokio::sync::Mutex::default(),
        })
    }

    /// Subscribes `channels` (counting each use) and returns once their shards confirmed.
    pub async fn watch(self: &Arc<Self>, channels: &[String]) -> Result<(), String> {
        let mut state = self.state.lock().await;
        if state.closed {
            return Err("closed".into());
        }
        let fresh = state.channels.add(channels);
        let subscribed = match state.connection.clone() {
            Some(connection) => self.subscribe(connection, &fresh).await,
            None => match self.connect().await {
                Ok((connection, router)) => {
                    state.connection = Some(connection.clone());
                    state.router = Some(router);
                    self.subscribe(connection, &fresh).await
                }
                Err(error) => Err(error),
            },
        };
        if subscribed.is_err() {
            state.channels.remove(channels);
        }
        subscribed
    }

    /// Drops one use of each of `channels`, unsubscribing those no one needs any more.
    pub fn unwatch(self: &Arc<Self>, channels: &[String]) {
        let subscriber = self.clone();
        let channels = channels.to_vec();
        tokio::spawn(async move {
            let mut state = subscriber.state.lock().await;
            let unused = state.channels.remove(&channels);
            if let Some(mut connection) = state.connection.clone() {
                for group in by_slot(&unused) {
                    let unsubscribe = connection.sunsubscribe(&group);
                    let _ = tokio::time::timeout(subscriber.command_timeout, unsubscribe).await;
                }
            }
        });
    }

    pub fn close(self: &Arc<Self>) {
        let subscriber = self.clone();
        tokio::spawn(async move {
            let mut state = subscriber.state.lock().await;
            state.closed = true;
            state.connection = None;
            state.channels.clear();
            if let Some(router) = state.router.take() {
                router.abort();
            }
        });
    }

    /// Opens the RESP3 cluster connection and starts the task that routes what it pushes.
    async fn connect(
        self: &Arc<Self>,
    ) -> Result<(SlotRoutedConnection, tokio::task::AbortHandle), String> {
        let (pushes, mut pushed) = mpsc::unbounded_channel();
        let client = cluster_client(
            &self.seeds,
            self.connect_timeout,
            self.command_timeout,
            Some(pushes),
        )?;
        let connection = tokio::time::timeout(self.connect_timeout, client.get_async_connection())
            .await
            .map_err(|_| "pub/sub connect timed out".to_owned())?
            .map_err(|error| driver_error(&error))?;
        let subscriber = Arc::downgrade(self);
        let router = tokio::spawn(async move {
            while let Some(push) = pushed.recv().await {
                let Some(subscriber) = subscriber.upgrade() else {
                    break;
                };
                subscriber.route(push);
            }
        });
        Ok((connection, router.abort_handle()))
    }

    /// Subscribes `channels` on their shards, one `SSUBSCRIBE` per slot (as Redis requires).
    async fn subscribe(
        &self,
        mut connection: SlotRoutedConnection,
        channels: &[String],
    ) -> Result<(), String> {
        for group in by_slot(channels) {
            let subscribe = connection.ssubscribe(&group);
            match tokio::time::timeout(self.connect_timeout + self.command_timeout, subscribe).await
            {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(driver_error(&error)),
                Err(_) => return Err("subscribe timed out".into()),
            }
        }
        Ok(())
    }

    /// What one push means for the waiters.
    fn route(self: &Arc<Self>, push: PushInfo) {
        match push.kind {
            PushKind::SMessage => {
                if let (Some(listener), [channel, token]) =
                    (self.listener.upgrade(), &push.data[..])
                {
                    if let (Some(channel), Some(token)) = (text(channel), text(token)) {
                        listener.released(&channel, &token);
                    }
                }
            }
            // A node's connection dropped (its shard may be failing over), or a shard gave up a
            // channel (its slot migrated): every channel in use goes again, wherever it lives now.
            PushKind::Disconnection | PushKind::SUnsubscribe => {
                tokio::spawn(self.clone().resubscribe(push));
            }
            _ => {}
        }
    }

    /// Subscribes every channel in use again, until it works or none is needed, then tells the
    /// listener to resync. An `SUNSUBSCRIBE` push of a channel no longer in use is this locker's
    /// own unsubscribe: nothing to do.
    async fn resubscribe(self: Arc<Self>, cause: PushInfo) {
        {
            let mut state = self.state.lock().await;
            if cause.kind == PushKind::SUnsubscribe {
                let in_use = cause.data.first().and_then(text);
                if !in_use.is_some_and(|channel| state.channels.contains(&channel)) {
                    return;
                }
            }
            if state.resubscribing || state.closed {
                return;
            }
            state.resubscribing = true;
        }
        let mut delay = RESUBSCRIBE_MIN_DELAY;
        loop {
            let mut state = self.state.lock().await;
            let (Some(connection), false) = (state.connection.clone(), state.closed) else {
                state.resubscribing = false;
                return;
            };
            let channels = state.channels.all();
            if self.subscribe(connection, &channels).await.is_ok() {
                state.resubscribing = false;
                break;
            }
            drop(state);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RESUBSCRIBE_MAX_DELAY);
        }
        if let Some(listener) = self.listener.upgrade() {
            listener.resync();
        }
    }
}

/// `channels` grouped by hash slot: one subscribe command each.
fn by_slot(channels: &[String]) -> Vec<Vec<&str>> {
    let mut groups: Vec<(u16, Vec<&str>)> = Vec::new();
    for channel in channels {
        let slot = hash_slot(channel);
        match groups.iter_mut().find(|(each, _)| *each == slot) {
            Some((_, group)) => group.push(channel),
            None => groups.push((slot, vec![channel])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_subscribe_per_slot() {
        let channels: Vec<String> = ["{a}:released", "{b}:released", "{a}:x:released"]
            .map(String::from)
            .to_vec();
        let groups = by_slot(&channels);
        assert_eq!(
            groups,
            [vec!["{a}:released", "{a}:x:released"], vec!["{b}:released"]]
        );
    }
}
