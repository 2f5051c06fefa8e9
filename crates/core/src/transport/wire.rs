//! A connection to one Redis that does no I/O of its own: the caller writes the bytes it is given
//! and feeds back the bytes it reads, on whatever event loop it runs (sans-IO).
//!
//! It carries the hot path of a single Redis: one-key acquire attempts and releases, coalesced like
//! the topology's ([`chunks::MAX_BATCH`] locks per script call), and written and read by the same
//! [`crate::protocol`]. Driven from Node's own socket on the JS thread, a lock cycle crosses no
//! thread at all, where the tokio connection costs a hop to the runtime and one back for every
//! batch. Waiting, the watchdog, extend, multi-key locks and Redlock stay with the
//! [`crate::Lifecycle`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use crate::protocol::resp::ProtocolError;
use crate::protocol::resp::{self, Reply};

use crate::config::NodeConfig;
use crate::error::{server_name, LockError, NOT_REDIS};
use crate::protocol::chunks;
use crate::protocol::handshake::Handshake;
use crate::protocol::keys::LockKeys;
use crate::protocol::lock::{valid_until, HeldLock};
use crate::protocol::script_call::{Naming, ScriptCall};
use crate::protocol::script_reply::{self, Attempt, Refusal};
use crate::protocol::scripts;
use crate::protocol::token::new_token;

/// The wire's connection name in `CLIENT LIST`.
pub const CLIENT_NAME: &str = "ironlock-wire";

/// What became of one request: `A` and `R` are the caller's tags for acquires and releases.
#[derive(Debug)]
pub enum Event<A, R> {
    Acquired {
        tag: A,
        lock: HeldLock,
    },
    /// Someone else holds the key; `retry_after` is its remaining TTL (`None`: no TTL).
    Busy {
        tag: A,
        keys: Arc<LockKeys>,
        retry_after: Option<Duration>,
    },
    /// `give_back`: the token the attempt may have left on its key before it failed, to delete.
    AcquireFailed {
        tag: A,
        error: LockError,
        give_back: Option<(Arc<LockKeys>, String)>,
    },
    Released {
        tag: R,
        released: bool,
    },
    ReleaseFailed {
        tag: R,
        error: LockError,
    },
}

struct Acquire<A> {
    tag: A,
    keys: Arc<LockKeys>,
    token: String,
    ttl: Duration,
    /// Rendered once, when queued: the encoding borrows it.
    ttl_arg: String,
    started: SystemTime,
}

struct Release<R> {
    tag: R,
    keys: Arc<LockKeys>,
    token: String,
}

/// One command on its way, in the order Redis answers, with how it named its script.
enum Call<A, R> {
    /// AUTH, SELECT or CLIENT SETNAME, before anything else.
    Setup,
    Acquire(Vec<Acquire<A>>, Naming),
    Release(Vec<Release<R>>, Naming),
}

pub struct Wire<A, R> {
    /// How errors name the server (see [`server_name`]).
    label: String,
    drift_factor: f64,
    handshake: Handshake,
    setup_left: usize,
    acquires: Vec<Acquire<A>>,
    releases: Vec<Release<R>>,
    in_flight: VecDeque<Call<A, R>>,
    input: Vec<u8>,
}

impl<A, R> Wire<A, R> {
    /// A wire to `node`; TLS is the caller's socket's business, AUTH and SELECT are ours.
    pub fn new(node: &NodeConfig, drift_factor: f64) -> Self {
        Self {
            label: server_name(&node.label(), node.origin),
            drift_factor,
            handshake: Handshake::new(node, CLIENT_NAME),
            setup_left: usize::MAX,
            acquires: Vec::new(),
            releases: Vec::new(),
            in_flight: VecDeque::new(),
            input: Vec::new(),
        }
    }

    /// The first bytes of a new connection. Requests may be queued before its answers arrive.
    pub fn connected(&mut self, out: &mut Vec<u8>) {
        self.setup_left = self.handshake.commands();
        out.extend_from_slice(self.handshake.encoded());
        for _ in 0..self.setup_left {
            self.in_flight.push_back(Call::Setup);
        }
    }

