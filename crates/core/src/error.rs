//! The errors every topology and the locker report; the binding maps each variant to one JS class.

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

/// What a connection error says of a server that answered in another protocol than Redis's (an
/// HTTP server on the port, say), in place of a parse error that would show the bytes it sent.
pub const NOT_REDIS: &str = "did not answer as Redis";

/// What the operation that met an error was doing: its message says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doing {
    Locking,
    Releasing,
    Extending,
}

impl Doing {
    fn verb(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Locking => ("locking", "lock", "taken"),
            Self::Releasing => ("releasing", "release", "released"),
            Self::Extending => ("extending", "extend", "extended"),
        }
    }
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
    /// A [`LockError::Connection`] about `key`: `message` happened on the server at `label`.
    pub fn connection(key: &str, label: &str, message: &str) -> Self {
        Self::Connection {
            key: key.to_owned(),
            message: if message == NOT_REDIS {
                format!("the server at {label} {NOT_REDIS}")
            } else {
                format!("{label}: {message}")
            },
        }
    }

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

    /// The message of this error, met while `doing`: a connection, quorum or closed error names
    /// the operation (`Display` does not, as it cannot know it).
    pub fn message_while(&self, doing: Doing) -> String {
        Described(self, Some(doing)).to_string()
    }
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Described(self, None).fmt(f)
    }
}

/// An error's message, naming the operation when it is known.
struct Described<'a>(&'a LockError, Option<Doing>);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(error, doing) = *self;
        let verb = doing.map(Doing::verb);
        match error {
            LockError::Busy { key, retry_after } => {
                write!(f, "lock \"{key}\" is held by someone else")?;
                if let Some(after) = retry_after {
                    write!(f, "; it expires in {} ms at the latest", after.as_millis())?;
                }
                Ok(())
            }
            LockError::Lost { key } => write!(
                f,
                "lock \"{key}\" is no longer ours: it expired or was taken by another holder"
            ),
            LockError::Quorum { key, votes } => {
                match verb {
                    Some((_, infinitive, _)) => {
                        write!(f, "could not {infinitive} \"{key}\" on a majority of nodes")?
                    }
                    None => write!(f, "no majority of nodes for lock \"{key}\"")?,
                }
                write!(
                    f,
                    ": {} granted, {} refused, {} failed",
                    votes.granted,
                    votes.refused,
                    votes.errors.len()
                )?;
                for (node, message) in &votes.errors {
                    write!(f, "; {node}: {message}")?;
                }
                Ok(())
            }
            LockError::Connection { key, message } => match verb {
                Some((gerund, _, _)) => {
                    write!(f, "Redis unavailable while {gerund} \"{key}\": {message}")
                }
                None => write!(f, "Redis unavailable for lock \"{key}\": {message}"),
            },
            LockError::Aborted { key } => write!(f, "waiting for lock \"{key}\" was aborted"),
            LockError::Closed { key } => match verb {
                Some((_, _, participle)) => {
                    write!(
                        f,
                        "the locker was closed; lock \"{key}\" was not {participle}"
                    )
                }
                None => write!(
                    f,
                    "the locker was closed; nothing was done for lock \"{key}\""
                ),
            },
        }
    }
}

impl std::error::Error for LockError {}
