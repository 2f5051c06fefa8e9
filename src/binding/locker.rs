//! `NativeLocker`: the JS-facing handle of one core locker. Calls return at once; results arrive
//! through [`Completions`]. Held locks stay on this side and JS refers to them by id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ironlock_core::{
    AcquireOptions, CancelToken, HeldLock, LockError, Locker, LockerConfig, Watchdog,
};
use napi::bindgen_prelude::{Float64Array, FnArgs, Function};
use napi_derive::napi;

use super::completions::{Completion, Completions, Status};
use super::options::LockerOptions;
use super::runtime::RUNTIME;

struct HeldEntry {
    lock: HeldLock,
    watchdog: Option<Watchdog>,
}

/// Locks this process holds, by id. Entries of locks that were never released are dropped once
/// they have surely expired, so a cooldown lock per user does not grow memory forever.
#[derive(Default)]
struct HeldTable {
    entries: HashMap<u32, HeldEntry>,
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

struct Shared {
    locker: Arc<Locker>,
    completions: Completions,
    held: Mutex<HeldTable>,
    /// Waits that JS may still cancel, by operation id.
    cancels: Mutex<HashMap<u32, CancelToken>>,
}

#[napi]
pub struct NativeLocker {
    shared: Arc<Shared>,
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
        options: LockerOptions,
        on_complete: Function<'_, FnArgs<(Float64Array, Vec<String>)>, ()>,
    ) -> napi::Result<Self> {
        let config = LockerConfig::try_from(options).map_err(napi::Error::from_reason)?;
        let locker = Locker::new(&config).map_err(napi::Error::from_reason)?;
        Ok(Self {
            shared: Arc::new(Shared {
                locker: Arc::new(locker),
                completions: Completions::new(on_complete)?,
                held: Mutex::default(),
                cancels: Mutex::default(),
            }),
        })
    }

    /// Starts acquiring `keys`. `wait` < 0 waits forever. With `cancellable`, [`Self::cancel`]
    /// with the same `op` stops the wait. With `watchdog`, the lock is extended every ttl/3 until
    /// released, and a `Lost` completion reports its loss.
    #[napi]
    pub fn acquire(
        &self,
        op: u32,
        keys: Vec<String>,
        ttl: f64,
        wait: f64,
        cancellable: bool,
        watchdog: bool,
    ) {
        let shared = self.shared.clone();
        let cancel = cancellable.then(|| {
            let token = CancelToken::default();
            shared
                .cancels
                .lock()
                .expect("cancel table")
                .insert(op, token.clone());
            token
        });
        let options = AcquireOptions {
            ttl: millis(ttl),
            wait: (wait >= 0.0).then(|| millis(wait)),
            cancel,
        };
        RUNTIME.spawn(async move {
            let keys = shared.locker.keys(keys);
            let result = shared.locker.acquire(keys, &options).await;
            if cancellable {
                shared.cancels.lock().expect("cancel table").remove(&op);
            }
            let completion = match result {
                Ok(lock) => shared.hold(op, lock, watchdog),
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
                Err(error) => Completion::failed(op, &error),
            };
            shared.completions.push(completion);
        });
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

    /// Releases lock `id`; completes with 1 when it was still ours, 0 otherwise. The lock stays
    /// known until Redis confirms, so a release that failed on a connection error can be retried.
    #[napi]
    pub fn release(&self, op: u32, id: u32) {
        let shared = self.shared.clone();
        let lock = shared
            .held
            .lock()
            .expect("held table")
            .entries
            .get_mut(&id)
            .map(|held| {
                held.watchdog = None;
                held.lock.clone()
            });
        RUNTIME.spawn(async move {
            let completion = match lock {
                None => Completion {
                    op,
                    status: Status::Done,
                    values: [0.0; 3],
                    text: None,
                },
                Some(lock) => match shared.locker.release(&lock).await {
                    Ok(released) => {
                        shared.held.lock().expect("held table").entries.remove(&id);
                        Completion {
                            op,
                            status: Status::Done,
                            values: [f64::from(u8::from(released)), 0.0, 0.0],
                            text: None,
                        }
                    }
                    Err(error) => Completion::failed(op, &error),
                },
            };
            shared.completions.push(completion);
        });
    }

    /// Extends lock `id` to live `ttl` ms from now (its own TTL when `ttl` <= 0).
    #[napi]
    pub fn extend(&self, op: u32, id: u32, ttl: f64) {
        let shared = self.shared.clone();
        let lock = shared
            .held
            .lock()
            .expect("held table")
            .entries
            .get(&id)
            .map(|held| held.lock.clone());
        RUNTIME.spawn(async move {
            let completion = match lock {
                None => Completion::failed(op, &LockError::Lost { key: String::new() }),
                Some(lock) => {
                    let ttl = if ttl > 0.0 { millis(ttl) } else { lock.ttl };
                    match shared.locker.extend(&lock, ttl).await {
                        Ok(extended) => {
                            let expires_at = epoch_ms(extended.expires_at);
                            if let Some(held) =
                                shared.held.lock().expect("held table").entries.get_mut(&id)
                            {
                                held.lock = extended;
                            }
                            Completion {
                                op,
                                status: Status::Extended,
                                values: [0.0, 0.0, expires_at],
                                text: None,
                            }
                        }
                        Err(error) => Completion::failed(op, &error),
                    }
                }
            };
            shared.completions.push(completion);
        });
    }

    /// Closes the connections; operations after this fail with a connection error.
    #[napi]
    pub fn close(&self) {
        // Closing spawns clean-up tasks, which need the runtime's context on this JS thread.
        let _runtime = RUNTIME.enter();
        self.shared.held.lock().expect("held table").entries.clear();
        self.shared.locker.close();
        self.shared.completions.close();
    }
}

impl Shared {
    fn hold(self: &Arc<Self>, op: u32, lock: HeldLock, watchdog: bool) -> Completion {
        let values = [0.0, lock.fence as f64, epoch_ms(lock.expires_at)];
        let token = lock.token.clone();
        let mut held = self.held.lock().expect("held table");
        let id = held.insert(HeldEntry {
            lock: lock.clone(),
            watchdog: None,
        });
        if watchdog {
            let completions = self.completions.clone();
            let guard = Watchdog::start(self.locker.clone(), lock, move |error| {
                let mut lost = Completion::failed(0, &error);
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
