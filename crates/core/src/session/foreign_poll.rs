//! How often a queue's head looks again behind a holder that never announces its release.

use std::time::Duration;

use rand::Rng;

/// The first and the longest pause of a head polling a holder that is not ironlock's.
pub(super) const FOREIGN_POLL_FIRST: Duration = Duration::from_millis(4);
const FOREIGN_POLL_MAX: Duration = Duration::from_millis(16);

/// The pauses of a head whose lock is held by a holder that never announces its release (a
/// hand-rolled `SET NX` lock, `redlock`: see [`crate::protocol::token`]): it looks again after a
/// pause that doubles up to [`FOREIGN_POLL_MAX`], so such a release is noticed within tens of
/// milliseconds, not at the holder's TTL. Each pause is drawn from its upper half, so heads in several
/// processes do not poll in step. Only the head of a queue polls.
pub(super) struct ForeignPoll {
    bound: Duration,
}

impl Default for ForeignPoll {
    fn default() -> Self {
        Self {
            bound: FOREIGN_POLL_FIRST,
        }
    }
}

impl ForeignPoll {
    pub(super) fn next_interval(&mut self) -> Duration {
        let bound = self.bound;
        self.bound = (bound * 2).min(FOREIGN_POLL_MAX);
        rand::rng().random_range(bound / 2..=bound)
    }
}
