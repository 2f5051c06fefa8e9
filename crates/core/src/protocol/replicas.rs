//! `WAIT`: holding a grant back until replicas acknowledged it. A lock written to a master that
//! dies before replicating it can be granted again by the promoted replica; `WAIT n timeout`,
//! sent on the connection that wrote right after the write, answers how many replicas have
//! everything that connection wrote (the lock and its fencing counter, in one script).

use std::time::Duration;

use crate::error::LockError;
use crate::protocol::resp::Reply;
use crate::protocol::script_reply::{Attempt, HandOver};

/// An outcome that may have given a token the lock: only such an outcome waits for replicas.
pub trait Grant {
    fn took_the_lock(&self) -> bool;
}

impl Grant for Attempt {
    fn took_the_lock(&self) -> bool {
        matches!(self, Self::Acquired { .. })
    }
}

impl Grant for HandOver {
    fn took_the_lock(&self) -> bool {
        matches!(self, Self::Done { .. } | Self::Fenced { .. })
    }
}

/// How many replicas must acknowledge a write before it counts, and how long to wait for them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Replicas {
    /// 0: the write counts as soon as the master made it (no `WAIT`).
    pub wanted: u32,
    /// Never zero when `wanted` is not: `WAIT` with a timeout of 0 would block forever.
    pub timeout: Duration,
}

impl Replicas {
    /// No replica waited for: the write counts once the master made it.
    pub const NONE: Self = Self {
        wanted: 0,
        timeout: Duration::ZERO,
    };

    /// Whether a write must wait for replicas.
    pub fn are_wanted(&self) -> bool {
        self.wanted > 0
    }

    /// The `WAIT` command's arguments after its name.
    pub fn wait_args(&self) -> [String; 2] {
        // At least 1 ms: 0 would make Redis wait for ever.
        let timeout = self.timeout.as_millis().max(1);
        [self.wanted.to_string(), timeout.to_string()]
    }

    /// How many replicas `WAIT` answered acknowledged; `None` for a reply that is no count.
    pub fn acknowledged(reply: &Reply) -> Option<u32> {
        match reply {
            Reply::Int(count) => u32::try_from(*count).ok(),
            _ => None,
        }
    }

    /// `Ok` when `acknowledged` replicas are enough for the lock of `key`, else the
    /// [`LockError::Replication`] its caller gets once the lock is given back.
    pub fn check(&self, key: &str, acknowledged: u32) -> Result<(), LockError> {
        if acknowledged >= self.wanted {
            return Ok(());
        }
        Err(LockError::Replication {
            key: key.to_owned(),
            acknowledged,
            wanted: self.wanted,
        })
    }

    /// `outcome`, unless it took the lock of `key` and fewer replicas than wanted acknowledged
    /// it (`acknowledged`: `None` when none were asked): then the [`LockError::Replication`] its
    /// caller gets once the lock is given back.
    pub fn checked<T: Grant>(
        &self,
        key: &str,
        outcome: T,
        acknowledged: Option<u32>,
    ) -> Result<T, LockError> {
        match acknowledged {
            Some(acknowledged) if outcome.took_the_lock() => {
                self.check(key, acknowledged).map(|()| outcome)
            }
            _ => Ok(outcome),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(wanted: u32, timeout_ms: u64) -> Replicas {
        Replicas {
            wanted,
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn wait_is_asked_for_the_replicas_wanted_and_never_without_a_timeout() {
        assert_eq!(replicas(2, 1000).wait_args(), ["2", "1000"]);
        assert_eq!(
            replicas(1, 0).wait_args(),
            ["1", "1"],
            "WAIT 1 0 would block for ever"
        );
        assert!(!Replicas::NONE.are_wanted());
        assert!(replicas(1, 5).are_wanted());
    }

    #[test]
    fn too_few_acknowledgements_name_the_lock_and_both_counts() {
        assert_eq!(replicas(2, 100).check("k", 2), Ok(()));
        assert_eq!(replicas(2, 100).check("k", 3), Ok(()));
        assert_eq!(
            replicas(2, 100).check("k", 1),
            Err(LockError::Replication {
                key: "k".into(),
                acknowledged: 1,
                wanted: 2,
            })
        );
    }

    #[test]
    fn only_a_count_is_an_acknowledgement() {
        assert_eq!(Replicas::acknowledged(&Reply::Int(3)), Some(3));
        assert_eq!(Replicas::acknowledged(&Reply::Int(-1)), None);
        assert_eq!(Replicas::acknowledged(&Reply::Bulk(None)), None);
    }

    #[test]
    fn only_an_outcome_that_took_the_lock_is_held_to_its_replicas() {
        let wanted = replicas(1, 100);
        let acquired = Attempt::Acquired { fence: 7 };
        assert_eq!(wanted.checked("k", acquired, Some(1)), Ok(acquired));
        assert_eq!(wanted.checked("k", acquired, None), Ok(acquired));
        assert!(matches!(
            wanted.checked("k", acquired, Some(0)),
            Err(LockError::Replication {
                acknowledged: 0,
                wanted: 1,
                ..
            })
        ));
        let handed = HandOver::Fenced { fence: 9 };
        assert!(wanted.checked("k", handed, Some(0)).is_err());
        assert_eq!(
            wanted.checked("k", HandOver::NotHeld, Some(0)),
            Ok(HandOver::NotHeld)
        );
        assert_eq!(
            wanted.checked("k", HandOver::Released, Some(0)),
            Ok(HandOver::Released)
        );
    }
}
