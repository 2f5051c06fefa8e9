//! The clean-ups a locker owes after whoever needed them has gone: giving back a lock taken, or
//! perhaps taken, for a caller that no longer wants it, and giving back a queue's use of its
//! release channels.
//!
//! Most arise in `Drop` (of a waiter's future, a ticket, a hand-over nobody received), on whatever
//! thread dropped it, where no runtime may be at hand. So they are never started there: they are
//! queued, which needs nothing but the queue, and one task on the locker's runtime performs them.
//! That task ends once the locker and everything that can still queue a clean-up have gone, after
//! performing what was queued.

use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::protocol::keys::LockKeys;
use crate::topology::Topology;

/// Told of each lock a give-back deleted: its keys and the token that held it.
type Announce = dyn Fn(&LockKeys, &str) + Send + Sync;

enum CleanUp {
    /// Deletes whatever `token` holds of `keys`.
    GiveBack { keys: Arc<LockKeys>, token: String },
    /// Gives back one use of each of `channels` (see [`Topology::unwatch_releases`]).
    Unwatch { channels: Vec<String> },
}

/// Where clean-ups are queued, from any thread, at any time.
#[derive(Clone)]
pub struct CleanUps {
    queue: mpsc::UnboundedSender<CleanUp>,
}

impl CleanUps {
    /// Starts performing clean-ups on `runtime`, over `topology`; a give-back that deleted a lock
    /// is passed to `announce` (which tells the local waiters, as any release here does).
    pub(super) fn start(
        runtime: &Handle,
        topology: Arc<dyn Topology>,
        announce: impl Fn(&LockKeys, &str) + Send + Sync + 'static,
    ) -> Self {
        let (queue, queued) = mpsc::unbounded_channel();
        runtime.spawn(perform(queued, topology, Arc::new(announce)));
        Self { queue }
    }

    /// Deletes whatever `token` holds of `keys`: the undo of an attempt or a hand-over whose
    /// caller is gone or whose outcome is unknown (every attempt has a token of its own, so this
    /// never deletes anyone else's lock).
    pub fn give_back(&self, keys: Arc<LockKeys>, token: String) {
        self.queue_up(CleanUp::GiveBack { keys, token });
    }

    /// Gives back one use of each of `channels`.
    pub fn unwatch(&self, channels: Vec<String>) {
        self.queue_up(CleanUp::Unwatch { channels });
    }

    fn queue_up(&self, clean_up: CleanUp) {
        // Fails only once the runtime has shut down, with the task and its connections: a lock
        // left then lapses by its TTL, as any lock of a process that stops.
        let _ = self.queue.send(clean_up);
    }
}

/// Performs the clean-ups as they arrive, each give-back in a task of its own so that one slow
/// node does not hold up the others (every Redis call has its timeout).
async fn perform(
    mut queued: mpsc::UnboundedReceiver<CleanUp>,
    topology: Arc<dyn Topology>,
    announce: Arc<Announce>,
) {
    while let Some(clean_up) = queued.recv().await {
        match clean_up {
            CleanUp::GiveBack { keys, token } => {
                let (topology, announce) = (topology.clone(), announce.clone());
                tokio::spawn(async move {
                    if topology.release(&keys, &token).await == Ok(true) {
                        announce(&keys, &token);
                    }
                });
            }
            CleanUp::Unwatch { channels } => topology.unwatch_releases(&channels),
        }
    }
}
