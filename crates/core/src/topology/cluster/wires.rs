//! A Redis Cluster's one-key calls over the wire: a socket of the caller's own per master, each
//! carrying that master's calls as one Redis's wire does ([`WireCalls`]), each call on the master
//! that serves its key's hash slot in the topology's one slot map ([`SlotMap`]).
//!
//! Anything the wire cannot be sure of goes to the runtime's connection, which follows MOVED and
//! ASK and rides out failovers: a call whose slot has no master in the map (or no map yet), or
//! whose master's socket is not ready (that socket is then to open), is given back at once; one a
//! master redirected comes back from [`WireCalls::feed`], having run nothing.

use std::sync::Arc;
use std::time::Duration;

use crate::config::NodeConfig;
use crate::protocol::keys::{hash_slot, LockKeys};
use crate::topology::single::{OneKeyWire, WireCalls};
use crate::transport::slot_map::SlotMap;

/// What a master's socket is to do after a round of requests.
#[derive(Debug, PartialEq, Eq)]
pub enum ShardWrite {
    Nothing,
    /// Calls were meant for it while it was not ready: it opens (unless resting after a failure).
    Open,
    /// Bytes to write.
    Write(Vec<u8>),
}

pub struct ShardWires<A, R> {
    /// Every master's credentials and TLS settings: the first seed's, on database 0.
    template: NodeConfig,
    /// By index, which stays the master's while the locker lives.
    masters: Vec<MasterWire<A, R>>,
    /// The map this round of requests is routed by ([`ShardWires::route_by`]).
    map: Option<Arc<SlotMap>>,
}

struct MasterWire<A, R> {
    address: (String, u16),
    calls: WireCalls<A, R>,
    /// A call was meant for it while it was not ready.
    wanted: bool,
}

impl<A, R> ShardWires<A, R> {
    /// The wires of the cluster `seeds` lead to; none opens before a call is meant for it.
    pub fn new(seeds: &[NodeConfig]) -> Self {
        let template = seeds.first().cloned().unwrap_or_default();
        Self {
            template: NodeConfig {
                db: 0,
                origin: None,
                ..template
            },
            masters: Vec::new(),
            map: None,
        }
    }

    /// Routes the requests that follow by `map` (`None`: not read yet, they all go elsewhere).
    pub fn route_by(&mut self, map: Option<Arc<SlotMap>>) {
        self.map = map;
    }

    /// The wire of master `index`.
    pub fn wire(&mut self, index: usize) -> Option<&mut WireCalls<A, R>> {
        self.masters.get_mut(index).map(|master| &mut master.calls)
    }

    /// Where master `index`'s socket connects.
    pub fn address(&self, index: usize) -> Option<(String, u16)> {
        self.masters.get(index).map(|master| master.address.clone())
    }

    /// How many masters have had a wire.
    pub fn len(&self) -> usize {
        self.masters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.masters.is_empty()
    }

    /// Writes every master's queued requests: what each socket is to do, by index; empty when
    /// none has anything to do.
    pub fn flush(&mut self) -> Vec<ShardWrite> {
        let mut writes = Vec::new();
        let mut any = false;
        for master in &mut self.masters {
            let mut out = Vec::new();
            master.calls.flush(&mut out);
            let write = if !out.is_empty() {
                ShardWrite::Write(out)
            } else if std::mem::take(&mut master.wanted) {
                ShardWrite::Open
            } else {
                ShardWrite::Nothing
            };
            any |= write != ShardWrite::Nothing;
            writes.push(write);
        }
        if !any {
            writes.clear();
        }
        writes
    }

    /// The ready wire of the master serving the one-key lock `keys`; a master whose wire is not
    /// ready is marked wanted.
    fn ready_master_of(&mut self, keys: &LockKeys) -> Option<&mut WireCalls<A, R>> {
        let [key] = &keys.redis_keys[..] else {
            return None;
        };
        let master = self.map.as_ref()?.master_of(hash_slot(key))?;
        let index = match self
            .masters
            .iter()
            .position(|known| known.address.1 == master.port && known.address.0 == master.host)
        {
            Some(index) => index,
            None => {
                let node = NodeConfig {
                    host: master.host.clone(),
                    port: master.port,
                    ..self.template.clone()
                };
                self.masters.push(MasterWire {
                    address: (master.host.clone(), master.port),
                    calls: WireCalls::to_cluster_master(&node),
                    wanted: false,
                });
                self.masters.len() - 1
            }
        };
        let master = &mut self.masters[index];
        if master.calls.is_ready() {
            Some(&mut master.calls)
        } else {
            master.wanted = true;
            None
        }
    }
}

