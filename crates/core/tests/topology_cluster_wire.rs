//! A Redis Cluster's calls over the sans-IO wire (`ShardWires`: a `WireCalls` per master), driven
//! over plain blocking sockets against a real cluster, the way `lib/shard-wires.js` drives them
//! over Node's: each call on the master of its key's slot, and a call to a master whose slot has
//! moved given back, having run nothing.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use ironlock_core::protocol::lock::Claim;
use ironlock_core::protocol::resp::Reply;
use ironlock_core::topology::{Attempt, OneKeyWire, ShardWires, ShardWrite, WireAnswer};
use ironlock_core::transport::slot_map::{SlotMap, SlotMaster};
use ironlock_core::LockKeys;
use support::cluster::RedisCluster;
use support::ShowsLogs;

type TestWires = ShardWires<usize, usize>;
type Answer = WireAnswer<usize, usize>;

const TTL: Duration = Duration::from_secs(10);

/// The wires, and a socket per master index once it was asked to open.
struct Sockets {
    wires: TestWires,
    sockets: HashMap<usize, TcpStream>,
}

impl Sockets {
    fn new(cluster: &RedisCluster) -> Self {
        let mut wires = TestWires::new(&cluster.seeds());
        wires.route_by(Some(slot_map(cluster)));
        Self {
            wires,
            sockets: HashMap::new(),
        }
    }

    /// Writes what the wires ask, opening (and setting up) the sockets they ask to open; then
    /// reads until every answer is in: what finished, and what went elsewhere.
    fn round_trip(&mut self) -> (Vec<Answer>, Vec<Answer>) {
        for (index, write) in self.wires.flush().into_iter().enumerate() {
            match write {
                ShardWrite::Nothing => {}
                ShardWrite::Open => self.open(index),
                ShardWrite::Write(bytes) => self.sockets[&index]
                    .try_clone()
                    .expect("socket")
                    .write_all(&bytes)
                    .expect("write"),
            }
        }
        let (mut answers, mut elsewhere) = (Vec::new(), Vec::new());
        let indexes: Vec<usize> = self.sockets.keys().copied().collect();
        for index in indexes {
            while self.wires.wire(index).expect("a master").in_flight() > 0 {
                self.read(index, &mut answers, &mut elsewhere);
            }
        }
        (answers, elsewhere)
    }

    fn open(&mut self, index: usize) {
        let address = self.wires.address(index).expect("a master");
        let socket = TcpStream::connect((address.0.as_str(), address.1)).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let mut out = Vec::new();
        self.wires
            .wire(index)
            .expect("a master")
            .connected(address, &mut out);
        (&socket).write_all(&out).expect("write set-up");
        self.sockets.insert(index, socket);
        while !self.wires.wire(index).expect("a master").is_ready() {
            self.read(index, &mut Vec::new(), &mut Vec::new());
        }
    }

    fn read(&mut self, index: usize, answers: &mut Vec<Answer>, elsewhere: &mut Vec<Answer>) {
        let mut buffer = [0; 4096];
        let mut socket = &self.sockets[&index];
        let read = socket.read(&mut buffer).expect("read");
        assert!(read > 0, "redis closed the connection");
        let mut out = Vec::new();
        self.wires
            .wire(index)
            .expect("a master")
            .feed(&buffer[..read], &mut out, answers, elsewhere)
            .expect("valid answers");
        socket.write_all(&out).expect("write again");
    }
}

/// The cluster's slot map as `CLUSTER SLOTS` says.
fn slot_map(cluster: &RedisCluster) -> Arc<SlotMap> {
    let reply: redis::Value = cluster.masters()[0].query(&["CLUSTER", "SLOTS"]);
    Arc::new(SlotMap::new(
        SlotMaster::read_all(Reply::from(reply)).expect("a slot map"),
    ))
}

fn keys(name: &str) -> Arc<LockKeys> {
    Arc::new(LockKeys::new("", [name.to_owned()]))
}