    /// Connected, and Redis accepted the set-up commands.
    pub fn is_ready(&self) -> bool {
        self.setup_left == 0
    }

    /// Commands sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Queues one attempt at a one-key lock; it leaves with the next [`Wire::flush`].
    pub fn acquire(&mut self, tag: A, keys: Arc<LockKeys>, ttl: Duration) {
        debug_assert_eq!(
            keys.redis_keys.len(),
            1,
            "the wire takes one-key locks only"
        );
        self.acquires.push(Acquire {
            tag,
            keys,
            token: new_token(),
            ttl,
            ttl_arg: ttl.as_millis().to_string(),
            started: SystemTime::now(),
        });
    }

    /// Queues the release of a one-key lock.
    pub fn release(&mut self, tag: R, lock: &HeldLock) {
        self.releases.push(Release {
            tag,
            keys: lock.keys.clone(),
            token: lock.token.clone(),
        });
    }

    /// Writes every queued request to `out`: one script call per [`chunks::MAX_BATCH`] locks.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        for batch in chunks::split(std::mem::take(&mut self.acquires)) {
            self.send_acquires(out, batch, Naming::ByHash);
        }
        for batch in chunks::split(std::mem::take(&mut self.releases)) {
            self.send_releases(out, batch, Naming::ByHash);
        }
    }

    fn send_acquires(&mut self, out: &mut Vec<u8>, batch: Vec<Acquire<A>>, naming: Naming) {
        let mut call = ScriptCall::new(&scripts::ACQUIRE_EACH, 2 * batch.len(), 2 * batch.len());
        for attempt in &batch {
            call.key(&attempt.keys.redis_keys[0])
                .key(&attempt.keys.fence_keys[0]);
        }
        for attempt in &batch {
            call.arg(&attempt.token).arg(&attempt.ttl_arg);
        }
        resp::encode(out, call.command(naming));
        self.in_flight.push_back(Call::Acquire(batch, naming));
    }

    fn send_releases(&mut self, out: &mut Vec<u8>, batch: Vec<Release<R>>, naming: Naming) {
        let mut call = ScriptCall::new(&scripts::RELEASE_EACH, batch.len(), 2 * batch.len());
        for release in &batch {
            call.key(&release.keys.redis_keys[0]);
        }
        for release in &batch {
            call.arg(&release.token).arg(&release.keys.channels[0]);
        }
        resp::encode(out, call.command(naming));
        self.in_flight.push_back(Call::Release(batch, naming));
    }

    /// Reads what Redis sent. Finished requests go to `events`; bytes to send back (a script
    /// Redis did not know, sent again with its source) go to `out`. An `Err` means the
    /// connection is beyond repair: the caller closes it and calls [`Wire::fail`].
    pub fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        events: &mut Vec<Event<A, R>>,
    ) -> Result<(), String> {
        self.input.extend_from_slice(bytes);
        let mut used = 0;
        let outcome = loop {
            let reply = match resp::parse(&self.input[used..]) {
                Ok(Some((reply, len))) => {
                    used += len;
                    reply
                }
                Ok(None) => break Ok(()),
                // Not RESP: something else listens on the port (an HTTP server, say).
                Err(ProtocolError(_)) => break Err(NOT_REDIS.to_owned()),
            };
            let Some(call) = self.in_flight.pop_front() else {
                break Err(format!("{}: an answer nobody asked for", self.label));
            };
            if let Err(message) = self.answer(call, reply, out, events) {
                break Err(message);
            }
        };
        self.input.drain(..used);
        outcome
    }

    fn answer(
        &mut self,
        call: Call<A, R>,
        reply: Reply,
        out: &mut Vec<u8>,
        events: &mut Vec<Event<A, R>>,
    ) -> Result<(), String> {
        match (call, reply) {
            // The server's own words, e.g. WRONGPASS: they never echo the password.
            (Call::Setup, Reply::Error(message)) => Err(format!("{}: {message}", self.label)),
            (Call::Setup, _) => {
                self.setup_left -= 1;
                Ok(())
            }
            (Call::Acquire(batch, naming), reply) => {
                match resend_naming(naming, &reply) {
                    Some(naming) => self.send_acquires(out, batch, naming),
                    None => self.acquired(batch, reply, events),
                }
                Ok(())
            }
            (Call::Release(batch, naming), reply) => {
                match resend_naming(naming, &reply) {
                    Some(naming) => self.send_releases(out, batch, naming),
                    None => self.released(batch, reply, events),
                }
                Ok(())
            }
        }
    }

    fn acquired(&self, batch: Vec<Acquire<A>>, reply: Reply, events: &mut Vec<Event<A, R>>) {
        let outcomes = match script_reply::acquire_each(reply, batch.len()) {
            Ok(outcomes) => outcomes,
            Err(refusal) => {
                for attempt in batch {
                    let error = self.refused(&attempt.keys, refusal.clone());
                    events.push(attempt.failed(error));
                }
                return;
            }
        };
        for (attempt, outcome) in batch.into_iter().zip(outcomes) {
            events.push(match outcome {
                Ok(Attempt::Acquired { fence }) => Event::Acquired {
                    lock: HeldLock {
                        token: attempt.token,
                        fence,
                        ttl: attempt.ttl,
                        expires_at: valid_until(attempt.started, attempt.ttl, self.drift_factor),
                        keys: attempt.keys,
                    },
                    tag: attempt.tag,
                },
                // Who holds it does not matter here: the queue's first turn attempts again.
                Ok(Attempt::Busy { retry_after, .. }) => Event::Busy {
                    tag: attempt.tag,
                    keys: attempt.keys,
                    retry_after,
                },
                Err(refusal) => {
                    let error = self.refused(&attempt.keys, refusal);
                    attempt.failed(error)
                }
            });
        }
    }

    fn released(&self, batch: Vec<Release<R>>, reply: Reply, events: &mut Vec<Event<A, R>>) {
        let outcomes = match script_reply::release_each(reply, batch.len()) {
            Ok(outcomes) => outcomes,
            Err(refusal) => {
                for release in batch {
                    let error = self.refused(&release.keys, refusal.clone());
                    events.push(release.failed(error));
                }
                return;
            }
        };
        for (release, outcome) in batch.into_iter().zip(outcomes) {
            events.push(match outcome {
                Ok(released) => Event::Released {
                    tag: release.tag,
                    released,
                },
                Err(refusal) => {
                    let error = self.refused(&release.keys, refusal);
                    release.failed(error)
                }
            });
        }
    }

    /// Fails every request sent or queued: the connection is gone (`closed`: the locker was
    /// closed). An acquire that was sent may have taken its lock, so it comes with a give-back.
    /// Afterwards the wire waits for [`Wire::connected`] again.
    pub fn fail(&mut self, reason: &str, closed: bool, events: &mut Vec<Event<A, R>>) {
        let in_flight = std::mem::take(&mut self.in_flight);
        let queued_acquires = std::mem::take(&mut self.acquires);
        let queued_releases = std::mem::take(&mut self.releases);
        self.input.clear();
        self.setup_left = usize::MAX;
        let error = |key: &str| {
            if closed {
                LockError::Closed {
                    key: key.to_owned(),
                }
            } else {
                self.failure(key, reason)
            }
        };
        for call in in_flight {
            match call {
                Call::Setup => {}
                Call::Acquire(batch, _) => {
                    for attempt in batch {
                        let error = error(attempt.keys.first());
                        events.push(attempt.failed(error));
                    }
                }
                Call::Release(batch, _) => {
                    for release in batch {
                        let error = error(release.keys.first());
                        events.push(release.failed(error));
                    }
                }
            }
        }
        for attempt in queued_acquires {
            let error = error(attempt.keys.first());
            events.push(Event::AcquireFailed {
                tag: attempt.tag,
                error,
                give_back: None,
            });
        }
        for release in queued_releases {
            let error = error(release.keys.first());
            events.push(release.failed(error));
        }
    }

    fn failure(&self, key: &str, message: &str) -> LockError {
        LockError::connection(key, &self.label, message)
    }

    /// The error of a script call for the lock of `keys` that was refused with `refusal`.
    fn refused(&self, keys: &LockKeys, refusal: Refusal) -> LockError {
        LockError::refused(&keys.names, &self.label, refusal)
    }
}

