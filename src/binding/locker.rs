//! `NativeLocker`: the JS-facing handle of one core locker. Calls return at once; results arrive
//! through [`Completions`]. Held locks stay on this side and JS refers to them by id.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use ironlock_core::error::Doing;
use ironlock_core::wire::Wire;
use ironlock_core::{
    AcquireOptions, CancelToken, HeldLock, LockError, LockKeys, Locker, LockerConfig, Target,
    Upkeep, Watchdog,
};
use napi::bindgen_prelude::{BufferSlice, Float64ArraySlice, FnArgs, Function};
use napi::{CleanupEnvHook, Env};
use napi_derive::napi;
use tokio::time::Instant;

use super::completions::{Completion, Completions, Status};
use super::copied::{CopiedBytes, CopiedNumbers};
use super::options::LockerOptions;
use super::runtime::RUNTIME;
use super::wire::{LockWire, WireOutput};

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

pub(super) struct Shared {
    pub(super) locker: Arc<Locker>,
    completions: Completions,
    pub(super) held: Mutex<HeldTable>,
    /// Waits that JS may still cancel, by operation id.
    pub(super) cancels: Mutex<HashMap<u32, CancelToken>>,
    /// Requests submitted and not yet started on the runtime.
    inbox: Mutex<Vec<Request>>,
    drain_scheduled: AtomicBool,
}

#[napi]
pub struct NativeLocker {
    pub(super) shared: Arc<Shared>,
    /// Closes the locker when its JS environment goes away without `close()` (a worker thread
    /// terminated mid-operation): its connections live on the process-wide runtime and would
    /// outlive the worker. JS-thread only.
    teardown: RefCell<Option<CleanupEnvHook<Weak<Shared>>>>,
    /// One Redis: JS may carry one-key acquires and releases on a socket of its own (see
    /// `lib/wire.js`); this is that connection's protocol state. JS-thread only.
    pub(super) wire: Option<RefCell<LockWire>>,
}

fn epoch_ms(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_millis() as f64)
}

fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

#[napi]
impl NativeLocker {
    /// `onComplete(numbers, texts)` receives batches of finished operations.
    #[napi(constructor)]
    pub fn new(
        env: Env,
        options: LockerOptions,
        #[napi(ts_arg_type = "(numbers: Float64Array, texts: Array<string>) => void")]
        on_complete: Function<'_, FnArgs<(CopiedNumbers, Vec<String>)>, ()>,
    ) -> napi::Result<Self> {
        let config = LockerConfig::try_from(options).map_err(napi::Error::from_reason)?;
        let locker = Locker::new(&config).map_err(napi::Error::from_reason)?;
        let wire = match &config.target {
            Target::Single(node) => Some(RefCell::new(Wire::new(node, config.drift_factor))),
            _ => None,
        };
        let shared = Arc::new(Shared {
            locker: Arc::new(locker),
            completions: Completions::new(on_complete)?,
            held: Mutex::default(),
            cancels: Mutex::default(),
            inbox: Mutex::default(),
            drain_scheduled: AtomicBool::new(false),
        });
        let teardown = env.add_env_cleanup_hook(Arc::downgrade(&shared), |shared| {
            if let Some(shared) = shared.upgrade() {
                shared.close();
            }
        })?;
        Ok(Self {
            wire,
            shared,
            teardown: RefCell::new(Some(teardown)),
        })
    }

