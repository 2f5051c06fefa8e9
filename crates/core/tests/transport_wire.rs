//! The sans-IO wire driven over a plain blocking socket against a real `redis-server`, the way
//! `lib/wire.js` drives it over Node's.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use ironlock_core::transport::wire::{Event, Wire, CLIENT_NAME};
use ironlock_core::{HeldLock, LockKeys};
use support::RedisServer;

type TestWire = Wire<usize, usize>;

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
            wire: TestWire::new(&server.node(), 0.01),
            socket,
        };
        let mut out = Vec::new();
        connection.wire.connected(&mut out);
        connection.socket.write_all(&out).expect("write set-up");
        while !connection.wire.is_ready() {
            assert!(connection.read().is_empty(), "no request was made yet");
        }
        connection
    }

    /// Sends what is queued and reads until every answer is in.
    fn round_trip(&mut self) -> Vec<Event<usize, usize>> {
        let mut out = Vec::new();
        self.wire.flush(&mut out);
        self.socket.write_all(&out).expect("write");
        let mut events = Vec::new();
        while self.wire.in_flight() > 0 {
            events.extend(self.read());
        }
        events
    }

    fn read(&mut self) -> Vec<Event<usize, usize>> {
        let mut buffer = [0; 4096];
        let read = self.socket.read(&mut buffer).expect("read");
        assert!(read > 0, "redis closed the connection");
        let mut out = Vec::new();
        let mut events = Vec::new();
        self.wire
            .feed(&buffer[..read], &mut out, &mut events)
            .expect("valid answers");
        self.socket.write_all(&out).expect("write again");
        events
    }
}

fn keys(name: &str) -> Arc<LockKeys> {
    Arc::new(LockKeys::new("", [name.to_owned()]))
}

fn acquired(event: Event<usize, usize>) -> HeldLock {
    match event {
        Event::Acquired { lock, .. } => lock,
        other => panic!("expected a lock, got {other:?}"),
    }
}

#[test]
fn takes_refuses_and_gives_back_locks_on_a_real_server() {
    let server = RedisServer::start();
    let mut first = Connection::open(&server);
    let mut second = Connection::open(&server);
    let ttl = Duration::from_millis(10_000);

    first.wire.acquire(0, keys("order:1"), ttl);
    first.wire.acquire(1, keys("order:2"), ttl);
    let mut events = first.round_trip().into_iter();
    let one = acquired(events.next().expect("an answer for order:1"));
    let two = acquired(events.next().expect("an answer for order:2"));
    let stored: String = server.query(&["GET", "order:1"]);
    server.check_eq(stored, one.token.clone(), "the lock holds its token");

    second.wire.acquire(7, keys("order:1"), ttl);
    match &second.round_trip()[..] {
        [Event::Busy {
            tag: 7,
            retry_after: Some(left),
            ..
        }] => server.check(
            *left > Duration::from_millis(9_000) && *left <= ttl,
            format!("the holder's remaining TTL, got {left:?}"),
        ),
        other => server.fail(format_args!("expected busy, got {other:?}")),
    }

    second.wire.release(3, &one);
    first.wire.release(4, &two);
    let stranger = second.round_trip();
    server.check(
        matches!(
            stranger[..],
            [Event::Released {
                tag: 3,
                released: true
            }]
        ),
        "the token decides, not the connection",
    );
    let exists: i64 = server.query(&["EXISTS", "order:1", "order:2"]);
    server.check_eq(first.round_trip().len(), 1, "order:2 released");
    let after: i64 = server.query(&["EXISTS", "order:1", "order:2"]);
    server.check_eq((exists, after), (1, 0), "keys left before and after");

    second.wire.acquire(8, keys("order:1"), ttl);
    let again = acquired(second.round_trip().remove(0));
    server.check(
        again.fence > one.fence,
        "the fence grows with every acquisition",
    );
}

#[test]
fn a_flushed_script_cache_costs_one_more_round_trip_not_a_failure() {
    let server = RedisServer::start();
    let mut connection = Connection::open(&server);
    connection
        .wire
        .acquire(0, keys("a"), Duration::from_secs(10));
    let lock = acquired(connection.round_trip().remove(0));
    let _: () = server.query(&["SCRIPT", "FLUSH"]);
    connection.wire.release(0, &lock);
    connection
        .wire
        .acquire(1, keys("b"), Duration::from_secs(10));
    let events = connection.round_trip();
    server.check(
        matches!(
            events[..],
            [
                Event::Acquired { tag: 1, .. },
                Event::Released {
                    tag: 0,
                    released: true
                }
            ]
        ),
        format!("both went through after NOSCRIPT: {events:?}"),
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
    let mut wire = TestWire::new(&node, 0.01);
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut out = Vec::new();
    wire.connected(&mut out);
    // Queued before the set-up is answered, as the wire allows.
    wire.acquire(1, keys("k"), Duration::from_secs(1));
    wire.flush(&mut out);
    socket.write_all(&out).expect("write");
    let mut answer = [0; 1024];
    let read = socket.read(&mut answer).expect("read");
    http.join().expect("http server");
    let mut events = Vec::new();
    let broken = wire
        .feed(&answer[..read], &mut Vec::new(), &mut events)
        .expect_err("HTTP is not RESP");
    wire.fail(&broken, false, &mut events);
    let expected = format!("the server at 127.0.0.1:{port} did not answer as Redis");
    match &events[..] {
        [Event::AcquireFailed { tag: 1, error, .. }] => assert_eq!(
            error.message_while(Doing::Locking),
            format!("Redis unavailable while locking \"k\": {expected}")
        ),
        other => panic!("expected the acquire to fail, got {other:?}"),
    }
}
