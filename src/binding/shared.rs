//! What a locker's requests run on, shared by the JS thread (`locker.rs`, `wire.rs`) and the
//! runtime: the requests, the table of held locks, and the operations that complete them.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use ironlock_core::error::Doing;
use ironlock_core::{
    AcquireOptions, CancelToken, HeldLock, Lifecycle, LockError, LockKeys, Upkeep, Watchdog,
};
use tokio::time::Instant;

use super::completions::{Completion, Completions};
use super::layout::{AcquireFlag, CompletionStatus as Status};
use super::runtime::RUNTIME;

pub(super) struct HeldEntry {
    pub(super) lock: HeldLock,
    pub(super) watchdog: Option<Watchdog>,
}

/// Locks this process holds, by id. Entries of locks that were never released are dropped once
/// they have surely expired, so a cooldown lock per user does not grow memory forever.
#[derive(Default)]
pub(super) struct HeldTable {
    pub(super) entries: HashMap<u32, HeldEntry>,
    next_id: u32,
    prune_at: usize,
}

const PRUNE_MIN: usize = 1024;

impl HeldTable {
    fn insert(&mut self, entry: HeldEntry) -> u32 {
        if self.entries.len() >= self.prune_at.max(PRUNE_MIN) {
            let now = SystemTime::now();
            self.entries.retain(|_, held| {
                held.watchdog.is_some() || held.lock.expires_at + held.lock.ttl > now
            });
            self.prune_at = self.entries.len() * 2;
        }
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.entries.contains_key(&self.next_id) {
                break;
            }
        }
        self.entries.insert(self.next_id, entry);
        self.next_id
    }
}

/// What a locker's requests run on: the core locker, its held locks, and its completion queue.
pub(super) struct Shared {
    pub(super) locker: Arc<Lifecycle>,
    completions: Completions,
    pub(super) held: Mutex<HeldTable>,
    /// Waits that JS may still cancel, by operation id.
    pub(super) cancels: Mutex<HashMap<u32, CancelToken>>,
    /// Requests submitted and not yet started on the runtime.
    inbox: Mutex<Vec<Request>>,
    drain_scheduled: AtomicBool,
}

pub(super) fn epoch_ms(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_millis() as f64)
}

pub(super) fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

/// What the holder of a lock acquired with `flags` wants watched.
pub(super) fn upkeep(flags: f64) -> Option<Upkeep> {
    if AcquireFlag::Watchdog.is_in(flags) {
        Some(Upkeep::Extend)
    } else if AcquireFlag::WatchLease.is_in(flags) {
        Some(Upkeep::WatchOnly)
    } else {
        None
    }
}

pub(super) enum Request {
    Acquire {
        op: u32,
        keys: Arc<LockKeys>,
        options: AcquireOptions,
        watchdog: Option<Upkeep>,
    },
    /// An acquire whose first attempt (on the wire) found the lock busy: it queues.
    Queue {
        op: u32,
        keys: Arc<LockKeys>,
        options: AcquireOptions,
        watchdog: Option<Upkeep>,
        deadline: Option<Instant>,
        retry_after: Option<Duration>,
    },
    Release {
        op: u32,
        id: u32,
    },
    Extend {
        op: u32,
        id: u32,
        ttl: f64,
    },
}

impl Request {
    pub(super) fn op(&self) -> u32 {
        match self {
            Self::Acquire { op, .. }
            | Self::Queue { op, .. }
            | Self::Release { op, .. }
            | Self::Extend { op, .. } => *op,
        }
    }

    /// What the request does, as its error messages say.
    pub(super) fn doing(&self) -> Doing {
        match self {
            Self::Acquire { .. } | Self::Queue { .. } => Doing::Locking,
            Self::Release { .. } => Doing::Releasing,
            Self::Extend { .. } => Doing::Extending,
        }
    }
}

impl Shared {
    pub(super) fn new(locker: Lifecycle, completions: Completions) -> Self {
        Self {
            locker: Arc::new(locker),
            completions,
            held: Mutex::default(),
            cancels: Mutex::default(),
            inbox: Mutex::default(),
            drain_scheduled: AtomicBool::new(false),
        }
    }

    /// Stops every watchdog, ends every wait and drops the connections.
    pub(super) fn close(&self) {
        // Closing spawns clean-up tasks, which need the runtime's context on this JS thread.
        let _runtime = RUNTIME.enter();
        self.held.lock().expect("held table").entries.clear();
        self.locker.close();
        self.completions.close();
    }

    /// Hands `requests` to the runtime. Waking it costs a syscall on this thread; one pending
    /// drain serves every call that comes before it runs.
    pub(super) fn start(self: &Arc<Self>, requests: Vec<Request>) {
        self.inbox.lock().expect("inbox").extend(requests);
        if !self.drain_scheduled.swap(true, Ordering::AcqRel) {
            let shared = self.clone();
            RUNTIME.spawn(async move {
                // Cleared before the take: a call after this point schedules its own drain.
                shared.drain_scheduled.store(false, Ordering::Release);
                let requests = std::mem::take(&mut *shared.inbox.lock().expect("inbox"));
                for request in requests {
                    tokio::spawn(shared.clone().run(request));
                }
            });
        }
    }

