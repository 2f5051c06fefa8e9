//! One Redis's one-key calls over the wire ([`crate::transport::wire`]): the attempts and
//! releases the session puts there, coalesced into script calls as on the runtime's connection
//! ([`super::one_key`]), and each reply read back into what it says of each lock. The wire only
//! carries the calls; what they mean is decided here, as for every other transport of a topology.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{NodeConfig, SentinelConfig};
use crate::error::LockError;
use crate::protocol::keys::LockKeys;
use crate::protocol::resp::Reply;
use crate::protocol::script_call::ScriptCall;
use crate::protocol::script_reply::{Attempt, Refusal};
use crate::transport::wire::{Broken, Wire, WireCall};

use super::one_key::{Acquires, OneKeyAcquire, OneKeyRelease, Releases};

/// One script call on the wire: attempts tagged `A`, or releases tagged `R`.
pub enum OneKeyCall<A, R> {
    Acquires(Acquires<A>),
    Releases(Releases<R>),
}

impl<A, R> WireCall for OneKeyCall<A, R> {
    fn script_call(&self) -> ScriptCall<'_> {
        match self {
            Self::Acquires(acquires) => acquires.call(),
            Self::Releases(releases) => releases.call(),
        }
    }
}

/// What became of one request on the wire.
#[derive(Debug)]
pub enum WireAnswer<A, R> {
    Attempted {
        tag: A,
        outcome: Result<Attempt, LockError>,
    },
    Released {
        tag: R,
        outcome: Result<bool, LockError>,
    },
}

pub struct WireCalls<A, R> {
    wire: Wire<OneKeyCall<A, R>>,
    acquires: Vec<(OneKeyAcquire, A)>,
    releases: Vec<(OneKeyRelease, R)>,
}

impl<A, R> WireCalls<A, R> {
    /// The calls of one Redis, `node`, over a wire to it.
    pub fn new(node: &NodeConfig) -> Self {
        Self::over(Wire::new(node))
    }

    /// The calls to the master `sentinels` name (see [`Wire::to_master`]).
    pub fn to_master(sentinels: &SentinelConfig) -> Self {
        Self::over(Wire::to_master(sentinels))
    }

    fn over(wire: Wire<OneKeyCall<A, R>>) -> Self {
        Self {
            wire,
            acquires: Vec::new(),
            releases: Vec::new(),
        }
    }

    /// See [`Wire::connected`].
    pub fn connected(&mut self, address: (String, u16), out: &mut Vec<u8>) {
        self.wire.connected(address, out);
    }

    /// See [`Wire::address`].
    pub fn address(&self) -> Option<&(String, u16)> {
        self.wire.address()
    }

    /// See [`Wire::retire`].
    pub fn retire(&mut self, reason: String, out: &mut Vec<u8>) {
        self.wire.retire(reason, out);
    }

    /// See [`Wire::is_ready`].
    pub fn is_ready(&self) -> bool {
        self.wire.is_ready()
    }

    /// See [`Wire::in_flight`].
    pub fn in_flight(&self) -> usize {
        self.wire.in_flight()
    }

    /// Queues an attempt at the one-key lock `keys` with `token`, to leave with the next
    /// [`WireCalls::flush`]; a lock of several keys is not the wire's, and comes back.
    pub fn acquire(
        &mut self,
        tag: A,
        keys: &Arc<LockKeys>,
        token: String,
        ttl: Duration,
    ) -> Result<(), A> {
        match OneKeyAcquire::shared(keys, token, ttl) {
            Some(attempt) => {
                self.acquires.push((attempt, tag));
                Ok(())
            }
            None => Err(tag),
        }
    }

    /// Queues the release of the one-key lock `keys` held by `token`; a lock of several keys
    /// comes back.
    pub fn release(&mut self, tag: R, keys: &Arc<LockKeys>, token: String) -> Result<(), R> {
        if keys.redis_keys.len() != 1 {
            return Err(tag);
        }
        self.releases
            .push((OneKeyRelease::shared(keys, 0, token), tag));
        Ok(())
    }

