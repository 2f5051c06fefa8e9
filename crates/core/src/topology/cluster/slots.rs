//! A lock's keys by Redis Cluster hash slot. A script call's keys must share one slot, so a lock
//! whose keys span several slots is taken slot by slot, always in ascending slot order: two
//! lockers whose key sets overlap then meet first on the lowest shared slot, where one of them
//! loses before it holds anything the other needs.

use crate::protocol::keys::{hash_slot, LockKeys};

/// The keys of one lock that live in one hash slot, as a lock of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotKeys {
    pub slot: u16,
    pub keys: LockKeys,
}

/// `keys` split by hash slot, in ascending slot order; each part keeps the lock's key order, its
/// release channels and the fencing counters of its slot.
pub fn by_slot(keys: &LockKeys) -> Vec<SlotKeys> {
    let mut parts: Vec<SlotKeys> = Vec::new();
    for (index, key) in keys.redis_keys.iter().enumerate() {
        let slot = hash_slot(key);
        let part = match parts.iter_mut().position(|part| part.slot == slot) {
            Some(found) => &mut parts[found],
            None => {
                parts.push(SlotKeys {
                    slot,
                    keys: LockKeys {
                        names: Vec::new(),
                        redis_keys: Vec::new(),
                        fence_keys: Vec::new(),
                        channels: Vec::new(),
                    },
                });
                parts.last_mut().expect("just pushed")
            }
        };
        part.keys.names.push(keys.names[index].clone());
        part.keys.redis_keys.push(key.clone());
        part.keys.channels.push(keys.channels[index].clone());
    }
    // Every fencing counter hashes to the slot of the keys it serves (see `keys::fence_key`).
    for counter in &keys.fence_keys {
        let slot = hash_slot(counter);
        if let Some(part) = parts.iter_mut().find(|part| part.slot == slot) {
            part.keys.fence_keys.push(counter.clone());
        }
    }
    parts.sort_by_key(|part| part.slot);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(prefix: &str, names: &[&str]) -> LockKeys {
        LockKeys::new(prefix, names.iter().map(|name| (*name).to_owned()))
    }

    #[test]
    fn keys_of_one_slot_stay_one_lock() {
        let keys = lock("app:", &["{order:7}:a", "{order:7}:b"]);
        let parts = by_slot(&keys);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].keys, keys);
        assert_eq!(parts[0].slot, hash_slot("app:{order:7}:a"));
    }

    #[test]
    fn keys_across_slots_split_in_ascending_slot_order() {
        // "foo" is slot 12182, "bar" 5061: named foo first, taken bar first.
        let keys = lock("", &["foo", "bar", "{foo}:x"]);
        let parts = by_slot(&keys);
        let slots: Vec<u16> = parts.iter().map(|part| part.slot).collect();
        assert_eq!(slots, [5061, 12182]);
        assert_eq!(parts[0].keys.names, ["bar"]);
        assert_eq!(parts[1].keys.names, ["foo", "{foo}:x"]);
        assert_eq!(
            parts[1].keys.channels,
            [keys.channels[0].clone(), keys.channels[2].clone()]
        );
    }

    #[test]
    fn each_part_bumps_the_fencing_counters_of_its_own_slot() {
        for prefix in ["", "p:", "{tenant}:"] {
            let keys = lock(prefix, &["foo", "bar", "baz", "qux"]);
            let parts = by_slot(&keys);
            let mut counters: Vec<String> = Vec::new();
            for part in &parts {
                assert!(!part.keys.fence_keys.is_empty(), "{prefix}: {part:?}");
                for counter in &part.keys.fence_keys {
                    assert_eq!(hash_slot(counter), part.slot, "{prefix}: {counter}");
                    counters.push(counter.clone());
                }
            }
            counters.sort();
            let mut all = keys.fence_keys.clone();
            all.sort();
            assert_eq!(counters, all, "{prefix}: every counter in exactly one part");
        }
    }
}
