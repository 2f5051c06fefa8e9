//! Which master serves each hash slot of a Redis Cluster, as `CLUSTER SLOTS` says. redis-rs keeps
//! its own slot map to itself; the masters' connections of their own ([`super::cluster_masters`])
//! are opened from this one, and the wire's sockets to the masters route by it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::protocol::resp::Reply;

/// A range of slots and the address of the master serving it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMaster {
    pub first: u16,
    pub last: u16,
    pub host: String,
    pub port: u16,
}

impl SlotMaster {
    /// Every range of a `CLUSTER SLOTS` reply (`[first, last, [host, port, id, …], replicas…]`
    /// each), or `None` for a reply that is not one. A master whose address the answering node
    /// does not know yet (`?` or empty) is left out: its slots have no master until it does.
    pub fn read_all(reply: Reply) -> Option<Vec<Self>> {
        let Reply::Array(Some(ranges)) = reply else {
            return None;
        };
        let mut masters = Vec::with_capacity(ranges.len());
        for range in ranges {
            let Reply::Array(Some(fields)) = range else {
                return None;
            };
            let [Reply::Int(first), Reply::Int(last), Reply::Array(Some(master)), ..] = &fields[..]
            else {
                return None;
            };
            let [Reply::Bulk(Some(host)), Reply::Int(port), ..] = &master[..] else {
                return None;
            };
            let host = String::from_utf8(host.clone()).ok()?;
            if host.is_empty() || host == "?" {
                continue;
            }
            masters.push(Self {
                first: u16::try_from(*first).ok()?,
                last: u16::try_from(*last).ok()?,
                host,
                port: u16::try_from(*port).ok()?,
            });
        }
        Some(masters)
    }
}

/// The ranges of one `CLUSTER SLOTS` reply, looked up by slot.
pub struct SlotMap(Vec<SlotMaster>);

impl SlotMap {
    pub fn new(masters: Vec<SlotMaster>) -> Self {
        Self(masters)
    }

    /// The master serving `slot`, if the map names one.
    pub fn master_of(&self, slot: u16) -> Option<&SlotMaster> {
        self.0
            .iter()
            .find(|master| (master.first..=master.last).contains(&slot))
    }

    /// Whether `host:port` still serves some slot.
    pub fn serves(&self, host: &str, port: u16) -> bool {
        self.0
            .iter()
            .any(|master| master.host == host && master.port == port)
    }
}

/// A topology's one slot map, as last read: `None` until read, and again once a call found it
/// stale (its slot moved, its master gone), until it is read anew.
#[derive(Default)]
pub struct SlotMaps {
    current: Mutex<Option<Arc<SlotMap>>>,
    /// Whether a read started in the background is under way, so a burst starts one only.
    reading: AtomicBool,
}

impl SlotMaps {
    pub fn current(&self) -> Option<Arc<SlotMap>> {
        self.current.lock().expect("slot map lock").clone()
    }

    pub fn set(&self, map: Arc<SlotMap>) {
        *self.current.lock().expect("slot map lock") = Some(map);
    }

    /// The map is stale: whoever needs it next reads it again.
    pub fn forget(&self) {
        *self.current.lock().expect("slot map lock") = None;
    }

    /// Whether the caller is to start a background read: `false` while one is under way.
    pub fn start_reading(&self) -> bool {
        !self.reading.swap(true, Ordering::AcqRel)
    }

    pub fn done_reading(&self) {
        self.reading.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(Some(text.as_bytes().to_vec()))
    }

    fn node(host: &str, port: i64) -> Reply {
        Reply::Array(Some(vec![
            bulk(host),
            Reply::Int(port),
            bulk("07c37dfeb235213a872192d90877d0cd55635b91"),
            Reply::Array(Some(vec![])),
        ]))
    }

    fn range(first: i64, last: i64, nodes: Vec<Reply>) -> Reply {
        let mut fields = vec![Reply::Int(first), Reply::Int(last)];
        fields.extend(nodes);
        Reply::Array(Some(fields))
    }

    #[test]
    fn reads_each_ranges_master_and_skips_its_replicas() {
        let reply = Reply::Array(Some(vec![
            range(
                0,
                5460,
                vec![node("127.0.0.1", 30001), node("127.0.0.1", 30004)],
            ),
            range(5461, 16383, vec![node("10.0.0.2", 30002)]),
        ]));
        let map = SlotMap::new(SlotMaster::read_all(reply).expect("a slot map"));
        let master = map.master_of(5460).expect("served");
        assert_eq!((master.host.as_str(), master.port), ("127.0.0.1", 30001));
        let master = map.master_of(5461).expect("served");
        assert_eq!((master.host.as_str(), master.port), ("10.0.0.2", 30002));
        assert!(map.serves("10.0.0.2", 30002));
        assert!(!map.serves("127.0.0.1", 30004), "a replica serves no slot");
    }

    #[test]
    fn a_master_of_unknown_address_serves_nothing_yet() {
        let reply = Reply::Array(Some(vec![
            range(0, 100, vec![node("?", 0)]),
            range(101, 200, vec![node("", 30003)]),
        ]));
        let map = SlotMap::new(SlotMaster::read_all(reply).expect("a slot map"));
        assert_eq!(map.master_of(50), None);
        assert_eq!(map.master_of(150), None);
        assert_eq!(map.master_of(300), None, "a slot no range covers");
    }

    #[test]
    fn what_is_no_slot_map_is_refused() {
        assert_eq!(SlotMaster::read_all(Reply::Int(1)), None);
        let short = Reply::Array(Some(vec![Reply::Array(Some(vec![Reply::Int(0)]))]));
        assert_eq!(SlotMaster::read_all(short), None);
    }
}