    /// Writes every queued request to `out`, in calls of at most
    /// [`crate::protocol::chunks::MAX_BATCH`] locks.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        for acquires in Acquires::split(std::mem::take(&mut self.acquires)) {
            self.wire.send(OneKeyCall::Acquires(acquires), out);
        }
        for releases in Releases::split(std::mem::take(&mut self.releases)) {
            self.wire.send(OneKeyCall::Releases(releases), out);
        }
    }

    /// Reads what Redis sent: the requests it finished go to `answers`. An `Err` means the
    /// connection is beyond repair (see [`Wire::feed`]).
    pub fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        answers: &mut Vec<WireAnswer<A, R>>,
    ) -> Result<(), Broken> {
        let mut answered = Vec::new();
        let outcome = self.wire.feed(bytes, out, &mut answered);
        for (call, reply) in answered {
            self.answer(call, Ok(reply), answers);
        }
        outcome
    }

    /// Fails every request sent or queued with `reason` (`closed`: the locker was closed). An
    /// attempt that was sent may have taken its lock: its caller gives its token back. The wire
    /// then waits for [`WireCalls::connected`] again.
    pub fn fail(&mut self, reason: &str, closed: bool, answers: &mut Vec<WireAnswer<A, R>>) {
        let server = self.wire.server().to_owned();
        let error = |key: &str| {
            if closed {
                LockError::Closed {
                    key: key.to_owned(),
                }
            } else {
                LockError::connection(key, &server, reason)
            }
        };
        let unsent_acquires = Acquires::split(std::mem::take(&mut self.acquires));
        let unsent_releases = Releases::split(std::mem::take(&mut self.releases));
        let calls = self.wire.fail().into_iter().chain(
            unsent_acquires
                .map(OneKeyCall::Acquires)
                .chain(unsent_releases.map(OneKeyCall::Releases)),
        );
        for call in calls {
            let key = match &call {
                OneKeyCall::Acquires(acquires) => acquires.first_name(),
                OneKeyCall::Releases(releases) => releases.first_name(),
            };
            let error = error(key);
            self.answer(call, Err(error), answers);
        }
    }

    fn answer(
        &self,
        call: OneKeyCall<A, R>,
        reply: Result<Reply, LockError>,
        answers: &mut Vec<WireAnswer<A, R>>,
    ) {
        let server = self.wire.server();
        let refused =
            |names: &[String], refusal: Refusal| LockError::refused(names, server, refusal);
        match call {
            OneKeyCall::Acquires(acquires) => answers.extend(
                acquires
                    .answers(reply, &refused)
                    .into_iter()
                    .map(|(_, tag, outcome)| WireAnswer::Attempted { tag, outcome }),
            ),
            OneKeyCall::Releases(releases) => answers.extend(
                releases
                    .answers(reply, &refused)
                    .into_iter()
                    .map(|(_, tag, outcome)| WireAnswer::Released { tag, outcome }),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::protocol::chunks::MAX_BATCH;

    type TestCalls = WireCalls<u32, u32>;

    fn keys(name: &str) -> Arc<LockKeys> {
        Arc::new(LockKeys::new("", [name.to_owned()]))
    }

    /// Calls over a wire past its set-up, as after a real connection.
    fn ready() -> TestCalls {
        let mut calls = TestCalls::new(&NodeConfig::default());
        let mut out = Vec::new();
        calls.connected(("127.0.0.1".into(), 6379), &mut out);
        calls.feed(b"+OK\r\n", &mut out, &mut Vec::new()).unwrap();
        assert!(calls.is_ready());
        calls
    }

    fn feed(calls: &mut TestCalls, bytes: &[u8]) -> Vec<WireAnswer<u32, u32>> {
        let mut answers = Vec::new();
        calls.feed(bytes, &mut Vec::new(), &mut answers).unwrap();
        answers
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    }

    #[test]
    fn attempts_asked_together_go_as_one_call_and_read_back_lock_by_lock() {
        let mut calls = ready();
        let ttl = Duration::from_millis(10_000);
        for (tag, name) in ["a", "b", "c"].into_iter().enumerate() {
            calls
                .acquire(tag as u32, &keys(name), format!("token-{name}"), ttl)
                .unwrap();
        }
        let mut out = Vec::new();
        calls.flush(&mut out);
        assert!(contains(&out, "EVALSHA"));
        assert!(contains(&out, "token-b") && contains(&out, "10000"));
        assert_eq!(calls.in_flight(), 1, "three locks, one script call");
        let reply = b"*6\r\n:1\r\n:7\r\n:0\r\n:1500\r\n:-1\r\n$9\r\nOOM limit\r\n";
        match &feed(&mut calls, reply)[..] {
            [WireAnswer::Attempted {
                tag: 0,
                outcome: Ok(Attempt::Acquired { fence: 7 }),
            }, WireAnswer::Attempted {
                tag: 1,
                outcome:
                    Ok(Attempt::Busy {
                        retry_after: Some(retry_after),
                        foreign: false,
                    }),
            }, WireAnswer::Attempted {
                tag: 2,
                outcome: Err(error),
            }] => {
                assert_eq!(*retry_after, Duration::from_millis(1500));
                assert!(error.to_string().contains("OOM limit"), "{error}");
                assert_eq!(error.key(), "c", "each lock's error names its own key");
            }
            other => panic!("unexpected answers {other:?}"),
        }
        assert_eq!(calls.in_flight(), 0);
    }

    #[test]
    fn releases_report_whether_the_lock_was_still_ours() {
        let mut calls = ready();
        calls.release(8, &keys("a"), "token".into()).unwrap();
        calls.release(9, &keys("a"), "token".into()).unwrap();
        let mut out = Vec::new();
        calls.flush(&mut out);
        assert!(contains(&out, "{a}:released"));
        assert!(matches!(
            feed(&mut calls, b"*2\r\n:1\r\n:0\r\n")[..],
            [
                WireAnswer::Released {
                    tag: 8,
                    outcome: Ok(true)
                },
                WireAnswer::Released {
                    tag: 9,
                    outcome: Ok(false)
                }
            ]
        ));
    }

    #[test]
    fn a_lock_of_several_keys_is_not_the_wires() {
        let mut calls = ready();
        let two = Arc::new(LockKeys::new("", ["a".to_owned(), "b".to_owned()]));
        assert_eq!(
            calls.acquire(1, &two, "t".into(), Duration::from_secs(1)),
            Err(1)
        );
        assert_eq!(calls.release(2, &two, "t".into()), Err(2));
        let mut out = Vec::new();
        calls.flush(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_lost_connection_fails_everything_it_carried_naming_the_server() {
        let mut calls = ready();
        calls
            .acquire(1, &keys("sent"), "t1".into(), Duration::from_secs(1))
            .unwrap();
        calls.flush(&mut Vec::new());
        calls.release(2, &keys("queued"), "t2".into()).unwrap();
        let mut answers = Vec::new();
        calls.fail("connection reset", false, &mut answers);
        match &answers[..] {
            [WireAnswer::Attempted {
                tag: 1,
                outcome: Err(sent),
            }, WireAnswer::Released {
                tag: 2,
                outcome: Err(queued),
            }] => {
                assert!(matches!(sent, LockError::Connection { key, message }
                    if key == "sent" && message == "127.0.0.1:6379: connection reset"));
                assert_eq!(queued.key(), "queued");
            }
            other => panic!("unexpected answers {other:?}"),
        }
        assert!(!calls.is_ready(), "it waits for a new connection");
        assert_eq!(calls.in_flight(), 0);
    }

    #[test]
    fn a_closed_locker_fails_what_the_wire_carried_as_closed() {
        let mut calls = ready();
        calls
            .acquire(1, &keys("k"), "t".into(), Duration::from_secs(1))
            .unwrap();
        calls.flush(&mut Vec::new());
        let mut answers = Vec::new();
        calls.fail("the locker was closed", true, &mut answers);
        assert!(matches!(
            &answers[..],
            [WireAnswer::Attempted {
                outcome: Err(LockError::Closed { key }),
                ..
            }] if key == "k"
        ));
    }

    #[test]
    fn a_large_burst_is_split_into_calls_of_at_most_max_batch() {
        let mut calls = ready();
        for tag in 0..(MAX_BATCH as u32 + 2) {
            calls
                .acquire(
                    tag,
                    &keys(&format!("k{tag}")),
                    "t".into(),
                    Duration::from_secs(1),
                )
                .unwrap();
        }
        calls.flush(&mut Vec::new());
        assert_eq!(calls.in_flight(), 2);
    }
}
