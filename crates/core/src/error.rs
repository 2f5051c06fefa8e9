//! The errors every topology and the locker report; the binding maps each variant to one JS class.

use std::fmt;
use std::time::Duration;

use crate::config::TargetOrigin;
use crate::protocol::script_reply::Refusal;

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

/// What a connection error says of a server asked for TLS (`rediss://`, the `tls` option) that
/// answered in plain text, as a Redis without TLS does, rather than only timing out.
pub const NOT_TLS: &str = "may not speak TLS, as it answers in plain text (rediss:// and the \
     tls option ask for TLS; a server without it needs redis://)";

/// What a connection error says of a server reached without TLS that closed the connection before
/// any answer, as a TLS-only port does.
pub const MAYBE_ONLY_TLS: &str = "closed the connection before answering; if it speaks only TLS, \
     use rediss:// or the tls option";

/// Where an internal error asks to be reported.
const REPORT_BUGS_AT: &str = "https://github.com/ironlock/ironlock/issues";

/// What a connection error says when nothing accepted the connection.
pub const REFUSED: &str = "connection refused; is a Redis running there? Check the host and \
     port, and any firewall in between";

/// What a connection error says when no connection was made within `timeout`.
pub fn connect_timed_out(timeout: Duration) -> String {
    format!(
        "no connection within {} ms; is a Redis running there? Check the host and port, any \
         firewall in between, and whether the server needs TLS (rediss://)",
        timeout.as_millis()
    )
}

/// How connection errors name a server: its address and, for a locker's one Redis, where that
/// address came from, since a wrong one is the usual reason it cannot be reached.
pub fn server_name(label: &str, origin: Option<TargetOrigin>) -> String {
    match origin {
        None => label.to_owned(),
        Some(TargetOrigin::Argument) => format!("{label} (from the target argument)"),
        Some(TargetOrigin::Environment) => format!("{label} (from REDIS_URL)"),
        Some(TargetOrigin::Default) => {
            format!("{label} (the built-in default, since REDIS_URL is not set)")
        }
    }
}

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
    /// The lock was released already (by this process): nothing of it is left to extend.
    Released { key: String },
    /// Redlock could not win a majority.
    Quorum { key: String, votes: QuorumVotes },
    /// Redis could not be reached, or a command timed out.
    Connection { key: String, message: String },
    /// The caller cancelled the wait.
    Aborted { key: String },
    /// The locker was closed before or while the operation ran.
    Closed { key: String },
    /// Lock key `key` holds a value of another Redis type than a string (`found`: `hash`,
    /// `list`…), where no lock can live: data of something else under the same name. No wait
    /// would help, as no holder will release it.
    KeyType { key: String, found: String },
    /// Fewer than the `wanted` replicas acknowledged the lock (and its fence) within the time
    /// allowed (`WAIT`): the lock was given back rather than granted, since a failover to a
    /// replica without it could grant it again.
    Replication {
        key: String,
        acknowledged: u32,
        wanted: u32,
    },
    /// A bug in ironlock: its own code asked for something it never should (`what`: what, in
    /// ironlock's terms), such as handing over a multi-key lock. Never met in normal use; it is
    /// its own kind so that it is not mistaken for a fault of Redis or of the caller.
    Internal { key: String, what: String },
}

impl LockError {
    /// A [`LockError::Connection`] about `key`: `message` happened on the server at `server`
    /// (see [`server_name`]).
    pub fn connection(key: &str, server: &str, message: &str) -> Self {
        Self::Connection {
            key: key.to_owned(),
            message: if [NOT_REDIS, NOT_TLS, MAYBE_ONLY_TLS].contains(&message) {
                format!("the server at {server} {message}")
            } else {
                format!("{server}: {message}")
            },
        }
    }

    /// What a script call for the lock whose keys are `names` (as the caller named them) was
    /// refused with, on the server at `server` (see [`server_name`]).
    pub fn refused(names: &[String], server: &str, refusal: Refusal) -> Self {
        match refusal {
            Refusal::OtherType { index, found } => Self::KeyType {
                key: names.get(index).unwrap_or(&names[0]).clone(),
                found,
            },
            Refusal::Text(text) => Self::connection(&names[0], server, &text),
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Self::Busy { key, .. }
            | Self::Lost { key }
            | Self::Released { key }
            | Self::Quorum { key, .. }
            | Self::Connection { key, .. }
            | Self::Aborted { key }
            | Self::Closed { key }
            | Self::KeyType { key, .. }
            | Self::Replication { key, .. }
            | Self::Internal { key, .. } => key,
        }
    }

    /// The same error about another key: one failed script call can carry several locks.
    pub fn for_key(&self, other: &str) -> Self {
        let mut error = self.clone();
        match &mut error {
            Self::Busy { key, .. }
            | Self::Lost { key }
            | Self::Released { key }
            | Self::Quorum { key, .. }
            | Self::Connection { key, .. }
            | Self::Aborted { key }
            | Self::Closed { key }
            | Self::Replication { key, .. }
            | Self::Internal { key, .. } => *key = other.to_owned(),
            // It names the key of another type, whichever lock met it.
            Self::KeyType { .. } => {}
        }
        error
    }

