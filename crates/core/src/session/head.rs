//! What the head of a local queue does next, decided without I/O or timers: the driver
//! (`wait_driver.rs`) does the [`Step`] it is given (an attempt on the topology, a sleep on the
//! queue) and reports what came of it, with the time. So every decision of the wait (when to
//! attempt, when to only look, how long to sleep, when to give up) is unit-tested here with
//! made-up outcomes and clocks.

use std::time::Duration;

use tokio::time::Instant;

use crate::session::foreign_poll::ForeignPoll;
use crate::session::handover::CHAIN_END_PAUSE;
use crate::session::wait::Turn;

/// How long a head sleeps for a holder without a TTL, which only a release frees: it wakes on
/// the release, and looks again this often should the announcement be lost.
const NO_TTL_RECHECK: Duration = Duration::from_secs(3600);

/// What the driver does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Wait this long, then report [`Head::paused`]: a hand-over chain just ended here, and
    /// other processes go first.
    Pause(Duration),
    /// Ask the topology, writing nothing, whether the holder (not ironlock's, so its release is
    /// not announced) may have let go; report [`Head::probed`].
    Probe,
    /// Try to take the lock; report [`Head::refused`] when it is busy.
    Attempt,
    /// Sleep until a release after `generation` is announced or until `until`, then take the
    /// queue's next [`Turn`] ([`Head::turn`]).
    Sleep { generation: u64, until: Instant },
    /// The wait is over with the lock still busy; `retry_after` is the holder's remaining TTL as
    /// last seen.
    GiveUp { retry_after: Option<Duration> },
}

/// The head's state between steps.
pub struct Head {
    deadline: Option<Instant>,
    /// The holder's remaining TTL, as last learned (`None`: it has none, or nothing is known).
    retry_after: Option<Duration>,
    /// The last attempt found a holder that is not ironlock's.
    foreign: bool,
    foreign_poll: ForeignPoll,
    /// The queue's generation the current sleep waits to see pass.
    generation: u64,
}

impl Head {
    /// A head whose wait ends at `deadline`; `retry_after`: what the request's first attempt
    /// learned of the holder, if it made one.
    pub fn new(deadline: Option<Instant>, retry_after: Option<Duration>) -> Self {
        Self {
            deadline,
            retry_after,
            foreign: false,
            foreign_poll: ForeignPoll::default(),
            generation: 0,
        }
    }

    /// The holder's remaining TTL as last seen, for a head that gives up outside a step.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The queue's turn for its head.
    pub fn turn(&mut self, turn: Turn, now: Instant) -> Step {
        match turn {
            Turn::Attempt { generation, pause } => {
                self.generation = generation;
                if pause {
                    Step::Pause(CHAIN_END_PAUSE)
                } else {
                    self.paused()
                }
            }
            // A local waiter took the lock just before: it is surely held for up to `bound`.
            Turn::AwaitRelease { generation, bound } => {
                self.generation = generation;
                self.retry_after = Some(bound);
                self.sleep(now, None)
            }
        }
    }

    /// The pause is over: attempt, or only look while the holder is not ironlock's.
    pub fn paused(&self) -> Step {
        if self.foreign {
            Step::Probe
        } else {
            Step::Attempt
        }
    }

    /// What [`Step::Probe`] found: whether the lock may be free.
    pub fn probed(&mut self, may_be_free: bool, now: Instant) -> Step {
        if may_be_free {
            return Step::Attempt;
        }
        let poll = self.foreign_poll.next_interval();
        self.sleep(now, Some(poll))
    }

    /// The attempt found the lock busy: held for `retry_after` more (`None`: without a TTL), by
    /// a holder that is `foreign` (not ironlock's) or not.
    pub fn refused(&mut self, retry_after: Option<Duration>, foreign: bool, now: Instant) -> Step {
        self.retry_after = retry_after;
        self.foreign = foreign;
        let poll = if foreign {
            Some(self.foreign_poll.next_interval())
        } else {
            self.foreign_poll = ForeignPoll::default();
            None
        };
        self.sleep(now, poll)
    }

