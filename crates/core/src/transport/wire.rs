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

use crate::config::NodeConfig;
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
    Call(C, Naming),
}

pub struct Wire<C> {
    /// How errors name the server (see [`server_name`]).
    server: String,
    handshake: Handshake,
    setup_left: usize,
    in_flight: VecDeque<InFlight<C>>,
    input: Vec<u8>,
}

impl<C: WireCall> Wire<C> {
    /// A wire to `node`; TLS is the caller's socket's business, AUTH and SELECT are ours.
    pub fn new(node: &NodeConfig) -> Self {
        Self {
            server: server_name(&node.label(), node.origin),
            handshake: Handshake::new(node, CLIENT_NAME),
            setup_left: usize::MAX,
            in_flight: VecDeque::new(),
            input: Vec::new(),
        }
    }

    /// How errors name the server.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The first bytes of a new connection. Calls may be sent before its answers arrive.
    pub fn connected(&mut self, out: &mut Vec<u8>) {
        self.setup_left = self.handshake.commands();
        out.extend_from_slice(self.handshake.encoded());
        for _ in 0..self.setup_left {
            self.in_flight.push_back(InFlight::Setup);
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
            match self.in_flight.pop_front() {
                None => break Err(format!("{}: an answer nobody asked for", self.server)),
                // The server's own words, e.g. WRONGPASS: they never echo the password.
                Some(InFlight::Setup) => match reply {
                    Reply::Error(message) => break Err(format!("{}: {message}", self.server)),
                    _ => self.setup_left -= 1,
                },
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
        std::mem::take(&mut self.in_flight)
            .into_iter()
            .filter_map(|sent| match sent {
                InFlight::Setup => None,
                InFlight::Call(call, _) => Some(call),
            })
            .collect()
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

    /// A wire past its set-up, as after a real connection.
    fn ready_wire() -> Wire<TestCall> {
        let mut wire = Wire::new(&NodeConfig::default());
        let mut out = Vec::new();
        wire.connected(&mut out);
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
        wire.connected(&mut out);
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
        assert!(broken.contains("nobody asked for"), "{broken}");
    }
}
