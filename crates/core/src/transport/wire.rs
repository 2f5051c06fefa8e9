//! A connection to one Redis that does no I/O of its own: the caller writes the bytes it is given
//! and feeds back the bytes it reads, on whatever event loop it runs (sans-IO).
//!
//! A transport and nothing more: it sets the connection up (AUTH, SELECT, `CLIENT SETNAME`),
//! writes the script calls a topology built, sends a call again with its script's source when
//! Redis did not know the script, and hands each reply back with the call it answers. What a call
//! means, and what its reply says of a lock, is the topology's
//! ([`crate::topology::WireCalls`]). Driven from Node's own socket on the JS thread, a
//! lock cycle crosses no thread at all.

use std::collections::VecDeque;

pub use crate::protocol::resp::ProtocolError;
use crate::protocol::resp::{self, Reply};

use crate::config::{NodeConfig, SentinelConfig};
use crate::error::{server_name, NOT_REDIS};
use crate::protocol::handshake::Handshake;
use crate::protocol::script_call::{Naming, ScriptCall};

/// The wire's connection name in `CLIENT LIST`.
pub const CLIENT_NAME: &str = "ironlock-wire";

/// A script call the wire can carry: it is asked for the call's words again should the call go
/// again with its source.
pub trait WireCall {
    fn script_call(&self) -> ScriptCall<'_>;
}

/// One command on its way, in the order Redis answers.
enum InFlight<C> {
    /// AUTH, SELECT or CLIENT SETNAME, before anything else.
    Setup,
    /// `ROLE`, last of the set-up, where the server must be a master (behind Sentinel).
    RoleCheck,
    /// A `PING` whose answer ends the connection: the master is elsewhere now.
    Retired(String),
    Call(C, Naming),
}

/// Why the connection is beyond repair: the caller closes it and calls [`Wire::fail`].
#[derive(Debug, PartialEq, Eq)]
pub enum Broken {
    /// What was sent and not answered fails with this reason.
    Failed(String),
    /// The server is not (or no longer) the master: nothing sent ran there, and it all goes
    /// again on a connection to the master.
    NotMaster(String),
}

pub struct Wire<C> {
    /// How errors name the server (see [`server_name`]).
    server: String,
    handshake: Handshake,
    /// Whether the set-up ends with `ROLE`, which must say master.
    checks_role: bool,
    /// Where the caller's socket is connected.
    address: Option<(String, u16)>,
    setup_left: usize,
    in_flight: VecDeque<InFlight<C>>,
    input: Vec<u8>,
}

impl<C: WireCall> Wire<C> {
    /// A wire to `node`; TLS is the caller's socket's business, AUTH and SELECT are ours.
    pub fn new(node: &NodeConfig) -> Self {
        Self::named(node, server_name(&node.label(), node.origin), false)
    }

    /// A wire to the master `sentinels` name, dialled wherever it is: `master` gives its
    /// credentials, database and TLS settings, and each connection checks it reached a master.
    pub fn to_master(sentinels: &SentinelConfig) -> Self {
        Self::named(&sentinels.master, sentinels.label(), true)
    }

    fn named(node: &NodeConfig, server: String, checks_role: bool) -> Self {
        Self {
            server,
            handshake: Handshake::new(node, CLIENT_NAME),
            checks_role,
            address: None,
            setup_left: usize::MAX,
            in_flight: VecDeque::new(),
            input: Vec::new(),
        }
    }

    /// How errors name the server.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The first bytes of a new connection, to `address`. Calls may be sent before its
    /// answers arrive.
    pub fn connected(&mut self, address: (String, u16), out: &mut Vec<u8>) {
        self.address = Some(address);
        self.setup_left = self.handshake.commands();
        out.extend_from_slice(self.handshake.encoded());
        for _ in 0..self.setup_left {
            self.in_flight.push_back(InFlight::Setup);
        }
        if self.checks_role {
            resp::encode(out, ["ROLE"]);
            self.setup_left += 1;
            self.in_flight.push_back(InFlight::RoleCheck);
        }
    }

    /// Connected, and Redis accepted the set-up commands.
    pub fn is_ready(&self) -> bool {
        self.setup_left == 0
    }

