//! The errors every backend and the locker report; the binding maps each variant to one JS class.

use std::fmt;
use std::time::Duration;

/// How each node voted in a Redlock round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumVotes {
    pub granted: usize,
    pub refused: usize,
    /// `(host:port, message)` of every node that failed to answer.
    pub errors: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockError {
    /// The wait ran out while another holder kept the lock.
    Busy {
        key: String,
        /// Time until the holder's TTL ends, when the server told us.
        retry_after: Option<Duration>,
    },
    /// The lock is no longer held by this token.
    Lost { key: String },
    /// Redlock could not win a majority.
    Quorum { key: String, votes: QuorumVotes },
    /// Redis could not be reached, or a command timed out.
    Connection { key: String, message: String },
    /// The caller cancelled the wait.
    Aborted { key: String },
    /// The locker was closed before or while the operation ran.
    Closed { key: String },
}

impl LockError {
    pub fn key(&self) -> &str {
        match self {
            Self::Busy { key, .. }
            | Self::Lost { key }
            | Self::Quorum { key, .. }
            | Self::Connection { key, .. }
            | Self::Aborted { key }
            | Self::Closed { key } => key,
        }
    }

    /// The same error about another key: one failed script call can carry several locks.
    pub fn for_key(&self, other: &str) -> Self {
        let mut error = self.clone();
        match &mut error {
            Self::Busy { key, .. }
            | Self::Lost { key }
            | Self::Quorum { key, .. }
            | Self::Connection { key, .. }
            | Self::Aborted { key }
            | Self::Closed { key } => *key = other.to_owned(),
        }
        error
    }

    /// The stable code users match on, as in the public contract.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Busy { .. } => "ELOCKBUSY",
            Self::Lost { .. } => "ELOCKLOST",
            Self::Quorum { .. } => "EQUORUM",
            Self::Connection { .. } | Self::Closed { .. } => "ECONNECTION",
            Self::Aborted { .. } => "ABORT_ERR",
        }
    }
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busy { key, retry_after } => {
                write!(f, "lock \"{key}\" is held by someone else")?;
                if let Some(after) = retry_after {
                    write!(f, "; it expires in {} ms at the latest", after.as_millis())?;
                }
                Ok(())
            }
            Self::Lost { key } => write!(
                f,
                "lock \"{key}\" is no longer ours: it expired or was taken by another holder"
            ),
            Self::Quorum { key, votes } => {
                write!(
                    f,
                    "could not lock \"{key}\" on a majority of nodes: {} granted, {} refused, {} failed",
                    votes.granted,
                    votes.refused,
                    votes.errors.len()
                )?;
                for (node, message) in &votes.errors {
                    write!(f, "; {node}: {message}")?;
                }
                Ok(())
            }
            Self::Connection { key, message } => {
                write!(f, "Redis unavailable while locking \"{key}\": {message}")
            }
            Self::Aborted { key } => write!(f, "waiting for lock \"{key}\" was aborted"),
            Self::Closed { key } => {
                write!(f, "the locker was closed; lock \"{key}\" was not taken")
            }
        }
    }
}

impl std::error::Error for LockError {}