    /// Starts a batch of operations: JS queues the calls of one tick and hands them over at once,
    /// so a burst costs one napi call, one wake of the runtime and one socket write.
    ///
    /// `numbers` holds [`REQUEST_FIELDS`] numbers per operation, `[kind, op, a, b, c, key count]`:
    /// - acquire (0): `a` ttl ms, `b` wait ms (< 0 waits forever), `c` flags: 1 cancellable (see
    ///   [`Self::cancel`]), 2 watchdog (extend every ttl/3 until released; a `Lost` completion
    ///   reports its loss, at the latest when the lease can have ended), 4 lease watch (only
    ///   the `Lost` completion, no extensions). Its keys come next in `keys`.
    /// - release (1): `a` lock id. Completes with 1 when the lock was still ours, else 0.
    /// - extend (2): `a` lock id, `b` ttl ms (<= 0: the lock's own TTL).
    ///
    /// Returns the bytes JS must write to the wire's socket, when the wire is ready and took some
    /// of the requests: one-key acquires that no local request is ahead of, and releases of
    /// one-key locks nobody here waits for. Everything else runs on the runtime.
    #[napi(ts_return_type = "Buffer | null")]
    pub fn submit(
        &self,
        numbers: Float64ArraySlice<'_>,
        keys: Vec<String>,
    ) -> napi::Result<Option<CopiedBytes>> {
        let mut wire = self
            .wire
            .as_ref()
            .map(RefCell::borrow_mut)
            .filter(|wire| wire.is_ready());
        // Refused whole, before anything starts: JS then submits the requests one by one.
        let kinds = numbers
            .chunks_exact(REQUEST_FIELDS)
            .map(|fields| RequestKind::try_from(fields[0]))
            .collect::<napi::Result<Vec<_>>>()?;
        let mut keys = keys.into_iter();
        let mut requests = Vec::with_capacity(kinds.len());
        for (fields, kind) in numbers.chunks_exact(REQUEST_FIELDS).zip(kinds) {
            let op = fields[1] as u32;
            let request = match kind {
                RequestKind::Acquire => {
                    let flags = fields[4] as u8;
                    let cancel = (flags & CANCELLABLE != 0).then(|| self.cancellable(op));
                    Request::Acquire {
                        op,
                        keys: self
                            .shared
                            .locker
                            .keys(keys.by_ref().take(fields[5] as usize).collect()),
                        options: AcquireOptions {
                            ttl: millis(fields[2]),
                            wait: (fields[3] >= 0.0).then(|| millis(fields[3])),
                            cancel,
                        },
                        watchdog: upkeep(flags),
                    }
                }
                RequestKind::Release => Request::Release {
                    op,
                    id: fields[2] as u32,
                },
                RequestKind::Extend => Request::Extend {
                    op,
                    id: fields[2] as u32,
                    ttl: fields[3],
                },
            };
            match &mut wire {
                Some(wire) => requests.extend(self.onto_wire(wire, request)),
                None => requests.push(request),
            }
        }
        if !requests.is_empty() {
            self.shared.start(requests);
        }
        Ok(wire.and_then(|mut wire| {
            let mut out = Vec::new();
            wire.flush(&mut out);
            (!out.is_empty()).then_some(CopiedBytes(out))
        }))
    }

    /// The wire's socket connected: returns its first bytes (AUTH, SELECT; maybe none).
    #[napi(ts_return_type = "Buffer")]
    pub fn wire_connected(&self) -> CopiedBytes {
        let mut out = Vec::new();
        if let Some(wire) = &self.wire {
            wire.borrow_mut().connected(&mut out);
        }
        CopiedBytes(out)
    }

    /// Bytes read from the wire's socket: the operations they finish, and what to write back.
    #[napi]
    pub fn wire_feed(&self, bytes: BufferSlice<'_>) -> napi::Result<WireOutput> {
        let Some(wire) = &self.wire else {
            return Err(no_wire());
        };
        let mut wire = wire.borrow_mut();
        let mut out = Vec::new();
        let mut events = Vec::new();
        let broken = wire.feed(&bytes, &mut out, &mut events).err();
        if let Some(reason) = &broken {
            wire.fail(reason, false, &mut events);
        }
        Ok(self.wire_output(&wire, events, out, broken))
    }

