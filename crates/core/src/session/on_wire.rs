//! Which operations the wire carries, and what its events become.
//!
//! On one Redis, the hot path never leaves the caller's thread: one-key acquire attempts and the
//! releases of one-key locks go on the wire, whose socket the caller drives
//! ([`crate::transport::wire`]). An attempt that finds the lock busy queues on the runtime like
//! any other waiter. A release that finds a waiter here sleeping for the lock hands it over on the
//! wire too, and completes the waiter's acquire from the answer, without a hop to the runtime and
//! back. What the wire carried when its socket closed runs again on the runtime.

use std::sync::{Arc, MutexGuard};
use std::time::SystemTime;

use tokio::time::Instant;

use crate::error::{Doing, LockError};
use crate::protocol::keys::LockKeys;
use crate::protocol::lock::HeldLock;
use crate::protocol::token::new_token;
use crate::session::lifecycle::FirstTurn;
use crate::session::operations::{Job, Operations};
use crate::session::options::AcquireOptions;
use crate::session::request::{Completion, Outcome};
use crate::session::wait::{FirstAttempt, Handing};
use crate::session::watchdog::Upkeep;
use crate::topology::HandOver;
use crate::transport::wire::{Event, Wire};

/// What the locker needs back when a wire acquire finishes.
pub struct AcquireTag {
    op: u32,
    keys: Arc<LockKeys>,
    options: AcquireOptions,
    upkeep: Option<Upkeep>,
    deadline: Option<Instant>,
    /// Holds the place of the attempt: local requests for the key queue behind it. `None` for
    /// a request that never waits, which never queues.
    first: Option<FirstAttempt>,
}

/// A wire release: the operation and the held lock's id.
pub struct ReleaseTag {
    op: u32,
    id: u32,
}

/// A wire release that passes the lock to a local waiter: the release's tag, and the waiter's
/// offer it took.
pub struct HandOverTag {
    release: ReleaseTag,
    handing: Handing,
}

/// The protocol state of a locker's wire.
pub type LockWire = Wire<AcquireTag, ReleaseTag, HandOverTag>;

