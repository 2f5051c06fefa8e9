//! One Redis's calls over the sans-IO wire (`WireCalls` over `transport::wire`), driven over a
//! plain blocking socket against a real `redis-server`, the way `lib/wire.js` drives them over
//! Node's.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use ironlock_core::protocol::lock::Claim;
use ironlock_core::topology::{Attempt, WireAnswer, WireCalls};
use ironlock_core::transport::wire::{Broken, CLIENT_NAME};
use ironlock_core::LockKeys;
use support::RedisServer;
use support::ShowsLogs;

type TestWire = WireCalls<usize, usize>;
type Answer = WireAnswer<usize, usize>;

/// What a lock the tests took is known by: its claim (keys and token) and fence.
struct Taken {
    claim: Claim,
    fence: u64,
}

struct Connection {
    wire: TestWire,
    socket: TcpStream,
}

impl Connection {
    fn open(server: &RedisServer) -> Self {
        let socket = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let mut connection = Self {
            wire: TestWire::new(&server.node()),
            socket,
        };
        let mut out = Vec::new();
        connection
            .wire
            .connected(("127.0.0.1".into(), server.port()), &mut out);
        connection.socket.write_all(&out).expect("write set-up");
        while !connection.wire.is_ready() {
            assert!(connection.read().is_empty(), "no request was made yet");
        }
        connection
    }

    /// Sends what is queued and reads until every answer is in.
    /// Queues an attempt at the one-key lock `name`; the claim holds its token.
    fn acquire(&mut self, tag: usize, name: &str, ttl: Duration) -> Claim {
        let claim = Claim::new(keys(name), ttl);
        self.wire
            .acquire(tag, &claim.keys, claim.token.clone(), ttl)
            .expect("a one-key lock");
        claim
    }

    fn release(&mut self, tag: usize, taken: &Taken) {
        let claim = &taken.claim;
        self.wire
            .release(tag, &claim.keys, claim.token.clone())
            .expect("a one-key lock");
    }

    fn round_trip(&mut self) -> Vec<Answer> {
        let mut out = Vec::new();
        self.wire.flush(&mut out);
        self.socket.write_all(&out).expect("write");
        let mut answers = Vec::new();
        while self.wire.in_flight() > 0 {
            answers.extend(self.read());
        }
        answers
    }

    fn read(&mut self) -> Vec<Answer> {
        let mut buffer = [0; 4096];
        let read = self.socket.read(&mut buffer).expect("read");
        assert!(read > 0, "redis closed the connection");
        let mut out = Vec::new();
        let mut answers = Vec::new();
        self.wire
            .feed(&buffer[..read], &mut out, &mut answers, &mut Vec::new())
            .expect("valid answers");
        self.socket.write_all(&out).expect("write again");
        answers
    }
}

fn keys(name: &str) -> Arc<LockKeys> {
    Arc::new(LockKeys::new("", [name.to_owned()]))
}

fn acquired(claim: Claim, answer: Answer) -> Taken {
    match answer {
        WireAnswer::Attempted {
            outcome: Ok(Attempt::Acquired { fence }),
            ..
        } => Taken { claim, fence },
        other => panic!("expected a lock, got {other:?}"),
    }
}

#[test]
fn takes_refuses_and_gives_back_locks_on_a_real_server() {
    let server = RedisServer::start();
    let mut first = Connection::open(&server);
    let mut second = Connection::open(&server);
    let ttl = Duration::from_millis(10_000);

    let claims = (
        first.acquire(0, "order:1", ttl),
        first.acquire(1, "order:2", ttl),
    );
    let mut answers = first.round_trip().into_iter();
    let one = acquired(claims.0, answers.next().expect("an answer for order:1"));
    let two = acquired(claims.1, answers.next().expect("an answer for order:2"));
    let stored: String = server.query(&["GET", "order:1"]);
    server.check_eq(stored, one.claim.token.clone(), "the lock holds its token");

    second.acquire(7, "order:1", ttl);
    match &second.round_trip()[..] {
        [WireAnswer::Attempted {
            tag: 7,
            outcome:
                Ok(Attempt::Busy {
                    retry_after: Some(left),
                    foreign: false,
                }),
        }] => server.check(
            *left > Duration::from_millis(9_000) && *left <= ttl,
            format!("the holder's remaining TTL, got {left:?}"),
        ),
        other => server.fail(format_args!("expected busy, got {other:?}")),
    }

    second.release(3, &one);
    first.release(4, &two);
    let stranger = second.round_trip();
    server.check(
        matches!(
            stranger[..],
            [WireAnswer::Released {
                tag: 3,
                outcome: Ok(true)
            }]
        ),
        "the token decides, not the connection",
    );
    let exists: i64 = server.query(&["EXISTS", "order:1", "order:2"]);
    server.check_eq(first.round_trip().len(), 1, "order:2 released");
    let after: i64 = server.query(&["EXISTS", "order:1", "order:2"]);
    server.check_eq((exists, after), (1, 0), "keys left before and after");

    let claim = second.acquire(8, "order:1", ttl);
    let again = acquired(claim, second.round_trip().remove(0));
    server.check(
        again.fence > one.fence,
        "the fence grows with every acquisition",
    );
}