    /// Sleep until the holder's TTL runs out, the deadline comes or, while the holder is not
    /// ironlock's, it is time to look again (`poll`); or give up when the deadline has passed.
    fn sleep(&self, now: Instant, poll: Option<Duration>) -> Step {
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            return Step::GiveUp {
                retry_after: self.retry_after,
            };
        }
        let expiry = now + self.retry_after.unwrap_or(NO_TTL_RECHECK);
        let mut until = self
            .deadline
            .map_or(expiry, |deadline| deadline.min(expiry));
        if let Some(poll) = poll {
            until = until.min(now + poll);
        }
        Step::Sleep {
            generation: self.generation,
            until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::foreign_poll::FOREIGN_POLL_FIRST;

    const SECOND: Duration = Duration::from_secs(1);

    fn attempt_turn(generation: u64) -> Turn {
        Turn::Attempt {
            generation,
            pause: false,
        }
    }

    #[test]
    fn a_busy_attempt_sleeps_until_the_holder_expires_or_the_deadline_comes() {
        let now = Instant::now();
        let mut head = Head::new(Some(now + 10 * SECOND), None);
        assert_eq!(head.turn(attempt_turn(3), now), Step::Attempt);
        assert_eq!(
            head.refused(Some(2 * SECOND), false, now),
            Step::Sleep {
                generation: 3,
                until: now + 2 * SECOND
            }
        );
        assert_eq!(head.turn(attempt_turn(4), now), Step::Attempt);
        assert_eq!(
            head.refused(Some(30 * SECOND), false, now),
            Step::Sleep {
                generation: 4,
                until: now + 10 * SECOND
            },
            "the deadline comes first"
        );
    }

    #[test]
    fn the_wait_ends_busy_at_its_deadline_with_the_holders_last_ttl() {
        let now = Instant::now();
        let mut head = Head::new(Some(now + SECOND), Some(5 * SECOND));
        assert_eq!(head.turn(attempt_turn(1), now), Step::Attempt);
        let later = now + SECOND;
        assert_eq!(
            head.refused(Some(4 * SECOND), false, later),
            Step::GiveUp {
                retry_after: Some(4 * SECOND)
            }
        );
    }

    #[test]
    fn a_holder_without_ttl_is_waited_for_until_released() {
        let now = Instant::now();
        let mut head = Head::new(None, None);
        head.turn(attempt_turn(1), now);
        assert_eq!(
            head.refused(None, false, now),
            Step::Sleep {
                generation: 1,
                until: now + NO_TTL_RECHECK
            }
        );
    }

    #[test]
    fn after_a_local_taker_the_head_sleeps_for_its_ttl_without_attempting() {
        let now = Instant::now();
        let mut head = Head::new(None, None);
        assert_eq!(
            head.turn(
                Turn::AwaitRelease {
                    generation: 7,
                    bound: 3 * SECOND
                },
                now
            ),
            Step::Sleep {
                generation: 7,
                until: now + 3 * SECOND
            }
        );
        assert_eq!(head.retry_after(), Some(3 * SECOND));
    }

    #[test]
    fn after_a_chain_ends_the_head_pauses_before_it_attempts() {
        let now = Instant::now();
        let mut head = Head::new(None, None);
        let turn = Turn::Attempt {
            generation: 2,
            pause: true,
        };
        assert_eq!(head.turn(turn, now), Step::Pause(CHAIN_END_PAUSE));
        assert_eq!(head.paused(), Step::Attempt);
    }

    #[test]
    fn behind_a_foreign_holder_the_head_polls_looking_before_it_writes() {
        let now = Instant::now();
        let mut head = Head::new(None, None);
        head.turn(attempt_turn(1), now);
        // Foreign, with a long TTL: it sleeps no longer than the first poll interval.
        let Step::Sleep { until, .. } = head.refused(Some(60 * SECOND), true, now) else {
            panic!("a sleep");
        };
        assert!(until <= now + FOREIGN_POLL_FIRST && until >= now + FOREIGN_POLL_FIRST / 2);
        // Next turn: it only looks; a look that finds the lock held sleeps again, longer.
        assert_eq!(head.turn(attempt_turn(1), now), Step::Probe);
        let Step::Sleep { until, .. } = head.probed(false, now) else {
            panic!("a sleep");
        };
        assert!(until >= now + FOREIGN_POLL_FIRST, "the interval doubles");
        // A look that finds it may be free attempts.
        assert_eq!(head.turn(attempt_turn(1), now), Step::Probe);
        assert_eq!(head.probed(true, now), Step::Attempt);
        // Once an ironlock holder has it, the head waits for its release again, without polls.
        assert_eq!(
            head.refused(Some(60 * SECOND), false, now),
            Step::Sleep {
                generation: 1,
                until: now + 60 * SECOND
            }
        );
        assert_eq!(head.turn(attempt_turn(2), now), Step::Attempt);
    }
}
