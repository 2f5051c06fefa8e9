//! What a locker's operations run on: the lifecycle of its locks, the locks it holds, the waits
//! that may be cancelled, and the runtime's inbox. Operations that run on the runtime complete
//! through the [`CompletionSink`].

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::error::{Doing, LockError};
use crate::protocol::keys::LockKeys;
use crate::protocol::lock::HeldLock;
use crate::session::acquire::FirstTurn;
use crate::session::cancel::CancelToken;
use crate::session::held::{HeldEntry, HeldTable};
use crate::session::lifecycle::Lifecycle;
use crate::session::options::AcquireOptions;
use crate::session::request::{Completion, CompletionSink, Outcome, Request};
use crate::session::wait::FirstAttempt;
use crate::session::watchdog::{Upkeep, Watchdog};
use crate::transport::slot_map::SlotMap;

pub(super) struct Operations {
    pub(super) lifecycle: Arc<Lifecycle>,
    sink: Arc<dyn CompletionSink>,
    /// Where waits, watchdogs and give-backs run.
    pub(super) runtime: Handle,
    pub(super) held: Mutex<HeldTable>,
    /// Waits that may still be cancelled, by operation.
    cancels: Mutex<HashMap<u32, CancelToken>>,
    /// Operations handed to the runtime and not yet started there.
    inbox: Mutex<Vec<Job>>,
    drain_scheduled: AtomicBool,
}

/// An operation as it runs on the runtime.
pub(super) enum Job {
    /// An acquire, with the first turn it took when it arrived.
    Acquire {
        op: u32,
        keys: Arc<LockKeys>,
        options: AcquireOptions,
        upkeep: Option<Upkeep>,
        first: FirstTurn,
    },
    /// An acquire whose first attempt (on the wire) found the lock busy: it queues, at the
    /// place the attempt held (`place`) when it holds one.
    Queue {
        op: u32,
        keys: Arc<LockKeys>,
        options: AcquireOptions,
        upkeep: Option<Upkeep>,
        deadline: Option<Instant>,
        retry_after: Option<Duration>,
        place: Option<FirstAttempt>,
    },
    Release {
        op: u32,
        id: u32,
    },
    Extend {
        op: u32,
        id: u32,
        ttl: Option<Duration>,
        key: String,
    },
}

impl Job {
    fn op(&self) -> u32 {
        match self {
            Self::Acquire { op, .. }
            | Self::Queue { op, .. }
            | Self::Release { op, .. }
            | Self::Extend { op, .. } => *op,
        }
    }

    /// The key its error names should it fail unexpectedly (a release's, from the lock it
    /// releases while the locker still knows it).
    fn key(&self, held: &HeldTable) -> String {
        match self {
            Self::Acquire { keys, .. } | Self::Queue { keys, .. } => keys.first().to_owned(),
            Self::Release { id, .. } => held
                .get(*id)
                .map_or_else(String::new, |entry| entry.lock.key().to_owned()),
            Self::Extend { key, .. } => key.clone(),
        }
    }

    /// What the operation does, as its error messages say.
    fn doing(&self) -> Doing {
        match self {
            Self::Acquire { .. } | Self::Queue { .. } => Doing::Locking,
            Self::Release { .. } => Doing::Releasing,
            Self::Extend { .. } => Doing::Extending,
        }
    }
}

impl Operations {
    pub(super) fn new(
        lifecycle: Lifecycle,
        sink: Arc<dyn CompletionSink>,
        runtime: Handle,
    ) -> Self {
        Self {
            lifecycle: Arc::new(lifecycle),
            sink,
            runtime,
            held: Mutex::default(),
            cancels: Mutex::default(),
            inbox: Mutex::default(),
            drain_scheduled: AtomicBool::new(false),
        }
    }