#[test]
fn a_flushed_script_cache_costs_one_more_round_trip_not_a_failure() {
    let server = RedisServer::start();
    let mut connection = Connection::open(&server);
    let claim = connection.acquire(0, "a", Duration::from_secs(10));
    let lock = acquired(claim, connection.round_trip().remove(0));
    let _: () = server.query(&["SCRIPT", "FLUSH"]);
    connection.release(0, &lock);
    connection.acquire(1, "b", Duration::from_secs(10));
    let answers = connection.round_trip();
    server.check(
        matches!(
            answers[..],
            [
                WireAnswer::Attempted {
                    tag: 1,
                    outcome: Ok(Attempt::Acquired { .. })
                },
                WireAnswer::Released {
                    tag: 0,
                    outcome: Ok(true)
                }
            ]
        ),
        format!("both went through after NOSCRIPT: {answers:?}"),
    );
}

#[test]
fn the_wire_names_itself_in_client_list() {
    let server = RedisServer::start();
    let _connection = Connection::open(&server);
    let clients: String = server.query(&["CLIENT", "LIST"]);
    server.check(
        clients.contains(&format!("name={CLIENT_NAME}")),
        format!("CLIENT LIST: {clients}"),
    );
}

/// An HTTP server on the port: the wire breaks, and what it carried fails saying so, not with the
/// decoder's complaint about the bytes it got.
#[test]
fn a_server_that_is_not_redis_breaks_the_wire_with_a_message_saying_so() {
    use ironlock_core::error::Doing;
    use ironlock_core::NodeConfig;
    use std::net::TcpListener;

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let http = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().expect("accept");
        let mut request = [0; 1024];
        let _ = socket.read(&mut request);
        let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    });
    let node = NodeConfig {
        host: "127.0.0.1".into(),
        port,
        ..NodeConfig::default()
    };
    let mut wire = TestWire::new(&node);
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut out = Vec::new();
    wire.connected(("127.0.0.1".into(), port), &mut out);
    // Queued before the set-up is answered, as the wire allows.
    let claim = Claim::new(keys("k"), Duration::from_secs(1));
    wire.acquire(1, &claim.keys, claim.token.clone(), claim.ttl)
        .expect("a one-key lock");
    wire.flush(&mut out);
    socket.write_all(&out).expect("write");
    let mut answer = [0; 1024];
    let read = socket.read(&mut answer).expect("read");
    http.join().expect("http server");
    let mut answers = Vec::new();
    let broken = wire
        .feed(
            &answer[..read],
            &mut Vec::new(),
            &mut answers,
            &mut Vec::new(),
        )
        .expect_err("HTTP is not RESP");
    let Broken::Failed(broken) = broken else {
        panic!("{broken:?}");
    };
    wire.fail(&broken, false, &mut answers);
    let expected = format!("the server at 127.0.0.1:{port} did not answer as Redis");
    match &answers[..] {
        [WireAnswer::Attempted {
            tag: 1,
            outcome: Err(error),
        }] => assert_eq!(
            error.message_while(Doing::Locking),
            format!("Redis unavailable while locking \"k\": {expected}")
        ),
        other => panic!("expected the acquire to fail, got {other:?}"),
    }
}
