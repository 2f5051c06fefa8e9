//! One Redis's one-key calls over the wire ([`crate::transport::wire`]): the attempts and
//! releases the session puts there, coalesced into script calls as on the runtime's connection
//! ([`super::one_key`]), and each reply read back into what it says of each lock. The wire only
//! carries the calls; what they mean is decided here, as for every other transport of a topology.
//! A Redis Cluster's master is one Redis too (`crate::topology::ShardWires` routes to it): its
//! calls go one per hash slot, and what it answers MOVED, ASK, TRYAGAIN or CLUSTERDOWN ran nothing
//! and goes back for the runtime's connection, which follows the cluster.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{NodeConfig, SentinelConfig};
use crate::error::LockError;
use crate::protocol::chunks::per_slot;
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
    /// Releases on a Redis Cluster master, announced on their keys' shard (every key in one slot).
    ShardedReleases(Releases<R>),
}

impl<A, R> WireCall for OneKeyCall<A, R> {
    fn script_call(&self) -> ScriptCall<'_> {
        match self {
            Self::Acquires(acquires) => acquires.call(),
            Self::Releases(releases) => releases.call(),
            Self::ShardedReleases(releases) => releases.sharded_call(),
        }
    }
}

/// Where the session puts the one-key calls the wire carries: one Redis's [`WireCalls`], or a
/// Redis Cluster's, one per master (`crate::topology::ShardWires`). A call the wire cannot take
/// now (a lock of several keys, a master whose socket is not ready) comes back, for the runtime.
pub trait OneKeyWire<A, R> {
    /// Queues an attempt at the one-key lock `keys` with `token`, to leave with the next flush.
    fn acquire(
        &mut self,
        tag: A,
        keys: &Arc<LockKeys>,
        token: String,
        ttl: Duration,
    ) -> Result<(), A>;

    /// Queues the release of the one-key lock `keys` held by `token`.
    fn release(&mut self, tag: R, keys: &Arc<LockKeys>, token: String) -> Result<(), R>;
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
    /// A Redis Cluster master's: calls per hash slot, releases announced on the shard, and
    /// redirections sent back.
    in_cluster: bool,
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

    /// The calls to `master`, a master of a Redis Cluster, for the slots it serves.
    pub fn to_cluster_master(master: &NodeConfig) -> Self {
        Self {
            in_cluster: true,
            ..Self::over(Wire::new(master))
        }
    }

    fn over(wire: Wire<OneKeyCall<A, R>>) -> Self {
        Self {
            wire,
            in_cluster: false,
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
    /// [`crate::protocol::chunks::MAX_BATCH`] locks (on a Redis Cluster, of one hash slot).
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        let (acquires, releases) = (
            std::mem::take(&mut self.acquires),
            std::mem::take(&mut self.releases),
        );
        if self.in_cluster {
            for (_, chunk) in per_slot(acquires.into_iter(), |(attempt, _)| attempt.slot()) {
                self.wire.send(OneKeyCall::Acquires(Acquires(chunk)), out);
            }
            for (_, chunk) in per_slot(releases.into_iter(), |(release, _)| release.slot()) {
                self.wire
                    .send(OneKeyCall::ShardedReleases(Releases(chunk)), out);
            }
            return;
        }
        for acquires in Acquires::split(acquires) {
            self.wire.send(OneKeyCall::Acquires(acquires), out);
        }
        for releases in Releases::split(releases) {
            self.wire.send(OneKeyCall::Releases(releases), out);
        }
    }

    /// Reads what Redis sent: the requests it finished go to `answers`; on a Redis Cluster, those
    /// it redirected (nothing ran) go to `elsewhere`, with the redirection as their error. An
    /// `Err` means the connection is beyond repair (see [`Wire::feed`]).
    pub fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        answers: &mut Vec<WireAnswer<A, R>>,
        elsewhere: &mut Vec<WireAnswer<A, R>>,
    ) -> Result<(), Broken> {
        let mut answered = Vec::new();
        let outcome = self.wire.feed(bytes, out, &mut answered);
        for (call, reply) in answered {
            match reply {
                Reply::Error(message) if self.in_cluster && is_redirection(&message) => {
                    let error = LockError::connection("", self.wire.server(), &message);
                    self.answer(call, Err(error), elsewhere);
                }
                reply => self.answer(call, Ok(reply), answers),
            }
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
                OneKeyCall::Releases(releases) | OneKeyCall::ShardedReleases(releases) => {
                    releases.first_name()
                }
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
            OneKeyCall::Releases(releases) | OneKeyCall::ShardedReleases(releases) => answers
                .extend(
                    releases
                        .answers(reply, &refused)
                        .into_iter()
                        .map(|(_, tag, outcome)| WireAnswer::Released { tag, outcome }),
                ),
        }
    }
}

impl<A, R> OneKeyWire<A, R> for WireCalls<A, R> {
    fn acquire(
        &mut self,
        tag: A,
        keys: &Arc<LockKeys>,
        token: String,
        ttl: Duration,
    ) -> Result<(), A> {
        WireCalls::acquire(self, tag, keys, token, ttl)
    }

