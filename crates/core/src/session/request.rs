//! What a [`Locker`](super::locker::Locker) is asked to do, and what it answers.

use std::time::{Duration, SystemTime};

use crate::error::{Doing, LockError};
use crate::session::watchdog::Upkeep;
use crate::topology::Replicas;

/// One operation asked of a locker. `op` is the caller's number for it; its [`Completion`]
/// carries it back. Held locks are named by the `id` their acquisition completed with.
#[derive(Debug)]
pub enum Request {
    Acquire {
        op: u32,
        /// The lock's keys, as the caller named them (before the key prefix).
        names: Vec<String>,
        ttl: Duration,
        /// How long to wait while the lock is busy; `None` waits until acquired or cancelled.
        wait: Option<Duration>,
        /// Whether [`Locker::cancel`](super::locker::Locker::cancel) may end the wait.
        cancellable: bool,
        /// What to watch while the lock is held.
        upkeep: Option<Upkeep>,
        /// How many replicas must acknowledge the lock before it is granted.
        replicas: Replicas,
    },
    Release {
        op: u32,
        id: u32,
    },
    Extend {
        op: u32,
        id: u32,
        /// The new TTL; `None` renews the lock's own.
        ttl: Option<Duration>,
        /// The lock's first key, as the caller named it: its error names it should the lock be
        /// released already, when the locker no longer knows it.
        key: String,
    },
    /// Stops extending lock `id` and lets its lease run out: its loss is still reported when the
    /// lease can have ended, and a release after that is answered `false` without reaching
    /// Redis, where the lock lapses by itself. Released before then, it is released as usual.
    /// Takes effect at once and completes nothing; a lock without a watchdog is unaffected.
    LetLapse {
        id: u32,
    },
}

/// A finished operation, or (with `op` 0) a held lock the watchdog lost.
#[derive(Debug)]
pub struct Completion {
    pub op: u32,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub enum Outcome {
    /// The lock is held; `id` names it in later requests.
    Acquired {
        id: u32,
        token: String,
        fence: u64,
        /// Until when the lock is surely still ours.
        expires_at: SystemTime,
    },
    /// The wait ended with the lock still busy (a busy acquire is not an error to its caller,
    /// who words it). `retry_after`: the holder's remaining TTL, `None` when it has none.
    Busy {
        retry_after: Option<Duration>,
    },
    /// `released`: the lock was still ours and is now gone.
    Released {
        released: bool,
    },
    Extended {
        expires_at: SystemTime,
    },
    Failed {
        error: LockError,
        doing: Doing,
    },
    /// The watchdog found lock `id` lost; its `op` is 0.
    Lost {
        id: u32,
        error: LockError,
    },
}

impl Outcome {
    /// The error of a failed operation or a lost lock, and what it was doing, as its message
    /// says.
    pub fn failure(&self) -> Option<(&LockError, Doing)> {
        match self {
            Self::Failed { error, doing } => Some((error, *doing)),
            Self::Lost { error, .. } => Some((error, Doing::Extending)),
            _ => None,
        }
    }
}

impl Completion {
    pub(super) fn failed(op: u32, error: LockError, doing: Doing) -> Self {
        Self {
            op,
            outcome: Outcome::Failed { error, doing },
        }
    }
}

/// Where a locker delivers the completions of operations that finish on the runtime (the
/// binding batches them to JS). Those that finish on the wire come back from the wire call.
pub trait CompletionSink: Send + Sync + 'static {
    fn push(&self, completion: Completion);
    /// The locker closed: nothing more is delivered, and whatever the sink holds open (for the
    /// binding, a threadsafe function) is let go.
    fn close(&self);
}
