//! [`Queue`]: the local waiters for one set of keys, the state they share, and the [`Turn`] its
//! head takes.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::hand_overs::HandOvers;
use super::holder::Holder;
use super::line::Line;
use super::releases::Releases;

pub(super) struct Queue {
    /// The queue's name among the [`super::WaitQueues`] (see `queues.rs`'s `identity`).
    pub(super) identity: String,
    pub(super) channels: Vec<String>,
    state: Mutex<QueueState>,
}

/// What the head of a queue should do next.
pub enum Turn {
    /// Try to take the lock now; after `pause`, when a hand-over chain just ended.
    Attempt { generation: u64, pause: bool },
    /// A local waiter took the lock just before us: wait for its release first.
    AwaitRelease { generation: u64, bound: Duration },
}

/// A queue's state, under one lock: four parts that change for their own reasons.
#[derive(Default)]
pub(super) struct QueueState {
    pub(super) line: Line,
    pub(super) releases: Releases,
    pub(super) holder: Holder,
    pub(super) hand_overs: HandOvers,
}

impl Queue {
    pub(super) fn new(identity: String, channels: Vec<String>) -> Self {
        Self {
            identity,
            channels,
            state: Mutex::default(),
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().expect("queue state")
    }

    /// The release of `token` was announced (on a channel when `elsewhere`): wakes the head,
    /// unless it was announced before.
    pub(super) fn announce(&self, token: &str, elsewhere: bool) {
        let mut state = self.state();
        if state.releases.announce(token, elsewhere) {
            state.line.wake_head();
        }
    }

    /// This process is about to release `token`.
    pub(super) fn expect_own_release(&self, token: &str) {
        self.state().releases.expect_own(token);
    }

    /// Announcements may have been missed: everything learned from them is forgotten and the
    /// head looks again.
    pub(super) fn resync(&self) {
        let mut state = self.state();
        state.releases.missed_some();
        state.holder.forget_taken();
        state.hand_overs.break_chain();
        state.line.wake_head();
    }
}

impl QueueState {
    /// What the head does next: attempt, or wait for the release of a lock a local waiter took.
    pub(super) fn turn(&mut self) -> Turn {
        let pause = self.hand_overs.take_pause();
        let generation = self.releases.generation();
        match self.holder.take_taken_since(generation) {
            Some(bound) => Turn::AwaitRelease { generation, bound },
            None => Turn::Attempt { generation, pause },
        }
    }

    /// Takes waiter `id` out of the queue (it took the lock for `took_lock`, if set); the next
    /// in line becomes the head. `true` when nobody is left.
    pub(super) fn leave(&mut self, id: u64, took_lock: Option<Duration>) -> bool {
        let was_head = self.line.remove(id);
        self.hand_overs.withdraw(id);
        if was_head {
            if let Some(ttl) = took_lock {
                self.holder.taken_here(self.releases.generation(), ttl);
            }
            self.line.wake_head();
        }
        self.line.is_empty()
    }
}