    /// The job that runs `request`; `None` for a request that takes effect at once. An acquire's
    /// cancel is registered before the wait starts, so a cancel can never come too early.
    pub(super) fn job(&self, request: Request) -> Option<Job> {
        let job = match request {
            Request::Acquire {
                op,
                names,
                ttl,
                wait,
                cancellable,
                upkeep,
                replicas,
            } => {
                let cancel = cancellable.then(|| {
                    let token = CancelToken::default();
                    self.cancels
                        .lock()
                        .expect("cancel table")
                        .insert(op, token.clone());
                    token
                });
                let keys = self.lifecycle.keys(names);
                let options = AcquireOptions {
                    ttl,
                    wait,
                    cancel,
                    replicas,
                };
                let first = self.lifecycle.first_turn(&keys, &options);
                Job::Acquire {
                    op,
                    keys,
                    options,
                    upkeep,
                    first,
                }
            }
            Request::Release { op, id } => Job::Release { op, id },
            Request::Extend { op, id, ttl, key } => Job::Extend { op, id, ttl, key },
            Request::LetLapse { id } => {
                let held = self.held.lock().expect("held table");
                if let Some(watchdog) = held.get(id).and_then(|entry| entry.watchdog.as_ref()) {
                    watchdog.let_lapse();
                }
                return None;
            }
        };
        Some(job)
    }

    /// Ends the wait of operation `op`, if it still waits. Its caller cancels only before it has
    /// read the acquire's completion: a lock granted meanwhile, whose completion is still on its
    /// way, is given back here.
    pub(super) fn cancel(self: &Arc<Self>, op: u32) {
        if let Some(token) = self.cancels.lock().expect("cancel table").remove(&op) {
            token.cancel();
            return;
        }
        let granted = self.held.lock().expect("held table").granted_to(op);
        if let Some(id) = granted {
            // Op 0: nobody waits for this release.
            self.start(vec![Job::Release { op: 0, id }]);
        }
    }

    /// Where the wire connects now (see [`Topology::wire_address`]).
    pub(super) fn wire_address(&self) -> Option<(String, u16)> {
        self.lifecycle.topology.wire_address()
    }

    /// The slot map the wire routes a Redis Cluster's calls by (see
    /// [`crate::topology::Topology::wire_slot_map`]); a first read starts on the runtime.
    pub(super) fn wire_slot_map(&self) -> Option<Arc<SlotMap>> {
        let _runtime = self.runtime.enter();
        self.lifecycle.topology.wire_slot_map()
    }

    /// The wire found the slot map stale: it is read again, on the runtime.
    pub(super) fn slot_map_stale(&self) {
        let _runtime = self.runtime.enter();
        self.lifecycle.topology.slot_map_stale();
    }

    /// Stops every watchdog, ends every wait and drops the connections.
    pub(super) fn close(&self) {
        // Closing spawns clean-up tasks, which need the runtime's context on the caller's thread.
        let _runtime = self.runtime.enter();
        self.held.lock().expect("held table").clear();
        self.lifecycle.close();
        self.sink.close();
    }

    /// Hands `jobs` to the runtime. Waking it costs a syscall on this thread; one pending drain
    /// serves every call that comes before it runs.
    pub(super) fn start(self: &Arc<Self>, jobs: Vec<Job>) {
        self.inbox.lock().expect("inbox").extend(jobs);
        if !self.drain_scheduled.swap(true, Ordering::AcqRel) {
            let operations = self.clone();
            self.runtime.spawn(async move {
                // Cleared before the take: a call after this point schedules its own drain.
                operations.drain_scheduled.store(false, Ordering::Release);
                let jobs = std::mem::take(&mut *operations.inbox.lock().expect("inbox"));
                for job in jobs {
                    tokio::spawn(operations.clone().run(job));
                }
            });
        }
    }