    /// The stable code users match on, as in the public contract.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Busy { .. } => "ELOCKBUSY",
            Self::Lost { .. } | Self::Released { .. } => "ELOCKLOST",
            Self::Quorum { .. } => "EQUORUM",
            Self::Connection { .. } | Self::Closed { .. } => "ECONNECTION",
            Self::Aborted { .. } => "ABORT_ERR",
            Self::KeyType { .. } => "EKEYTYPE",
            Self::Replication { .. } => "EREPLICAS",
            Self::Internal { .. } => "EINTERNAL",
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
            LockError::Released { key } => write!(
                f,
                "lock \"{key}\" is no longer ours: it was released already"
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
            LockError::KeyType { key, found } => {
                if let Some((_, infinitive, _)) = verb {
                    write!(f, "cannot {infinitive} \"{key}\": ")?;
                }
                write!(
                    f,
                    "key \"{key}\" holds a Redis {found}, not a lock (a lock is a string); \
                     something else stores its data under this name: lock another name, or \
                     delete the key if nothing uses it"
                )
            }
            LockError::Replication {
                key,
                acknowledged,
                wanted,
            } => write!(
                f,
                "lock \"{key}\" was given back, not granted: {acknowledged} of the {wanted} \
                 replicas asked for acknowledged it in time (replicas, replicasTimeout); a \
                 failover could have lost it. Check the replicas (INFO replication), or ask for \
                 fewer"
            ),
            LockError::Internal { key, what } => {
                match verb {
                    Some((gerund, _, _)) => write!(f, "internal error while {gerund}")?,
                    None => write!(f, "internal error for lock")?,
                }
                // Empty for a panic in a held lock's release or extend, whose key only JS knows.
                if !key.is_empty() {
                    write!(f, " \"{key}\"")?;
                }
                write!(
                    f,
                    ": {what}. This is a bug in ironlock, not in your code or your Redis; please \
                     report it at {REPORT_BUGS_AT} with this message"
                )
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_servers_name_says_where_its_address_came_from() {
        let name = |origin| server_name("127.0.0.1:6379", origin);
        assert_eq!(name(None), "127.0.0.1:6379");
        assert_eq!(
            name(Some(TargetOrigin::Argument)),
            "127.0.0.1:6379 (from the target argument)"
        );
        assert_eq!(
            name(Some(TargetOrigin::Environment)),
            "127.0.0.1:6379 (from REDIS_URL)"
        );
        assert_eq!(
            name(Some(TargetOrigin::Default)),
            "127.0.0.1:6379 (the built-in default, since REDIS_URL is not set)"
        );
    }

    #[test]
    fn what_the_server_did_is_said_of_it_and_the_rest_follows_its_name() {
        let server = server_name("127.0.0.1:6379", Some(TargetOrigin::Default));
        let refused = LockError::connection("k", &server, REFUSED);
        assert_eq!(
            refused.message_while(Doing::Locking),
            format!("Redis unavailable while locking \"k\": {server}: {REFUSED}")
        );
        let plain = LockError::connection("k", &server, NOT_TLS);
        assert_eq!(
            plain.to_string(),
            format!("Redis unavailable for lock \"k\": the server at {server} {NOT_TLS}")
        );
        assert!(connect_timed_out(Duration::from_millis(2500))
            .starts_with("no connection within 2500 ms; "));
    }

    #[test]
    fn a_key_of_another_type_is_named_with_the_type_found_whichever_lock_met_it() {
        let names = ["a".to_owned(), "b".to_owned()];
        let refusal = Refusal::OtherType {
            index: 1,
            found: "hash".into(),
        };
        let error = LockError::refused(&names, "127.0.0.1:7000", refusal);
        assert_eq!(
            error,
            LockError::KeyType {
                key: "b".into(),
                found: "hash".into(),
            }
        );
        assert_eq!(error.code(), "EKEYTYPE");
        assert_eq!(error.for_key("a"), error);
        assert!(error
            .message_while(Doing::Locking)
            .starts_with("cannot lock \"b\": key \"b\" holds a Redis hash, not a lock"));
        assert!(error
            .to_string()
            .starts_with("key \"b\" holds a Redis hash"));
        let text = LockError::refused(&names, "127.0.0.1:7000", Refusal::Text("OOM".into()));
        assert_eq!(text, LockError::connection("a", "127.0.0.1:7000", "OOM"));
    }

    #[test]
    fn a_replication_shortfall_says_the_lock_was_given_back_with_both_counts() {
        let error = LockError::Replication {
            key: "k".into(),
            acknowledged: 1,
            wanted: 2,
        };
        assert_eq!(error.code(), "EREPLICAS");
        assert_eq!(error.for_key("j").key(), "j");
        assert_eq!(
            error.message_while(Doing::Locking),
            "lock \"k\" was given back, not granted: 1 of the 2 replicas asked for acknowledged it \
             in time (replicas, replicasTimeout); a failover could have lost it. Check the \
             replicas (INFO replication), or ask for fewer"
        );
        assert_eq!(error.to_string(), error.message_while(Doing::Locking));
    }

    #[test]
    fn an_internal_error_says_it_is_a_bug_to_report_and_names_no_other_culprit() {
        let error = LockError::Internal {
            key: "k".into(),
            what: "a lock of 2 keys was offered for hand-over".into(),
        };
        assert_eq!(error.code(), "EINTERNAL");
        assert_eq!(error.for_key("j").key(), "j");
        assert_eq!(
            error.message_while(Doing::Releasing),
            format!(
                "internal error while releasing \"k\": a lock of 2 keys was offered for \
                 hand-over. This is a bug in ironlock, not in your code or your Redis; please \
                 report it at {REPORT_BUGS_AT} with this message"
            )
        );
        assert!(error
            .to_string()
            .starts_with("internal error for lock \"k\": a lock of 2 keys"));
        assert!(error
            .for_key("")
            .message_while(Doing::Extending)
            .starts_with("internal error while extending: a lock of 2 keys"));
    }
}
