//! Which operations the wire carries, and what its answers become.
//!
//! On one Redis, the hot path never leaves the caller's thread: one-key acquire attempts and the
//! releases of one-key locks nobody here waits for go on the wire, whose socket the caller drives
//! ([`crate::transport::wire`]), as calls the topology builds and reads
//! ([`crate::topology::WireCalls`]). The session decides the rest as for the runtime's
//! connection: the attempt's claim (its token), the lock it grants, what a busy attempt becomes
//! (it queues on the runtime like any other waiter), the give-back of an attempt whose caller
//! cancelled or that failed, and what the wire carried when its socket closed (it runs again on
//! the runtime). An attempt that waits for replicas stays off the wire: its `WAIT` would block
//! the socket every other attempt shares. On a Redis Cluster the wire is a socket per master
//! ([`crate::topology::ShardWires`]), and a call a master redirected runs again on the runtime.

use std::sync::Arc;

use tokio::time::Instant;

use crate::error::{Doing, LockError};
use crate::protocol::lock::Claim;
use crate::protocol::script_reply::Attempt;
use crate::session::acquire::FirstTurn;
use crate::session::operations::{Job, Operations};
use crate::session::options::AcquireOptions;
use crate::session::request::{Completion, Outcome};
use crate::session::wait::FirstAttempt;
use crate::session::watchdog::Upkeep;
use crate::topology::{OneKeyWire, ShardWires, WireAnswer, WireCalls};

/// What the locker needs back when a wire acquire finishes.
pub struct AcquireTag {
    op: u32,
    claim: Claim,
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

/// The calls of a locker's wire.
pub type LockWire = WireCalls<AcquireTag, ReleaseTag>;

/// The calls of a locker's wires to a Redis Cluster's masters.
pub type LockShardWires = ShardWires<AcquireTag, ReleaseTag>;

pub(super) type Answer = WireAnswer<AcquireTag, ReleaseTag>;

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

impl std::fmt::Debug for AcquireTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcquireTag").field("op", &self.op).finish()
    }
}

impl std::fmt::Debug for ReleaseTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleaseTag").field("op", &self.op).finish()
    }
}

impl Operations {
    /// Puts `job` on the wire if the wire carries it; otherwise gives it back for the runtime.
    pub(super) fn onto_wire(
        &self,
        wire: &mut impl OneKeyWire<AcquireTag, ReleaseTag>,
        job: Job,
    ) -> Option<Job> {
        match job {
            Job::Acquire {
                op,
                keys,
                options,
                upkeep,
                first: FirstTurn::Attempt { place: first },
            } if keys.redis_keys.len() == 1 && !options.replicas.are_wanted() => {
                let claim = Claim::new(keys, options.ttl);
                let (token, ttl) = (claim.token.clone(), claim.ttl);
                let keys = claim.keys.clone();
                let tag = AcquireTag {
                    op,
                    claim,
                    deadline: options.deadline(Instant::now()),
                    options,
                    upkeep,
                    first,
                };
                match wire.acquire(tag, &keys, token, ttl) {
                    Ok(()) => None,
                    Err(tag) => Some(tag.into_job()),
                }
            }
            Job::Release { op, id } => {
                let mut held = self.held.lock().expect("held table");
                let Some(entry) = held.get_mut(id) else {
                    return Some(job);
                };
                // A lapsed lock is not released: the runtime answers for it.
                if entry.has_lapsed() || self.lifecycle.has_waiters(&entry.lock.keys) {
                    return Some(job);
                }
                match wire.release(
                    ReleaseTag { op, id },
                    &entry.lock.keys,
                    entry.lock.token.clone(),
                ) {
                    Ok(()) => {
                        entry.watchdog = None;
                        None
                    }
                    Err(_) => Some(job),
                }
            }
            other => Some(other),
        }
    }