    /// Runs one job and always completes it: a panic becomes a failed operation, so a bug
    /// surfaces as a rejected promise, never as one left pending or as a crash of the host.
    async fn run(self: Arc<Self>, job: Job) {
        let (op, doing) = (job.op(), job.doing());
        let key = job.key(&self.held.lock().expect("held table"));
        let completion = AssertUnwindSafe(self.clone().complete(job))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                let what = "the operation panicked".into();
                Completion::failed(op, LockError::Internal { key, what }, doing)
            });
        self.sink.push(completion);
    }

    async fn complete(self: Arc<Self>, job: Job) -> Completion {
        match job {
            Job::Acquire {
                op,
                keys,
                options,
                upkeep,
                first,
            } => {
                let result = self.lifecycle.acquire_from(keys, &options, first).await;
                self.acquired(op, result, &options, upkeep)
            }
            Job::Queue {
                op,
                keys,
                options,
                upkeep,
                deadline,
                retry_after,
                place,
            } => {
                let result = self
                    .lifecycle
                    .queue_after_busy(keys, &options, deadline, retry_after, place)
                    .await;
                self.acquired(op, result, &options, upkeep)
            }
            Job::Release { op, id } => self.release(op, id).await,
            Job::Extend { op, id, ttl, key } => self.extend(op, id, ttl, key).await,
        }
    }

    /// The completion of an acquire that ended with `result`.
    pub(super) fn acquired(
        self: &Arc<Self>,
        op: u32,
        result: Result<HeldLock, LockError>,
        options: &AcquireOptions,
        upkeep: Option<Upkeep>,
    ) -> Completion {
        let cancellable = options.cancel.is_some();
        if cancellable {
            self.cancels.lock().expect("cancel table").remove(&op);
        }
        match result {
            Ok(lock) => self.hold(op, lock, upkeep, cancellable),
            Err(LockError::Busy { retry_after, .. }) => Completion {
                op,
                outcome: Outcome::Busy { retry_after },
            },
            Err(error) => Completion::failed(op, error, Doing::Locking),
        }
    }

    /// The lock stays known until Redis confirms, so a release that failed on a connection
    /// error can be retried. A lock that has lapsed is forgotten without a word to Redis.
    async fn release(&self, op: u32, id: u32) -> Completion {
        let lock = {
            let mut held = self.held.lock().expect("held table");
            match held.get_mut(id) {
                Some(entry) if entry.has_lapsed() => {
                    held.remove(id);
                    None
                }
                Some(entry) => {
                    entry.watchdog = None;
                    Some(entry.lock.clone())
                }
                None => None,
            }
        };
        let Some(lock) = lock else {
            return Completion {
                op,
                outcome: Outcome::Released { released: false },
            };
        };
        match self.lifecycle.release(&lock).await {
            Ok(released) => {
                self.held.lock().expect("held table").remove(id);
                Completion {
                    op,
                    outcome: Outcome::Released { released },
                }
            }
            Err(error) => Completion::failed(op, error, Doing::Releasing),
        }
    }

    async fn extend(&self, op: u32, id: u32, ttl: Option<Duration>, key: String) -> Completion {
        let lock = self
            .held
            .lock()
            .expect("held table")
            .get(id)
            .map(|held| held.lock.clone());
        let Some(lock) = lock else {
            // Its record goes once a release has been answered (see `release`).
            let error = LockError::Released { key };
            return Completion::failed(op, error, Doing::Extending);
        };
        let ttl = ttl.unwrap_or(lock.ttl);
        match self.lifecycle.extend(&lock, ttl).await {
            Ok(extended) => {
                let expires_at = extended.expires_at;
                if let Some(held) = self.held.lock().expect("held table").get_mut(id) {
                    if let Some(watchdog) = &held.watchdog {
                        watchdog.extended(expires_at);
                    }
                    held.lock = extended;
                }
                Completion {
                    op,
                    outcome: Outcome::Extended { expires_at },
                }
            }
            Err(error) => Completion::failed(op, error, Doing::Extending),
        }
    }

    /// Records `lock` as held (watched as `upkeep` says) and completes its acquire; a
    /// `cancellable` one stays known by its operation (see [`Operations::cancel`]).
    fn hold(
        self: &Arc<Self>,
        op: u32,
        lock: HeldLock,
        upkeep: Option<Upkeep>,
        cancellable: bool,
    ) -> Completion {
        let outcome = |id| Outcome::Acquired {
            id,
            token: lock.token.clone(),
            fence: lock.fence,
            expires_at: lock.expires_at,
        };
        let mut held = self.held.lock().expect("held table");
        let id = held.insert(HeldEntry {
            lock: lock.clone(),
            watchdog: None,
            granted_to: cancellable.then_some(op),
        });
        let outcome = outcome(id);
        if let Some(upkeep) = upkeep {
            let sink = self.sink.clone();
            let watchdog = Watchdog::start(self.lifecycle.clone(), lock, upkeep, move |error| {
                sink.push(Completion {
                    op: 0,
                    outcome: Outcome::Lost { id, error },
                });
            });
            if let Some(entry) = held.get_mut(id) {
                entry.watchdog = Some(watchdog);
            }
        }
        Completion { op, outcome }
    }
}
