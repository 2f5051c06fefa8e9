//! The binding's side of the wire (`ironlock_core::wire`, driven by `lib/wire.js`): which requests
//! it carries, and what its events become.

use std::cell::RefMut;
use std::sync::Arc;
use std::time::Duration;

use ironlock_core::error::Doing;
use ironlock_core::transport::wire::{Event, Wire};
use ironlock_core::{AcquireOptions, FirstAttempt, LockError, LockKeys, Upkeep};
use napi_derive::napi;
use tokio::time::Instant;

use super::completions::{flatten, Completion, NativeFailure};
use super::copied::{CopiedBytes, CopiedNumbers};
use super::layout::CompletionStatus as Status;
use super::runtime::RUNTIME;
use super::shared::{Request, Shared};

/// What the locker needs back when a wire acquire finishes.
pub struct AcquireTag {
    op: u32,
    keys: Arc<LockKeys>,
    options: AcquireOptions,
    watchdog: Option<Upkeep>,
    deadline: Option<Instant>,
    /// Holds the place of the attempt: local requests for the key queue behind it. `None` for
    /// `tryAcquire`, which never queues.
    first: Option<FirstAttempt>,
}

/// A wire release: the operation and the held lock's id.
pub struct ReleaseTag {
    op: u32,
    id: u32,
}

/// The protocol state of the locker's wire.
pub type LockWire = Wire<AcquireTag, ReleaseTag>;

/// What a wire call gives back to JS.
#[napi(object, object_from_js = false)]
pub struct WireOutput {
    /// Finished operations, in the completion layout of `onComplete` (see `layout.rs`).
    #[napi(ts_type = "Float64Array")]
    pub numbers: CopiedNumbers,
    pub texts: Vec<String>,
    pub failures: Option<Vec<NativeFailure>>,
    /// Bytes to write to the socket.
    #[napi(ts_type = "Buffer")]
    pub write: Option<CopiedBytes>,
    /// AUTH and SELECT are done: requests may go on the wire.
    pub ready: bool,
    /// Commands still unanswered: JS times them out.
    pub in_flight: u32,
    /// Set when the connection is beyond repair: JS closes the socket.
    pub broken: Option<String>,
}

impl Shared {
    /// Puts `request` on the wire if the wire carries it; otherwise gives it back for the runtime.
    pub(super) fn onto_wire(
        self: &Arc<Self>,
        wire: &mut RefMut<'_, LockWire>,
        request: Request,
    ) -> Option<Request> {
        match request {
            Request::Acquire {
                op,
                keys,
                options,
                watchdog,
            } if keys.redis_keys.len() == 1 => {
                let first = if options.wait == Some(Duration::ZERO) {
                    None
                } else {
                    match self.locker.first_attempt(&keys) {
                        Some(first) => Some(first),
                        None => {
                            return Some(Request::Acquire {
                                op,
                                keys,
                                options,
                                watchdog,
                            })
                        }
                    }
                };
                let ttl = options.ttl;
                let deadline = options.wait.map(|wait| Instant::now() + wait);
                let tag = AcquireTag {
                    op,
                    keys: keys.clone(),
                    options,
                    watchdog,
                    deadline,
                    first,
                };
                wire.acquire(tag, keys, ttl);
                None
            }
            Request::Release { op, id } => {
                let mut held = self.held.lock().expect("held table");
                let Some(entry) = held.entries.get_mut(&id) else {
                    return Some(request);
                };
                if entry.lock.keys.redis_keys.len() != 1
                    || self.locker.has_waiters(&entry.lock.keys)
                {
                    return Some(request);
                }
                entry.watchdog = None;
                wire.release(ReleaseTag { op, id }, &entry.lock);
                None
            }
            other => Some(other),
        }
    }