impl<A, R> OneKeyWire<A, R> for ShardWires<A, R> {
    fn acquire(
        &mut self,
        tag: A,
        keys: &Arc<LockKeys>,
        token: String,
        ttl: Duration,
    ) -> Result<(), A> {
        match self.ready_master_of(keys) {
            Some(wire) => wire.acquire(tag, keys, token, ttl),
            None => Err(tag),
        }
    }

    fn release(&mut self, tag: R, keys: &Arc<LockKeys>, token: String) -> Result<(), R> {
        match self.ready_master_of(keys) {
            Some(wire) => wire.release(tag, keys, token),
            None => Err(tag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::slot_map::SlotMaster;

    type TestWires = ShardWires<u32, u32>;

    fn keys(name: &str) -> Arc<LockKeys> {
        Arc::new(LockKeys::new("", [name.to_owned()]))
    }

    /// "a" is slot 15495, "b" 3300.
    fn two_masters() -> Arc<SlotMap> {
        let master = |first, last, port| SlotMaster {
            first,
            last,
            host: "127.0.0.1".into(),
            port,
        };
        Arc::new(SlotMap::new(vec![
            master(0, 8191, 30001),
            master(8192, 16383, 30002),
        ]))
    }

    fn connect(wires: &mut TestWires, index: usize) {
        let address = wires.address(index).expect("a master");
        let wire = wires.wire(index).expect("a master");
        wire.connected(address, &mut Vec::new());
        wire.feed(
            b"+OK\r\n",
            &mut Vec::new(),
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .unwrap();
    }

    #[test]
    fn each_call_goes_to_the_master_of_its_slot_once_its_wire_is_ready() {
        let mut wires = TestWires::new(&[NodeConfig::default()]);
        let ttl = Duration::from_secs(1);
        assert_eq!(
            wires.acquire(1, &keys("a"), "t".into(), ttl),
            Err(1),
            "no map yet"
        );
        assert!(wires.flush().is_empty(), "nothing to open without a map");

        wires.route_by(Some(two_masters()));
        assert_eq!(wires.acquire(1, &keys("a"), "t".into(), ttl), Err(1));
        assert_eq!(wires.release(2, &keys("b"), "t".into()), Err(2));
        assert_eq!(wires.flush(), [ShardWrite::Open, ShardWrite::Open]);
        assert_eq!(wires.address(0), Some(("127.0.0.1".into(), 30002)));
        assert_eq!(wires.address(1), Some(("127.0.0.1".into(), 30001)));
        assert!(wires.flush().is_empty(), "asked to open once per round");

        connect(&mut wires, 0);
        wires.acquire(3, &keys("a"), "t".into(), ttl).unwrap();
        assert_eq!(wires.release(4, &keys("b"), "t".into()), Err(4));
        match &wires.flush()[..] {
            [ShardWrite::Write(bytes), ShardWrite::Open] => assert!(!bytes.is_empty()),
            other => panic!("unexpected writes {other:?}"),
        }
        assert_eq!(wires.wire(0).map(|wire| wire.in_flight()), Some(1));
    }

    #[test]
    fn a_lock_of_several_keys_stays_off_the_wire() {
        let mut wires = TestWires::new(&[NodeConfig::default()]);
        wires.route_by(Some(two_masters()));
        let both = Arc::new(LockKeys::new("", ["{a}:1".to_owned(), "{a}:2".to_owned()]));
        assert_eq!(
            wires.acquire(1, &both, "t".into(), Duration::from_secs(1)),
            Err(1)
        );
        assert!(wires.is_empty(), "no master is wanted for it");
    }
}