    /// Runs one request and always completes it: a panic becomes a failed operation, so a bug
    /// surfaces as a rejected promise, never as one left pending or as a crash of the host.
    async fn run(self: Arc<Self>, request: Request) {
        let (op, doing) = (request.op(), request.doing());
        let completion = AssertUnwindSafe(self.clone().complete(request))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Completion::failed(
                    op,
                    &LockError::Connection {
                        key: String::new(),
                        message: "internal error in ironlock (please report it)".into(),
                    },
                    doing,
                )
            });
        self.completions.push(completion);
    }

    async fn complete(self: Arc<Self>, request: Request) -> Completion {
        match request {
            Request::Acquire {
                op,
                keys,
                options,
                watchdog,
            } => {
                let result = self.locker.acquire(keys, &options).await;
                self.acquired(op, result, &options, watchdog)
            }
            Request::Queue {
                op,
                keys,
                options,
                watchdog,
                deadline,
                retry_after,
            } => {
                let result = self
                    .locker
                    .queue_after_busy(keys, &options, deadline, retry_after)
                    .await;
                self.acquired(op, result, &options, watchdog)
            }
            Request::Release { op, id } => self.release(op, id).await,
            Request::Extend { op, id, ttl } => self.extend(op, id, ttl).await,
        }
    }

    /// The completion of an acquire that ended with `result`.
    pub(super) fn acquired(
        self: &Arc<Self>,
        op: u32,
        result: Result<HeldLock, LockError>,
        options: &AcquireOptions,
        watchdog: Option<Upkeep>,
    ) -> Completion {
        if options.cancel.is_some() {
            self.cancels.lock().expect("cancel table").remove(&op);
        }
        match result {
            Ok(lock) => self.hold(op, lock, watchdog),
            Err(LockError::Busy { retry_after, .. }) => Completion {
                op,
                status: Status::Busy,
                values: [
                    retry_after.map_or(-1.0, |after| after.as_millis() as f64),
                    0.0,
                    0.0,
                ],
                text: None,
                failure: None,
            },
            Err(error) => Completion::failed(op, &error, Doing::Locking),
        }
    }

    /// The lock stays known until Redis confirms, so a release that failed on a connection
    /// error can be retried.
    async fn release(&self, op: u32, id: u32) -> Completion {
        let lock = self
            .held
            .lock()
            .expect("held table")
            .entries
            .get_mut(&id)
            .map(|held| {
                held.watchdog = None;
                held.lock.clone()
            });
        let Some(lock) = lock else {
            return Completion {
                op,
                status: Status::Done,
                values: [0.0; 3],
                text: None,
                failure: None,
            };
        };
        match self.locker.release(&lock).await {
            Ok(released) => {
                self.held.lock().expect("held table").entries.remove(&id);
                Completion {
                    op,
                    status: Status::Done,
                    values: [f64::from(u8::from(released)), 0.0, 0.0],
                    text: None,
                    failure: None,
                }
            }
            Err(error) => Completion::failed(op, &error, Doing::Releasing),
        }
    }

    async fn extend(&self, op: u32, id: u32, ttl: f64) -> Completion {
        let lock = self
            .held
            .lock()
            .expect("held table")
            .entries
            .get(&id)
            .map(|held| held.lock.clone());
        let Some(lock) = lock else {
            // Released already (see `release`): JS, which knows the key, words the message.
            return Completion::failed(
                op,
                &LockError::Lost { key: String::new() },
                Doing::Extending,
            );
        };
        let ttl = if ttl > 0.0 { millis(ttl) } else { lock.ttl };
        match self.locker.extend(&lock, ttl).await {
            Ok(extended) => {
                let expires_at = epoch_ms(extended.expires_at);
                if let Some(held) = self.held.lock().expect("held table").entries.get_mut(&id) {
                    if let Some(watchdog) = &held.watchdog {
                        watchdog.extended(extended.expires_at);
                    }
                    held.lock = extended;
                }
                Completion {
                    op,
                    status: Status::Extended,
                    values: [0.0, 0.0, expires_at],
                    text: None,
                    failure: None,
                }
            }
            Err(error) => Completion::failed(op, &error, Doing::Extending),
        }
    }

    pub(super) fn hold(
        self: &Arc<Self>,
        op: u32,
        lock: HeldLock,
        watchdog: Option<Upkeep>,
    ) -> Completion {
        let values = [0.0, lock.fence as f64, epoch_ms(lock.expires_at)];
        let token = lock.token.clone();
        let mut held = self.held.lock().expect("held table");
        let id = held.insert(HeldEntry {
            lock: lock.clone(),
            watchdog: None,
        });
        if let Some(upkeep) = watchdog {
            let completions = self.completions.clone();
            let guard = Watchdog::start(self.locker.clone(), lock, upkeep, move |error| {
                let mut lost = Completion::failed(0, &error, Doing::Extending);
                lost.status = Status::Lost;
                lost.values[0] = f64::from(id);
                completions.push(lost);
            });
            if let Some(entry) = held.entries.get_mut(&id) {
                entry.watchdog = Some(guard);
            }
        }
        Completion {
            op,
            status: Status::Acquired,
            values: [f64::from(id), values[1], values[2]],
            text: Some(token),
            failure: None,
        }
    }
}