    /// Sends the requests of failed `events` to the runtime instead, giving back what the
    /// attempts may have taken; returns the events that are not requests (none, today).
    pub(super) fn retry_on_runtime(
        self: &Arc<Self>,
        events: Vec<Event<AcquireTag, ReleaseTag>>,
    ) -> Vec<Event<AcquireTag, ReleaseTag>> {
        let _runtime = RUNTIME.enter();
        let mut requests = Vec::new();
        let mut rest = Vec::new();
        let now = Instant::now();
        for event in events {
            match event {
                Event::AcquireFailed {
                    tag,
                    give_back,
                    error: _,
                } => {
                    if let Some((keys, token)) = give_back {
                        self.locker.give_back(keys.clone(), token);
                    }
                    let AcquireTag {
                        op,
                        mut options,
                        watchdog,
                        deadline,
                        keys,
                        ..
                    } = tag;
                    options.wait = deadline.map(|deadline| deadline.saturating_duration_since(now));
                    requests.push(Request::Acquire {
                        op,
                        keys,
                        options,
                        watchdog,
                    });
                }
                Event::ReleaseFailed { tag, error: _ } => requests.push(Request::Release {
                    op: tag.op,
                    id: tag.id,
                }),
                other => rest.push(other),
            }
        }
        if !requests.is_empty() {
            self.start(requests);
        }
        rest
    }

    pub(super) fn wire_output(
        self: &Arc<Self>,
        wire: &LockWire,
        events: Vec<Event<AcquireTag, ReleaseTag>>,
        out: Vec<u8>,
        broken: Option<String>,
    ) -> WireOutput {
        // Watchdogs and give-backs spawn tasks, from this JS thread.
        let _runtime = RUNTIME.enter();
        let completions: Vec<Completion> = events
            .into_iter()
            .filter_map(|event| self.settle(event))
            .collect();
        let (numbers, texts, failures) = flatten(completions);
        WireOutput {
            numbers: CopiedNumbers(numbers),
            texts,
            failures,
            write: (!out.is_empty()).then_some(CopiedBytes(out)),
            ready: wire.is_ready(),
            in_flight: wire.in_flight() as u32,
            broken,
        }
    }

    /// The completion of a finished wire request; `None` when it goes on waiting on the runtime.
    fn settle(self: &Arc<Self>, event: Event<AcquireTag, ReleaseTag>) -> Option<Completion> {
        let shared = self;
        match event {
            Event::Acquired { tag, lock } => {
                if let Some(first) = tag.first {
                    first.took_lock(lock.ttl);
                }
                Some(shared.acquired(tag.op, Ok(lock), &tag.options, tag.watchdog))
            }
            Event::Busy {
                tag,
                keys,
                retry_after,
            } => {
                // Given up before queueing, as `Lifecycle::acquire` does after its first attempt.
                drop(tag.first);
                if tag
                    .deadline
                    .is_some_and(|deadline| Instant::now() >= deadline)
                {
                    let busy = LockError::Busy {
                        key: keys.first().to_owned(),
                        retry_after,
                    };
                    return Some(shared.acquired(tag.op, Err(busy), &tag.options, tag.watchdog));
                }
                shared.start(vec![Request::Queue {
                    op: tag.op,
                    keys,
                    options: tag.options,
                    watchdog: tag.watchdog,
                    deadline: tag.deadline,
                    retry_after,
                }]);
                None
            }
            Event::AcquireFailed {
                tag,
                error,
                give_back,
            } => {
                if let Some((keys, token)) = give_back {
                    shared.locker.give_back(keys, token);
                }
                Some(shared.acquired(tag.op, Err(error), &tag.options, tag.watchdog))
            }
            Event::Released { tag, released } => {
                let entry = shared
                    .held
                    .lock()
                    .expect("held table")
                    .entries
                    .remove(&tag.id);
                if let (true, Some(entry)) = (released, entry) {
                    shared.locker.announce_release(&entry.lock);
                }
                Some(Completion {
                    op: tag.op,
                    status: Status::Done,
                    values: [f64::from(u8::from(released)), 0.0, 0.0],
                    text: None,
                    failure: None,
                })
            }
            Event::ReleaseFailed { tag, error } => {
                Some(Completion::failed(tag.op, &error, Doing::Releasing))
            }
        }
    }
}