    fn release(&mut self, tag: R, keys: &Arc<LockKeys>, token: String) -> Result<(), R> {
        WireCalls::release(self, tag, keys, token)
    }
}

/// Whether a Redis Cluster master's error says the call ran nothing there and belongs elsewhere
/// or later: its slot is served by another master (MOVED), is moving (ASK, TRYAGAIN), or the
/// cluster is down (CLUSTERDOWN).
fn is_redirection(message: &str) -> bool {
    let code = message.split(' ').next().unwrap_or_default();
    matches!(code, "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN")
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
        calls
            .feed(b"+OK\r\n", &mut out, &mut Vec::new(), &mut Vec::new())
            .unwrap();
        assert!(calls.is_ready());
        calls
    }

    fn feed(calls: &mut TestCalls, bytes: &[u8]) -> Vec<WireAnswer<u32, u32>> {
        let mut answers = Vec::new();
        let mut elsewhere = Vec::new();
        calls
            .feed(bytes, &mut Vec::new(), &mut answers, &mut elsewhere)
            .unwrap();
        assert!(elsewhere.is_empty(), "one Redis redirects nothing");
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

    /// Calls to a Redis Cluster master past its set-up.
    fn ready_in_cluster() -> TestCalls {
        let mut calls = TestCalls::to_cluster_master(&NodeConfig::default());
        let mut out = Vec::new();
        calls.connected(("127.0.0.1".into(), 30001), &mut out);
        calls
            .feed(b"+OK\r\n", &mut out, &mut Vec::new(), &mut Vec::new())
            .unwrap();
        calls
    }

    #[test]
    fn on_a_cluster_master_calls_go_one_per_slot_and_releases_announce_on_the_shard() {
        let mut calls = ready_in_cluster();
        let ttl = Duration::from_secs(1);
        // "a" and "{a}:b" share a slot, "b" has its own.
        for (tag, name) in ["a", "b", "{a}:b"].into_iter().enumerate() {
            calls
                .acquire(tag as u32, &keys(name), "t".into(), ttl)
                .unwrap();
        }
        calls.release(9, &keys("a"), "t".into()).unwrap();
        let mut out = Vec::new();
        calls.flush(&mut out);
        assert_eq!(
            calls.in_flight(),
            3,
            "two slots' attempts, one slot's release"
        );
        assert!(contains(
            &out,
            crate::protocol::scripts::RELEASE_EACH_SHARDED.hash()
        ));
        assert!(!contains(
            &out,
            crate::protocol::scripts::RELEASE_EACH.hash()
        ));
        let answers = feed(
            &mut calls,
            b"*4\r\n:1\r\n:1\r\n:1\r\n:2\r\n*2\r\n:1\r\n:3\r\n*1\r\n:1\r\n",
        );
        let tags: Vec<u32> = answers
            .iter()
            .map(|answer| match answer {
                WireAnswer::Attempted {
                    tag,
                    outcome: Ok(_),
                } => *tag,
                WireAnswer::Released {
                    tag,
                    outcome: Ok(true),
                } => *tag,
                other => panic!("unexpected answer {other:?}"),
            })
            .collect();
        assert_eq!(tags, [0, 2, 1, 9]);
    }

    #[test]
    fn a_redirected_call_ran_nothing_and_goes_elsewhere() {
        for redirection in [
            "MOVED 15495 127.0.0.1:30003",
            "ASK 15495 127.0.0.1:30003",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
        ] {
            let mut calls = ready_in_cluster();
            let ttl = Duration::from_secs(1);
            calls.acquire(1, &keys("a"), "t1".into(), ttl).unwrap();
            calls.release(2, &keys("b"), "t2".into()).unwrap();
            calls.flush(&mut Vec::new());
            let (mut answers, mut elsewhere) = (Vec::new(), Vec::new());
            let reply = format!("-{redirection}\r\n*1\r\n:1\r\n");
            calls
                .feed(
                    reply.as_bytes(),
                    &mut Vec::new(),
                    &mut answers,
                    &mut elsewhere,
                )
                .unwrap();
            assert!(
                matches!(&elsewhere[..], [WireAnswer::Attempted { tag: 1, outcome: Err(error) }]
                    if error.key() == "a" && error.to_string().contains(redirection)),
                "{redirection}: {elsewhere:?}"
            );
            assert!(
                matches!(
                    &answers[..],
                    [WireAnswer::Released {
                        tag: 2,
                        outcome: Ok(true)
                    }]
                ),
                "{redirection}: the call after it is answered: {answers:?}"
            );
            assert_eq!(calls.in_flight(), 0);
        }
    }

    #[test]
    fn one_redis_reads_a_moved_as_the_error_it_is() {
        let mut calls = ready();
        calls
            .acquire(1, &keys("a"), "t".into(), Duration::from_secs(1))
            .unwrap();
        calls.flush(&mut Vec::new());
        assert!(matches!(
            &feed(&mut calls, b"-MOVED 15495 127.0.0.1:30003\r\n")[..],
            [WireAnswer::Attempted {
                tag: 1,
                outcome: Err(_)
            }]
        ));
    }
}