    /// Where the caller's socket is connected, once it is.
    pub fn address(&self) -> Option<&(String, u16)> {
        self.address.as_ref()
    }

    /// Ends the connection because the master is elsewhere now: nothing more goes on it, and
    /// the answer to a `PING` written to `out` (after every call sent before it is answered)
    /// breaks it with `reason`, so that the caller's socket closes and dials anew.
    pub fn retire(&mut self, reason: String, out: &mut Vec<u8>) {
        resp::encode(out, ["PING"]);
        self.setup_left = usize::MAX;
        self.in_flight.push_back(InFlight::Retired(reason));
    }

    /// Commands sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Writes `call` to `out`, naming its script by hash.
    pub fn send(&mut self, call: C, out: &mut Vec<u8>) {
        self.send_named(call, Naming::ByHash, out);
    }

    fn send_named(&mut self, call: C, naming: Naming, out: &mut Vec<u8>) {
        resp::encode(out, call.script_call().command(naming));
        self.in_flight.push_back(InFlight::Call(call, naming));
    }

    /// Reads what Redis sent. Answered calls go to `answered` with their replies; bytes to send
    /// back (a script Redis did not know, sent again with its source) go to `out`. An `Err` means
    /// the connection is beyond repair: the caller closes it and calls [`Wire::fail`].
    pub fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        answered: &mut Vec<(C, Reply)>,
    ) -> Result<(), Broken> {
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
                Err(ProtocolError(_)) => break Err(Broken::Failed(NOT_REDIS.to_owned())),
            };
            match self.in_flight.pop_front() {
                None => {
                    let reason = format!("{}: an answer nobody asked for", self.server);
                    break Err(Broken::Failed(reason));
                }
                // The server's own words, e.g. WRONGPASS: they never echo the password.
                Some(InFlight::Setup) => match reply {
                    Reply::Error(message) => {
                        break Err(Broken::Failed(format!("{}: {message}", self.server)))
                    }
                    _ => self.setup_left -= 1,
                },
                Some(InFlight::RoleCheck) => match role(&reply) {
                    Some("master") => self.setup_left -= 1,
                    role => {
                        let role = role.unwrap_or("nothing a role");
                        let reason = format!("{}: not the master (ROLE says {role})", self.server);
                        break Err(Broken::NotMaster(reason));
                    }
                },
                Some(InFlight::Retired(reason)) => break Err(Broken::NotMaster(reason)),
                // A master demoted under the wire: a refused write ran nothing.
                Some(InFlight::Call(call, naming)) if matches!(&reply, Reply::Error(message) if message.starts_with("READONLY")) =>
                {
                    self.in_flight.push_front(InFlight::Call(call, naming));
                    let reason = format!("{}: no longer the master (READONLY)", self.server);
                    break Err(Broken::NotMaster(reason));
                }
                Some(InFlight::Call(call, naming)) => {
                    let resend = match &reply {
                        Reply::Error(message) => naming.resend_after(message),
                        _ => None,
                    };
                    match resend {
                        Some(naming) => self.send_named(call, naming, out),
                        None => answered.push((call, reply)),
                    }
                }
            }
        };
        self.input.drain(..used);
        outcome
    }

    /// The connection is gone: every call sent and not answered, for the caller to fail (each
    /// may have run). Afterwards the wire waits for [`Wire::connected`] again.
    pub fn fail(&mut self) -> Vec<C> {
        self.input.clear();
        self.setup_left = usize::MAX;
        self.address = None;
        std::mem::take(&mut self.in_flight)
            .into_iter()
            .filter_map(|sent| match sent {
                InFlight::Setup | InFlight::RoleCheck | InFlight::Retired(_) => None,
                InFlight::Call(call, _) => Some(call),
            })
            .collect()
    }
}

