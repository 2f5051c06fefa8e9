//! Which operations the wire carries, and what its events become.
//!
//! On one Redis, the hot path never leaves the caller's thread: one-key acquire attempts and the
//! releases of one-key locks nobody here waits for go on the wire, whose socket the caller drives
//! ([`crate::transport::wire`]). An attempt that finds the lock busy queues on the runtime like
//! any other waiter; what the wire carried when its socket closed runs again on the runtime.

use std::sync::{Arc, MutexGuard};

use tokio::time::Instant;

use crate::error::Doing;
use crate::protocol::keys::LockKeys;
use crate::session::lifecycle::FirstTurn;
use crate::session::operations::{Job, Operations};
use crate::session::options::AcquireOptions;
use crate::session::request::{Completion, Outcome};
use crate::session::wait::FirstAttempt;
use crate::session::watchdog::Upkeep;
use crate::transport::wire::{Event, Wire};

/// What the locker needs back when a wire acquire finishes.
pub struct AcquireTag {
    op: u32,
    keys: Arc<LockKeys>,
    options: AcquireOptions,
    upkeep: Option<Upkeep>,
    deadline: Option<Instant>,
    /// Holds the place of the attempt: local requests for the key queue behind it, and should
    /// the lock be busy the request waits there. `None` for a request that never waits.
    first: Option<FirstAttempt>,
}

/// A wire release: the operation and the held lock's id.
pub struct ReleaseTag {
    op: u32,
    id: u32,
}

/// The protocol state of a locker's wire.
pub type LockWire = Wire<AcquireTag, ReleaseTag>;

type WireEvent = Event<AcquireTag, ReleaseTag>;

/// What a wire call gives back to the caller that drives the socket.
#[derive(Debug, Default)]
pub struct WireOutput {
    pub completions: Vec<Completion>,
    /// Bytes to write to the socket.
    pub write: Vec<u8>,
    /// AUTH and SELECT are done: requests may go on the wire.
    pub ready: bool,
    /// Commands still unanswered: the caller times them out.
    pub in_flight: usize,
    /// Set when the connection is beyond repair: the caller closes the socket.
    pub broken: Option<String>,
}

impl Operations {
    /// Puts `job` on the wire if the wire carries it; otherwise gives it back for the runtime.
    pub(super) fn onto_wire(&self, wire: &mut LockWire, job: Job) -> Option<Job> {
        match job {
            Job::Acquire {
                op,
                keys,
                options,
                upkeep,
                first: FirstTurn::Attempt { place: first },
            } if keys.redis_keys.len() == 1 => {
                let ttl = options.ttl;
                let deadline = options.deadline(Instant::now());
                let tag = AcquireTag {
                    op,
                    keys: keys.clone(),
                    options,
                    upkeep,
                    deadline,
                    first,
                };
                wire.acquire(tag, keys, ttl);
                None
            }
            Job::Release { op, id } => {
                let mut held = self.held.lock().expect("held table");
                let Some(entry) = held.get_mut(id) else {
                    return Some(job);
                };
                // A lapsed lock is not released: the runtime answers for it.
                if entry.lock.keys.redis_keys.len() != 1
                    || entry.has_lapsed()
                    || self.lifecycle.has_waiters(&entry.lock.keys)
                {
                    return Some(job);
                }
                entry.watchdog = None;
                wire.release(ReleaseTag { op, id }, &entry.lock);
                None
            }
            other => Some(other),
        }
    }

    /// Sends the operations of failed `events` to the runtime instead, giving back what the
    /// attempts may have taken; returns the events that are not failures (none, today).
    pub(super) fn retry_on_runtime(self: &Arc<Self>, events: Vec<WireEvent>) -> Vec<WireEvent> {
        let mut jobs = Vec::new();
        let mut rest = Vec::new();
        let now = Instant::now();
        for event in events {
            match event {
                Event::AcquireFailed { tag, give_back, .. } => {
                    if let Some((keys, token)) = give_back {
                        self.lifecycle.give_back(keys, token);
                    }
                    let AcquireTag {
                        op,
                        mut options,
                        upkeep,
                        deadline,
                        keys,
                        first,
                    } = tag;
                    options.wait = deadline.map(|deadline| deadline.saturating_duration_since(now));
                    // Attempted again on the runtime, at the place it held.
                    jobs.push(Job::Acquire {
                        op,
                        keys,
                        options,
                        upkeep,
                        first: FirstTurn::Attempt { place: first },
                    });
                }
                Event::ReleaseFailed { tag, .. } => jobs.push(Job::Release {
                    op: tag.op,
                    id: tag.id,
                }),
                other => rest.push(other),
            }
        }
        if !jobs.is_empty() {
            self.start(jobs);
        }
        rest
    }

    pub(super) fn wire_output(
        self: &Arc<Self>,
        wire: MutexGuard<'_, LockWire>,
        events: Vec<WireEvent>,
        write: Vec<u8>,
        broken: Option<String>,
    ) -> WireOutput {
        let (ready, in_flight) = (wire.is_ready(), wire.in_flight());
        drop(wire);
        // Watchdogs spawn their tasks from the caller's thread.
        let _runtime = self.runtime.enter();
        WireOutput {
            completions: events
                .into_iter()
                .filter_map(|event| self.settle(event))
                .collect(),
            write,
            ready,
            in_flight,
            broken,
        }
    }

    /// The completion of a finished wire operation; `None` when it goes on waiting on the
    /// runtime.
    fn settle(self: &Arc<Self>, event: WireEvent) -> Option<Completion> {
        match event {
            Event::Acquired { tag, lock } => {
                if let Some(first) = tag.first {
                    first.took_lock(lock.ttl);
                }
                Some(self.acquired(tag.op, Ok(lock), &tag.options, tag.upkeep))
            }
            Event::Busy {
                tag,
                keys,
                retry_after,
            } => {
                if let Err(busy) = self
                    .lifecycle
                    .still_waiting(&keys, tag.deadline, retry_after)
                {
                    return Some(self.acquired(tag.op, Err(busy), &tag.options, tag.upkeep));
                }
                self.start(vec![Job::Queue {
                    op: tag.op,
                    keys,
                    options: tag.options,
                    upkeep: tag.upkeep,
                    deadline: tag.deadline,
                    retry_after,
                    place: tag.first,
                }]);
                None
            }
            Event::AcquireFailed {
                tag,
                error,
                give_back,
            } => {
                if let Some((keys, token)) = give_back {
                    self.lifecycle.give_back(keys, token);
                }
                Some(self.acquired(tag.op, Err(error), &tag.options, tag.upkeep))
            }
            Event::Released { tag, released } => {
                let entry = self.held.lock().expect("held table").remove(tag.id);
                if let (true, Some(entry)) = (released, entry) {
                    self.lifecycle.announce_release(&entry.lock);
                }
                Some(Completion {
                    op: tag.op,
                    outcome: Outcome::Released { released },
                })
            }
            Event::ReleaseFailed { tag, error } => {
                Some(Completion::failed(tag.op, error, Doing::Releasing))
            }
        }
    }
}