/// Attempts at `names`, tagged by position, each as soon as its master's wire is ready (the
/// first round opens the sockets); their claims, once every one took its lock.
fn acquire_all(sockets: &mut Sockets, names: &[String]) -> Vec<Claim> {
    let claims: Vec<Claim> = names
        .iter()
        .map(|name| Claim::new(keys(name), TTL))
        .collect();
    let mut waiting: Vec<usize> = (0..names.len()).collect();
    for _ in 0..3 {
        waiting.retain(|&tag| {
            let claim = &claims[tag];
            sockets
                .wires
                .acquire(tag, &claim.keys, claim.token.clone(), TTL)
                .is_err()
        });
        let (answers, elsewhere) = sockets.round_trip();
        assert!(elsewhere.is_empty(), "{elsewhere:?}");
        for answer in answers {
            assert!(
                matches!(
                    answer,
                    WireAnswer::Attempted {
                        outcome: Ok(Attempt::Acquired { .. }),
                        ..
                    }
                ),
                "{answer:?}"
            );
        }
    }
    assert!(waiting.is_empty(), "attempts never went on the wire");
    claims
}

#[test]
fn each_call_goes_on_the_socket_to_the_master_of_its_slot() {
    let cluster = RedisCluster::start(3, 0);
    let names = cluster.key_on_each_master("wire");
    let mut sockets = Sockets::new(&cluster);
    let claims = acquire_all(&mut sockets, &names);
    cluster.check_eq(sockets.wires.len(), 3, "a wire per master");
    for (name, claim) in names.iter().zip(&claims) {
        let master = cluster.master_of(name);
        let stored: Option<String> = master.query(&["GET", name]);
        cluster.check_eq(stored.as_deref(), Some(claim.token.as_str()), name);
        let wired = (0..sockets.wires.len())
            .filter_map(|index| sockets.wires.address(index))
            .any(|(_, port)| port == master.port());
        cluster.check(wired, format_args!("a socket to the master of {name}"));
    }
    for (tag, claim) in claims.iter().enumerate() {
        sockets
            .wires
            .release(tag, &claim.keys, claim.token.clone())
            .expect("on a ready wire");
    }
    let (answers, elsewhere) = sockets.round_trip();
    cluster.check(elsewhere.is_empty(), "nothing redirected");
    cluster.check(
        answers.len() == 3
            && answers.iter().all(|answer| {
                matches!(
                    answer,
                    WireAnswer::Released {
                        outcome: Ok(true),
                        ..
                    }
                )
            }),
        format_args!("every lock released: {answers:?}"),
    );
}

#[test]
fn a_call_to_the_master_a_slot_left_comes_back_having_run_nothing() {
    let cluster = RedisCluster::start(3, 0);
    let key = "{leaving}:k".to_owned();
    let mut sockets = Sockets::new(&cluster);
    // Every master's socket up, routed by the map as it is now.
    acquire_all(&mut sockets, &cluster.key_on_each_master("warm"));
    let migration = cluster.begin_migration(&key);
    cluster.move_keys(&migration);
    cluster.finish_migration(&migration);

    let claim = Claim::new(keys(&key), TTL);
    sockets
        .wires
        .acquire(7, &claim.keys, claim.token.clone(), TTL)
        .expect("routed by the old map, to a ready wire");
    let (answers, elsewhere) = sockets.round_trip();
    cluster.check(answers.is_empty(), format_args!("{answers:?}"));
    match &elsewhere[..] {
        [WireAnswer::Attempted {
            tag: 7,
            outcome: Err(error),
        }] => cluster.check(
            error.to_string().contains("MOVED"),
            format_args!("the redirection, got {error}"),
        ),
        other => cluster.fail(format_args!("expected the attempt back, got {other:?}")),
    }
    let on_target: Option<String> = cluster.target_of(&migration).query(&["GET", &key]);
    cluster.check_eq(on_target, None, "nothing ran on the new master");

    // With the map read again, the attempt lands on the new master.
    sockets.wires.route_by(Some(slot_map(&cluster)));
    let taken = acquire_all(&mut sockets, std::slice::from_ref(&key));
    let stored: Option<String> = cluster.target_of(&migration).query(&["GET", &key]);
    cluster.check_eq(
        stored,
        Some(taken[0].token.clone()),
        "the lock on the new master",
    );
}
