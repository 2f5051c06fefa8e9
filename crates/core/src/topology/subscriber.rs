//! One pub/sub connection per Redis server, shared by every release channel a locker waits on.
//!
//! Channels are reference-counted: the first queue waiting on a channel subscribes it, the last
//! one to leave unsubscribes it. When the connection drops, the subscriber reconnects, subscribes
//! every channel again, and tells the listener to resync, since announcements may have been lost.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSubSink;

use super::channel_uses::ChannelUses;
use super::{BoxFuture, ReleaseListener};
use crate::transport::connect::driver_error;
use crate::transport::dial::Dial;

const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(2);

pub struct Subscriber {
    dial: Dial,
    timeout: Duration,
    listener: Weak<dyn ReleaseListener>,
    state: tokio::sync::Mutex<State>,
    /// Ends the reconnect loop's pause: the master moved, so dialling again may work now.
    redialled: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    sink: Option<PubSubSink>,
    channels: ChannelUses,
    reconnecting: bool,
    closed: bool,
    /// The task that routes the connection's messages. It owns the connection's reading half,
    /// so the connection stays open until it ends: closing aborts it.
    router: Option<tokio::task::AbortHandle>,
}

impl Subscriber {
    pub fn new(dial: Dial, timeout: Duration, listener: Weak<dyn ReleaseListener>) -> Arc<Self> {
        Arc::new(Self {
            dial,
            timeout,
            listener,
            state: tokio::sync::Mutex::default(),
            redialled: tokio::sync::Notify::new(),
        })
    }

    /// Subscribes `channels` (counting each use) and returns once Redis confirmed.
    pub async fn watch(self: &Arc<Self>, channels: &[String]) -> Result<(), String> {
        let mut state = self.state.lock().await;
        if state.closed {
            return Err("closed".into());
        }
        let mut fresh = state.channels.add(channels);
        if state.sink.is_none() {
            if state.reconnecting {
                // The reconnect loop subscribes every counted channel, these included.
                return Err("reconnecting".into());
            }
            let (sink, router) = self.connect().await.inspect_err(|_| {
                state.channels.remove(channels);
            })?;
            state.sink = Some(sink);
            state.router = Some(router);
            fresh = state.channels.all();
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let sink = state.sink.as_mut().expect("connected above");
        match tokio::time::timeout(self.timeout, sink.subscribe(&fresh)).await {
            Ok(Ok(())) => Ok(()),
            failure => {
                state.channels.remove(channels);
                Err(match failure {
                    Ok(Err(error)) => driver_error(&error),
                    _ => "subscribe timed out".into(),
                })
            }
        }
    }

    /// Drops one use of each of `channels`, unsubscribing those no one needs any more.
    pub fn unwatch(self: &Arc<Self>, channels: &[String]) {
        let subscriber = self.clone();
        let channels = channels.to_vec();
        tokio::spawn(async move {
            let mut state = subscriber.state.lock().await;
            let unused = state.channels.remove(&channels);
            if let (false, Some(sink)) = (unused.is_empty(), state.sink.as_mut()) {
                let _ = tokio::time::timeout(subscriber.timeout, sink.unsubscribe(&unused)).await;
            }
        });
    }

    pub fn close(self: &Arc<Self>) {
        let subscriber = self.clone();
        tokio::spawn(async move {
            let mut state = subscriber.state.lock().await;
            state.closed = true;
            state.sink = None;
            state.channels.clear();
            if let Some(router) = state.router.take() {
                router.abort();
            }
        });
    }

    /// Drops the connection and opens another, where the dial leads now (the master moved):
    /// every channel is subscribed again there, and the listener told to resync.
    pub fn redial(self: &Arc<Self>) {
        let subscriber = self.clone();
        tokio::spawn(async move {
            {
                let mut state = subscriber.state.lock().await;
                if state.reconnecting {
                    // Its next dial goes to the new master, now rather than after its pause.
                    subscriber.redialled.notify_one();
                    return;
                }
                if let Some(router) = state.router.take() {
                    router.abort();
                }
                state.sink = None;
            }
            subscriber.reconnect().await;
        });
    }

    /// Opens the pub/sub connection and starts the task that routes its messages.
    async fn connect(self: &Arc<Self>) -> Result<(PubSubSink, tokio::task::AbortHandle), String> {
        let connect = async {
            let dialled = self.dial.dial().await?;
            dialled
                .client
                .get_async_pubsub()
                .await
                .map_err(|error| driver_error(&error))
        };
        let pubsub = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| "pub/sub connect timed out".to_owned())??;
        let (sink, mut stream) = pubsub.split();
        let subscriber = Arc::downgrade(self);
        let listener = self.listener.clone();
        let router = tokio::spawn(async move {
            while let Some(message) = stream.next().await {
                if let (Some(listener), Ok(token)) =
                    (listener.upgrade(), message.get_payload::<String>())
                {
                    listener.released(message.get_channel_name(), &token);
                }
            }
            if let Some(subscriber) = subscriber.upgrade() {
                subscriber.reconnect().await;
            }
        });
        Ok((sink, router.abort_handle()))
    }

    /// Runs after the connection dropped: reconnects and resubscribes until it works, or until
    /// no channel is needed any more.
    ///
    /// Boxed because it and `connect` start each other.
    fn reconnect(self: Arc<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            {
                let mut state = self.state.lock().await;
                state.sink = None;
                if state.closed || state.reconnecting {
                    return;
                }
                state.reconnecting = true;
            }
            let mut delay = RECONNECT_MIN_DELAY;
            loop {
                let mut state = self.state.lock().await;
                if state.closed || state.channels.is_empty() {
                    state.reconnecting = false;
                    break;
                }
                if let Ok((mut sink, router)) = self.connect().await {
                    let channels = state.channels.all();
                    if let Ok(Ok(())) =
                        tokio::time::timeout(self.timeout, sink.subscribe(&channels)).await
                    {
                        state.sink = Some(sink);
                        state.router = Some(router);
                        state.reconnecting = false;
                        break;
                    }
                    router.abort();
                }
                drop(state);
                tokio::select! {
                    () = tokio::time::sleep(delay) => delay = (delay * 2).min(RECONNECT_MAX_DELAY),
                    () = self.redialled.notified() => delay = RECONNECT_MIN_DELAY,
                }
            }
            if let Some(listener) = self.listener.upgrade() {
                listener.resync();
            }
        })
    }
}