/// The first word of a `ROLE` reply: `master`, `slave` or `sentinel`.
fn role(reply: &Reply) -> Option<&str> {
    match reply {
        Reply::Array(Some(words)) => match words.first() {
            Some(Reply::Bulk(Some(word))) => std::str::from_utf8(word).ok(),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::protocol::scripts;

    /// A release call of one key, tagged so the test can tell the calls apart.
    struct TestCall(u32);

    impl WireCall for TestCall {
        fn script_call(&self) -> ScriptCall<'_> {
            let mut call = ScriptCall::new(&scripts::RELEASE_EACH, 1, 2);
            call.key("k").arg("token").arg("{k}:released");
            call
        }
    }

    fn address() -> (String, u16) {
        ("127.0.0.1".into(), 6379)
    }

    /// A wire past its set-up, as after a real connection.
    fn ready_wire() -> Wire<TestCall> {
        let mut wire = Wire::new(&NodeConfig::default());
        let mut out = Vec::new();
        wire.connected(address(), &mut out);
        wire.feed(b"+OK\r\n", &mut out, &mut Vec::new()).unwrap();
        assert!(wire.is_ready());
        wire
    }

    fn feed(wire: &mut Wire<TestCall>, bytes: &[u8]) -> (Vec<u8>, Vec<(TestCall, Reply)>) {
        let mut out = Vec::new();
        let mut answered = Vec::new();
        wire.feed(bytes, &mut out, &mut answered).unwrap();
        (out, answered)
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
        let mut wire = Wire::<TestCall>::new(&node);
        assert!(!wire.is_ready(), "not ready before it is connected");
        let mut out = Vec::new();
        wire.connected(address(), &mut out);
        assert!(contains(&out, "AUTH\r\n$3\r\napp\r\n$7\r\nhunter2"));
        assert!(contains(&out, "SELECT\r\n$1\r\n3"));
        assert!(contains(&out, CLIENT_NAME));
        let (_, answered) = feed(&mut wire, b"+OK\r\n+OK\r\n");
        assert!(answered.is_empty());
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
        let mut wire = Wire::<TestCall>::new(&node);
        wire.connected(address(), &mut Vec::new());
        let broken = wire
            .feed(
                b"-WRONGPASS invalid username-password pair\r\n",
                &mut Vec::new(),
                &mut Vec::new(),
            )
            .unwrap_err();
        let Broken::Failed(broken) = broken else {
            panic!("{broken:?}");
        };
        assert!(broken.contains("WRONGPASS"), "{broken}");
        assert!(!broken.contains("hunter2"), "{broken}");
    }

    #[test]
    fn replies_come_back_with_their_calls_in_order() {
        let mut wire = ready_wire();
        let mut out = Vec::new();
        wire.send(TestCall(1), &mut out);
        wire.send(TestCall(2), &mut out);
        assert!(contains(&out, "EVALSHA"));
        assert_eq!(wire.in_flight(), 2);
        let (_, answered) = feed(&mut wire, b"*1\r\n:1\r\n*1\r\n:0");
        assert!(matches!(&answered[..], [(TestCall(1), Reply::Array(_))]));
        let (_, answered) = feed(&mut wire, b"\r\n");
        assert!(matches!(&answered[..], [(TestCall(2), Reply::Array(_))]));
        assert_eq!(wire.in_flight(), 0);
    }

    #[test]
    fn a_script_redis_does_not_know_is_sent_again_with_its_source() {
        let mut wire = ready_wire();
        wire.send(TestCall(1), &mut Vec::new());
        let (out, answered) = feed(&mut wire, b"-NOSCRIPT No matching script.\r\n");
        assert!(answered.is_empty(), "the call is still on its way");
        assert!(contains(&out, "EVAL\r\n"));
        assert!(contains(&out, "redis.call('DEL', key)"));
        assert_eq!(wire.in_flight(), 1);
        let (_, answered) = feed(&mut wire, b"-NOSCRIPT again\r\n");
        assert!(
            matches!(&answered[..], [(TestCall(1), Reply::Error(_))]),
            "sent with its source once only"
        );
    }

    #[test]
    fn a_lost_connection_gives_back_every_call_sent() {
        let mut wire = ready_wire();
        wire.send(TestCall(1), &mut Vec::new());
        wire.send(TestCall(2), &mut Vec::new());
        let unanswered = wire.fail();
        assert!(matches!(&unanswered[..], [TestCall(1), TestCall(2)]));
        assert!(!wire.is_ready(), "it waits for a new connection");
        assert_eq!(wire.in_flight(), 0);
    }

    #[test]
    fn an_answer_nobody_asked_for_breaks_the_wire() {
        let mut wire = ready_wire();
        let broken = wire
            .feed(b":1\r\n", &mut Vec::new(), &mut Vec::new())
            .unwrap_err();
        let Broken::Failed(broken) = broken else {
            panic!("{broken:?}");
        };
        assert!(broken.contains("nobody asked for"), "{broken}");
    }

    fn sentinel_config() -> SentinelConfig {
        SentinelConfig {
            sentinels: vec![NodeConfig {
                port: 26379,
                ..NodeConfig::default()
            }],
            name: "mymaster".into(),
            master: NodeConfig::default(),
        }
    }

    #[test]
    fn a_wire_to_the_sentinels_master_is_ready_only_once_role_says_master() {
        let mut wire = Wire::<TestCall>::to_master(&sentinel_config());
        let mut out = Vec::new();
        wire.connected(address(), &mut out);
        assert!(contains(&out, "ROLE"), "the set-up asks the role last");
        let (_, answered) = feed(&mut wire, b"+OK\r\n");
        assert!(answered.is_empty());
        assert!(!wire.is_ready(), "not ready before ROLE answered");
        feed(&mut wire, b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
        assert!(wire.is_ready());
    }

    #[test]
    fn a_replica_behind_the_sentinels_address_sends_everything_elsewhere() {
        let mut wire = Wire::<TestCall>::to_master(&sentinel_config());
        let mut out = Vec::new();
        wire.connected(address(), &mut out);
        // Sent before the set-up was answered, as the wire may.
        wire.send(TestCall(1), &mut out);
        let replica =
            b"+OK\r\n*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:1\r\n";
        let broken = wire
            .feed(replica, &mut Vec::new(), &mut Vec::new())
            .unwrap_err();
        let Broken::NotMaster(reason) = broken else {
            panic!("{broken:?}");
        };
        assert!(reason.contains("ROLE says slave"), "{reason}");
        assert!(
            reason.contains("sentinel[127.0.0.1:26379]/mymaster"),
            "{reason}"
        );
        let unanswered: Vec<u32> = wire.fail().into_iter().map(|call| call.0).collect();
        assert_eq!(unanswered, [1], "the call goes again elsewhere");
    }

    #[test]
    fn a_master_demoted_under_the_wire_sends_the_refused_call_elsewhere() {
        let mut wire = ready_wire();
        let mut out = Vec::new();
        wire.send(TestCall(1), &mut out);
        wire.send(TestCall(2), &mut out);
        let (_, answered) = feed(&mut wire, b":1\r\n");
        assert_eq!(answered.len(), 1);
        let broken = wire
            .feed(
                b"-READONLY You can't write against a read only replica.\r\n",
                &mut Vec::new(),
                &mut Vec::new(),
            )
            .unwrap_err();
        assert!(matches!(broken, Broken::NotMaster(_)), "{broken:?}");
        let unanswered: Vec<u32> = wire.fail().into_iter().map(|call| call.0).collect();
        assert_eq!(unanswered, [2]);
    }

    #[test]
    fn a_retired_wire_takes_nothing_more_and_breaks_once_its_calls_are_answered() {
        let mut wire = ready_wire();
        assert_eq!(wire.address(), Some(&address()));
        let mut out = Vec::new();
        wire.send(TestCall(1), &mut out);
        let mut ping = Vec::new();
        wire.retire("moved".into(), &mut ping);
        assert_eq!(ping, b"*1\r\n$4\r\nPING\r\n");
        assert!(!wire.is_ready(), "nothing more goes on it");
        let (_, answered) = feed(&mut wire, b":1\r\n");
        assert_eq!(
            answered.len(),
            1,
            "the call sent before still has its answer"
        );
        let broken = wire
            .feed(b"+PONG\r\n", &mut Vec::new(), &mut Vec::new())
            .unwrap_err();
        assert_eq!(broken, Broken::NotMaster("moved".into()));
        assert!(wire.fail().is_empty());
        assert_eq!(wire.address(), None);
    }
}