    /// Sends the operations of failed `answers` to the runtime instead, giving back what the
    /// attempts may have taken.
    pub(super) fn retry_on_runtime(self: &Arc<Self>, answers: Vec<Answer>) {
        let jobs = answers
            .into_iter()
            .map(|answer| match answer {
                WireAnswer::Attempted { tag, .. } => {
                    let claim = &tag.claim;
                    self.lifecycle
                        .give_back(claim.keys.clone(), claim.token.clone());
                    tag.into_job()
                }
                WireAnswer::Released { tag, .. } => Job::Release {
                    op: tag.op,
                    id: tag.id,
                },
            })
            .collect::<Vec<_>>();
        if !jobs.is_empty() {
            self.start(jobs);
        }
    }

    /// What goes back to the caller of a wire whose state is now `ready` with `in_flight`
    /// commands, once `answers` are settled (called with no wire locked).
    pub(super) fn wire_output(
        self: &Arc<Self>,
        (ready, in_flight): (bool, usize),
        answers: Vec<Answer>,
        write: Vec<u8>,
        broken: Option<String>,
    ) -> WireOutput {
        // Watchdogs spawn their tasks from the caller's thread.
        let _runtime = self.runtime.enter();
        WireOutput {
            completions: answers
                .into_iter()
                .filter_map(|answer| self.settle(answer))
                .collect(),
            write,
            ready,
            in_flight,
            broken,
        }
    }

    /// The completion of a finished wire operation; `None` when it goes on waiting on the
    /// runtime.
    fn settle(self: &Arc<Self>, answer: Answer) -> Option<Completion> {
        match answer {
            WireAnswer::Attempted { tag, outcome } => self.attempted(tag, outcome),
            WireAnswer::Released { tag, outcome } => Some(match outcome {
                Ok(released) => {
                    let entry = self.held.lock().expect("held table").remove(tag.id);
                    if let (true, Some(entry)) = (released, entry) {
                        self.lifecycle.announce_release(&entry.lock);
                    }
                    Completion {
                        op: tag.op,
                        outcome: Outcome::Released { released },
                    }
                }
                Err(error) => Completion::failed(tag.op, error, Doing::Releasing),
            }),
        }
    }

    /// A wire attempt's outcome, as [`crate::session::lifecycle::Lifecycle::acquire_from`]
    /// settles the runtime's: a lock whose caller cancelled meanwhile, or an attempt that failed,
    /// is given back here.
    fn attempted(
        self: &Arc<Self>,
        tag: AcquireTag,
        outcome: Result<Attempt, LockError>,
    ) -> Option<Completion> {
        let AcquireTag {
            op,
            claim,
            options,
            upkeep,
            deadline,
            first,
        } = tag;
        let result = match outcome {
            _ if options.is_cancelled() => {
                if !matches!(outcome, Ok(Attempt::Busy { .. })) {
                    self.lifecycle.give_back(claim.keys.clone(), claim.token);
                }
                Err(LockError::Aborted {
                    key: claim.keys.first().to_owned(),
                })
            }
            Ok(Attempt::Acquired { fence }) => {
                let lock = self.lifecycle.granted(claim, fence);
                if let Some(first) = first {
                    first.took_lock(lock.ttl);
                }
                Ok(lock)
            }
            Ok(Attempt::Busy { retry_after, .. }) => {
                let keys = claim.keys;
                match self.lifecycle.still_waiting(&keys, deadline, retry_after) {
                    Err(busy) => Err(busy),
                    Ok(()) => {
                        self.start(vec![Job::Queue {
                            op,
                            keys,
                            options,
                            upkeep,
                            deadline,
                            retry_after,
                            place: first,
                        }]);
                        return None;
                    }
                }
            }
            Err(error) => {
                self.lifecycle.give_back(claim.keys, claim.token);
                Err(error)
            }
        };
        Some(self.acquired(op, result, &options, upkeep))
    }
}

impl AcquireTag {
    /// The acquire again, to attempt on the runtime at the place it held, with what is left of
    /// its wait.
    fn into_job(self) -> Job {
        let mut options = self.options;
        options.wait = self
            .deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        Job::Acquire {
            op: self.op,
            keys: self.claim.keys,
            options,
            upkeep: self.upkeep,
            first: FirstTurn::Attempt { place: self.first },
        }
    }
}