type WireEvent = Event<AcquireTag, ReleaseTag, HandOverTag>;

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
            } if keys.redis_keys.len() == 1 => {
                let first = match self.lifecycle.first_turn(&keys, &options) {
                    FirstTurn::Attempt { place } => place,
                    FirstTurn::Queue => {
                        return Some(Job::Acquire {
                            op,
                            keys,
                            options,
                            upkeep,
                        })
                    }
                };
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
                if entry.lock.keys.redis_keys.len() != 1 {
                    return Some(job);
                }
                entry.watchdog = None;
                let handing = if self.lifecycle.has_waiters(&entry.lock.keys) {
                    self.lifecycle.take_offer(&entry.lock)
                } else {
                    None
                };
                let release = ReleaseTag { op, id };
                match handing {
                    Some(handing) => {
                        let (ttl, reserve) = (handing.ttl(), handing.reserve());
                        let tag = HandOverTag { release, handing };
                        wire.hand_over(tag, &entry.lock, new_token(), ttl, reserve);
                    }
                    // Waiters here that sleep without an offer hear of it as the release is
                    // answered (`settle`), as after a release on the runtime.
                    None => wire.release(release, &entry.lock),
                }
                None
            }
            other => Some(other),
        }
    }

    /// Sends the operations of failed `events` to the runtime instead, giving back what the
    /// attempts may have taken; returns the events that are not failures (none, today).
    pub(super) fn retry_on_runtime(self: &Arc<Self>, events: Vec<WireEvent>) -> Vec<WireEvent> {
        let _runtime = self.runtime.enter();
        let mut jobs = Vec::new();
        let mut rest = Vec::new();
        let now = Instant::now();
        for event in events {
            match event {
                Event::AcquireFailed { tag, give_back, .. } => {
                    self.give_back(give_back);
                    let AcquireTag {
                        op,
                        mut options,
                        upkeep,
                        deadline,
                        keys,
                        ..
                    } = tag;
                    options.wait = deadline.map(|deadline| deadline.saturating_duration_since(now));
                    jobs.push(Job::Acquire {
                        op,
                        keys,
                        options,
                        upkeep,
                    });
                }
                Event::ReleaseFailed { tag, .. } => jobs.push(Job::Release {
                    op: tag.op,
                    id: tag.id,
                }),
                // The waiter, its offer dropped with `tag.handing`, attempts as after a release.
                Event::HandOverFailed { tag, give_back, .. } => {
                    self.give_back(give_back);
                    jobs.push(Job::Release {
                        op: tag.release.op,
                        id: tag.release.id,
                    });
                }
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
        // Watchdogs and give-backs spawn tasks, from the caller's thread.
        let _runtime = self.runtime.enter();
        let mut completions = Vec::with_capacity(events.len());
        for event in events {
            self.settle(event, &mut completions);
        }
        WireOutput {
            completions,
            write,
            ready,
            in_flight,
            broken,
        }
    }

    /// Deletes what a wire request that failed may have left on its key.
    fn give_back(&self, taken: Option<(Arc<LockKeys>, String)>) {
        if let Some((keys, token)) = taken {
            self.lifecycle.give_back(keys, token);
        }
    }

    /// Adds the completions of a finished wire operation to `out`: none when it goes on waiting
    /// on the runtime, two when a release handed the lock to a waiter it completes.
    fn settle(self: &Arc<Self>, event: WireEvent, out: &mut Vec<Completion>) {
        match event {
            Event::Acquired { tag, lock } => {
                if let Some(first) = tag.first {
                    first.took_lock(lock.ttl);
                }
                let cancellable = tag.options.cancel.is_some();
                out.push(self.acquired(tag.op, Ok(lock), cancellable, tag.upkeep));
            }
            Event::Busy {
                tag,
                keys,
                retry_after,
            } => {
                // Gives up its place before it queues, as `Lifecycle::acquire` does after its
                // first attempt.
                drop(tag.first);
                if let Err(busy) = self
                    .lifecycle
                    .still_waiting(&keys, tag.deadline, retry_after)
                {
                    let cancellable = tag.options.cancel.is_some();
                    out.push(self.acquired(tag.op, Err(busy), cancellable, tag.upkeep));
                    return;
                }
                self.start(vec![Job::Queue {
                    op: tag.op,
                    keys,
                    options: tag.options,
                    upkeep: tag.upkeep,
                    deadline: tag.deadline,
                    retry_after,
                }]);
            }
            Event::AcquireFailed {
                tag,
                error,
                give_back,
            } => {
                self.give_back(give_back);
                let cancellable = tag.options.cancel.is_some();
                out.push(self.acquired(tag.op, Err(error), cancellable, tag.upkeep));
            }
            Event::Released { tag, released } => {
                let entry = self.held.lock().expect("held table").remove(tag.id);
                if let (true, Some(entry)) = (released, entry) {
                    self.lifecycle.announce_release(&entry.lock);
                }
                out.push(Completion {
                    op: tag.op,
                    outcome: Outcome::Released { released },
                });
            }
            Event::ReleaseFailed { tag, error } => {
                out.push(Completion::failed(tag.op, error, Doing::Releasing));
            }
            Event::HandedOver {
                tag,
                keys,
                outcome,
                token,
                expires_at,
            } => self.handed_over(tag, keys, outcome, token, expires_at, out),
            // The waiter, its offer dropped with `tag.handing`, attempts as after a release.
            Event::HandOverFailed {
                tag,
                error,
                give_back,
            } => {
                self.give_back(give_back);
                out.push(Completion::failed(tag.release.op, error, Doing::Releasing));
            }
        }
    }

    /// The release of `tag` ran the hand-over script, which gave `keys` to `token` unless the
    /// old lock was lost. The release completes; so does the waiter's acquire, with the lock,
    /// when this release takes its claim. A waiter that completed meanwhile, or whose wait was
    /// cancelled, is sent the lock instead, and its task gives it back.
    fn handed_over(
        self: &Arc<Self>,
        tag: HandOverTag,
        keys: Arc<LockKeys>,
        outcome: HandOver,
        token: String,
        expires_at: SystemTime,
        out: &mut Vec<Completion>,
    ) {
        let HandOverTag {
            release: ReleaseTag { op, id },
            mut handing,
        } = tag;
        self.held.lock().expect("held table").remove(id);
        let fence = match outcome {
            HandOver::Done { .. } | HandOver::Fenced { .. } => handing.handed(&token, outcome),
            // The old lock was lost (or released without a new holder): dropping `handing`
            // makes the waiter attempt.
            HandOver::NotHeld | HandOver::Released => {
                let released = outcome == HandOver::Released;
                out.push(Completion {
                    op,
                    outcome: Outcome::Released { released },
                });
                return;
            }
        };
        let Some(fence) = fence else {
            let error = LockError::Connection {
                key: keys.first().to_owned(),
                message: format!("unexpected answer {outcome:?} to a hand-over"),
            };
            self.lifecycle.give_back(keys, token);
            out.push(Completion::failed(op, error, Doing::Releasing));
            return;
        };
        out.push(Completion {
            op,
            outcome: Outcome::Released { released: true },
        });
        let ttl = handing.ttl();
        let lock = HeldLock {
            keys,
            token,
            fence,
            ttl,
            expires_at,
        };
        match handing.claim() {
            Some(waiter) => {
                handing.completed_here(ttl);
                out.push(self.completed(waiter, Ok(lock)));
            }
            None => handing.deliver(lock),
        }
    }
}