    /// The wire's socket closed or failed. With `retry` (the socket closed under it, Redis may
    /// well be back at once), what it carried runs again on the runtime's connection, after
    /// giving back whatever a sent attempt may have taken; without (a command timed out), it
    /// fails with `reason`.
    #[napi]
    pub fn wire_fail(&self, reason: String, retry: bool) -> napi::Result<WireOutput> {
        let Some(wire) = &self.wire else {
            return Err(no_wire());
        };
        let mut wire = wire.borrow_mut();
        let mut events = Vec::new();
        wire.fail(&reason, false, &mut events);
        if retry {
            events = self.retry_on_runtime(events);
        }
        Ok(self.wire_output(&wire, events, Vec::new(), None))
    }

    /// The locker is closing: what the wire carried fails as closed.
    #[napi]
    pub fn wire_close(&self) -> napi::Result<WireOutput> {
        let Some(wire) = &self.wire else {
            return Err(no_wire());
        };
        let mut wire = wire.borrow_mut();
        let mut events = Vec::new();
        wire.fail("the locker was closed", true, &mut events);
        Ok(self.wire_output(&wire, events, Vec::new(), None))
    }

    /// Stops the wait of operation `op`, if it is still waiting.
    #[napi]
    pub fn cancel(&self, op: u32) {
        if let Some(token) = self
            .shared
            .cancels
            .lock()
            .expect("cancel table")
            .remove(&op)
        {
            token.cancel();
        }
    }

    /// Closes the connections; operations after this fail with a connection error.
    #[napi]
    pub fn close(&self, env: Env) -> napi::Result<()> {
        if let Some(teardown) = self.teardown.borrow_mut().take() {
            env.remove_env_cleanup_hook(teardown)?;
        }
        self.shared.close();
        Ok(())
    }
}

fn no_wire() -> napi::Error {
    napi::Error::from_reason("this locker has no wire: its target is not one Redis")
}

/// Numbers per request in [`NativeLocker::submit`]: kind, op, three values, key count.
const REQUEST_FIELDS: usize = 6;
/// The first number of each request in [`NativeLocker::submit`].
enum RequestKind {
    Acquire,
    Release,
    Extend,
}

impl TryFrom<f64> for RequestKind {
    type Error = napi::Error;

    fn try_from(kind: f64) -> napi::Result<Self> {
        match kind as u8 {
            0 => Ok(Self::Acquire),
            1 => Ok(Self::Release),
            2 => Ok(Self::Extend),
            other => Err(napi::Error::from_reason(format!(
                "unknown request kind {other}"
            ))),
        }
    }
}

const CANCELLABLE: u8 = 1;
const WATCHDOG: u8 = 2;
const WATCH_LEASE: u8 = 4;

/// What the holder of a lock acquired with `flags` wants watched.
fn upkeep(flags: u8) -> Option<Upkeep> {
    if flags & WATCHDOG != 0 {
        Some(Upkeep::Extend)
    } else if flags & WATCH_LEASE != 0 {
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
    fn op(&self) -> u32 {
        match self {
            Self::Acquire { op, .. }
            | Self::Queue { op, .. }
            | Self::Release { op, .. }
            | Self::Extend { op, .. } => *op,
        }
    }

    /// What the request does, as its error messages say.
    fn doing(&self) -> Doing {
        match self {
            Self::Acquire { .. } | Self::Queue { .. } => Doing::Locking,
            Self::Release { .. } => Doing::Releasing,
            Self::Extend { .. } => Doing::Extending,
        }
    }
}

impl NativeLocker {
    /// Registered on the JS thread, before the wait starts, so a cancel can never come too early.
    fn cancellable(&self, op: u32) -> CancelToken {
        let token = CancelToken::default();
        self.shared
            .cancels
            .lock()
            .expect("cancel table")
            .insert(op, token.clone());
        token
    }
}

impl Shared {
    /// Stops every watchdog, ends every wait and drops the connections.
    fn close(&self) {
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
        }
    }
}