impl<A> Acquire<A> {
    fn failed<R>(self, error: LockError) -> Event<A, R> {
        Event::AcquireFailed {
            tag: self.tag,
            error,
            give_back: Some((self.keys, self.token)),
        }
    }
}

impl<R> Release<R> {
    fn failed<A>(self, error: LockError) -> Event<A, R> {
        Event::ReleaseFailed {
            tag: self.tag,
            error,
        }
    }
}

/// How to send a call again that Redis answered with `reply`, if it should go again.
fn resend_naming(naming: Naming, reply: &Reply) -> Option<Naming> {
    match reply {
        Reply::Error(message) => naming.resend_after(message),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::protocol::chunks::MAX_BATCH;

    type TestWire = Wire<u32, u32>;

    fn keys(name: &str) -> Arc<LockKeys> {
        Arc::new(LockKeys::new("", [name.to_owned()]))
    }

    /// A wire past its set-up, as after a real connection.
    fn ready_wire() -> TestWire {
        let mut wire = TestWire::new(&NodeConfig::default(), 0.01);
        let mut out = Vec::new();
        wire.connected(&mut out);
        wire.feed(b"+OK\r\n", &mut out, &mut Vec::new()).unwrap();
        assert!(wire.is_ready());
        wire
    }

    fn feed(wire: &mut TestWire, bytes: &[u8]) -> (Vec<u8>, Vec<Event<u32, u32>>) {
        let mut out = Vec::new();
        let mut events = Vec::new();
        wire.feed(bytes, &mut out, &mut events).unwrap();
        (out, events)
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    }

    #[test]
    fn sets_up_auth_db_and_name_before_it_is_ready() {
        let node = NodeConfig {
            username: Some("app".into()),
            password: Some(Secret::new("hunter2")),
            db: 3,
            ..NodeConfig::default()
        };
        let mut wire = TestWire::new(&node, 0.01);
        assert!(!wire.is_ready(), "not ready before it is connected");
        let mut out = Vec::new();
        wire.connected(&mut out);
        assert!(contains(&out, "AUTH\r\n$3\r\napp\r\n$7\r\nhunter2"));
        assert!(contains(&out, "SELECT\r\n$1\r\n3"));
        assert!(contains(&out, CLIENT_NAME));
        let (_, events) = feed(&mut wire, b"+OK\r\n+OK\r\n");
        assert!(events.is_empty());
        assert!(!wire.is_ready(), "one set-up answer is still missing");
        feed(&mut wire, b"+OK\r\n");
        assert!(wire.is_ready());
    }

    #[test]
    fn a_refused_set_up_breaks_the_wire_without_naming_the_password() {
        let node = NodeConfig {
            password: Some(Secret::new("hunter2")),
            ..NodeConfig::default()
        };
        let mut wire = TestWire::new(&node, 0.01);
        wire.connected(&mut Vec::new());
        let broken = wire
            .feed(
                b"-WRONGPASS invalid username-password pair\r\n",
                &mut Vec::new(),
                &mut Vec::new(),
            )
            .unwrap_err();
        assert!(broken.contains("WRONGPASS"), "{broken}");
        assert!(!broken.contains("hunter2"), "{broken}");
    }

    #[test]
    fn answers_become_taken_busy_and_refused_locks() {
        let mut wire = ready_wire();
        let ttl = Duration::from_millis(10_000);
        for (tag, name) in ["a", "b", "c"].into_iter().enumerate() {
            wire.acquire(tag as u32, keys(name), ttl);
        }
        let mut out = Vec::new();
        wire.flush(&mut out);
        assert!(contains(&out, "EVALSHA"));
        assert_eq!(wire.in_flight(), 1, "three locks, one script call");
        let reply = b"*6\r\n:1\r\n:7\r\n:0\r\n:1500\r\n:-1\r\n$9\r\nOOM limit\r\n";
        let (_, events) = feed(&mut wire, reply);
        match &events[..] {
            [Event::Acquired { tag: 0, lock }, Event::Busy {
                tag: 1,
                retry_after,
                ..
            }, Event::AcquireFailed {
                tag: 2,
                error,
                give_back: Some((_, token)),
            }] => {
                assert_eq!(lock.fence, 7);
                assert_eq!(lock.key(), "a");
                assert_eq!(*retry_after, Some(Duration::from_millis(1500)));
                assert!(error.to_string().contains("OOM limit"), "{error}");
                assert_eq!(token.len(), 36, "the refused attempt's token, to give back");
            }
            other => panic!("unexpected events {other:?}"),
        }
        assert_eq!(wire.in_flight(), 0);
    }

    #[test]
    fn a_script_redis_does_not_know_is_sent_again_with_its_source() {
        let mut wire = ready_wire();
        wire.acquire(1, keys("a"), Duration::from_secs(1));
        wire.flush(&mut Vec::new());
        let (out, events) = feed(&mut wire, b"-NOSCRIPT No matching script.\r\n");
        assert!(events.is_empty(), "the attempt is still on its way");
        assert!(contains(&out, "EVAL\r\n"));
        assert!(contains(
            &out,
            "redis.call('SET', key, token, 'NX', 'PX', ttl)"
        ));
        assert_eq!(wire.in_flight(), 1);
        let (_, events) = feed(&mut wire, b"*2\r\n:1\r\n:1\r\n");
        assert!(matches!(events[..], [Event::Acquired { tag: 1, .. }]));
    }

    #[test]
    fn releases_report_whether_the_lock_was_still_ours() {
        let mut wire = ready_wire();
        wire.acquire(1, keys("a"), Duration::from_secs(1));
        wire.flush(&mut Vec::new());
        let (_, mut events) = feed(&mut wire, b"*2\r\n:1\r\n:1\r\n");
        let Some(Event::Acquired { lock, .. }) = events.pop() else {
            panic!("not acquired");
        };
        wire.release(8, &lock);
        wire.release(9, &lock);
        let mut out = Vec::new();
        wire.flush(&mut out);
        assert!(contains(&out, &lock.token));
        assert!(contains(&out, "{a}:released"));
        let (_, events) = feed(&mut wire, b"*2\r\n:1\r\n:0\r\n");
        assert!(matches!(
            events[..],
            [
                Event::Released {
                    tag: 8,
                    released: true
                },
                Event::Released {
                    tag: 9,
                    released: false
                }
            ]
        ));
    }

    #[test]
    fn a_lost_connection_fails_everything_and_gives_back_what_was_sent() {
        let mut wire = ready_wire();
        wire.acquire(1, keys("sent"), Duration::from_secs(1));
        wire.flush(&mut Vec::new());
        wire.acquire(2, keys("queued"), Duration::from_secs(1));
        let mut events = Vec::new();
        wire.fail("connection reset", false, &mut events);
        match &events[..] {
            [Event::AcquireFailed {
                tag: 1,
                error,
                give_back: Some(_),
            }, Event::AcquireFailed {
                tag: 2,
                give_back: None,
                ..
            }] => assert!(matches!(error, LockError::Connection { message, .. }
                if message == "127.0.0.1:6379: connection reset")),
            other => panic!("unexpected events {other:?}"),
        }
        assert!(!wire.is_ready(), "it waits for a new connection");
        assert_eq!(wire.in_flight(), 0);
    }

    #[test]
    fn a_large_burst_is_split_into_calls_of_at_most_max_batch() {
        let mut wire = ready_wire();
        for tag in 0..(MAX_BATCH as u32 + 2) {
            wire.acquire(tag, keys(&format!("k{tag}")), Duration::from_secs(1));
        }
        wire.flush(&mut Vec::new());
        assert_eq!(wire.in_flight(), 2);
    }

    #[test]
    fn an_answer_nobody_asked_for_breaks_the_wire() {
        let mut wire = ready_wire();
        let broken = wire
            .feed(b":1\r\n", &mut Vec::new(), &mut Vec::new())
            .unwrap_err();
        assert!(broken.contains("nobody asked for"), "{broken}");
    }
}
