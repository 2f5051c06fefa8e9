//! The locks this process holds, by the id callers know them by.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::protocol::lock::HeldLock;
use crate::session::watchdog::Watchdog;

pub(super) struct HeldEntry {
    pub(super) lock: HeldLock,
    pub(super) watchdog: Option<Watchdog>,
    /// The operation of a cancellable acquire that granted it (see [`HeldTable::granted_to`]).
    pub(super) granted_to: Option<u32>,
}

impl HeldEntry {
    /// Let lapse and its lease run out (see [`Watchdog::has_lapsed`]): not to be released.
    pub(super) fn has_lapsed(&self) -> bool {
        self.watchdog.as_ref().is_some_and(Watchdog::has_lapsed)
    }
}

/// Entries of locks that were never released are dropped once they have surely expired, so a
/// cooldown lock per user does not grow memory forever.
#[derive(Default)]
pub(super) struct HeldTable {
    entries: HashMap<u32, HeldEntry>,
    /// The lock each cancellable acquire was granted, by operation: its caller may cancel it
    /// before the completion reaches it, and the lock is then given back here, not by the caller.
    granted: HashMap<u32, u32>,
    next_id: u32,
    prune_at: usize,
}

/// The table is pruned no earlier than at this many entries.
const PRUNE_MIN: usize = 1024;

impl HeldTable {
    pub(super) fn insert(&mut self, entry: HeldEntry) -> u32 {
        if self.entries.len() >= self.prune_at.max(PRUNE_MIN) {
            let now = SystemTime::now();
            let granted = &mut self.granted;
            self.entries.retain(|_, held| {
                let keep = held.watchdog.is_some() || held.lock.expires_at + held.lock.ttl > now;
                if let (false, Some(op)) = (keep, held.granted_to) {
                    granted.remove(&op);
                }
                keep
            });
            self.prune_at = self.entries.len() * 2;
        }
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.entries.contains_key(&self.next_id) {
                break;
            }
        }
        if let Some(op) = entry.granted_to {
            self.granted.insert(op, self.next_id);
        }
        self.entries.insert(self.next_id, entry);
        self.next_id
    }

    /// The lock the cancellable acquire `op` was granted, if it is still held; forgets the link.
    pub(super) fn granted_to(&mut self, op: u32) -> Option<u32> {
        self.granted.remove(&op)
    }

    pub(super) fn get(&self, id: u32) -> Option<&HeldEntry> {
        self.entries.get(&id)
    }

    pub(super) fn get_mut(&mut self, id: u32) -> Option<&mut HeldEntry> {
        self.entries.get_mut(&id)
    }

    pub(super) fn remove(&mut self, id: u32) -> Option<HeldEntry> {
        let entry = self.entries.remove(&id)?;
        if let Some(op) = entry.granted_to {
            if self.granted.get(&op) == Some(&id) {
                self.granted.remove(&op);
            }
        }
        Some(entry)
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.granted.clear();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::protocol::keys::LockKeys;

    fn entry(expires_at: SystemTime) -> HeldEntry {
        HeldEntry {
            lock: HeldLock {
                keys: Arc::new(LockKeys::new("", ["k".to_owned()])),
                token: String::new(),
                fence: 1,
                ttl: Duration::from_secs(1),
                expires_at,
            },
            watchdog: None,
            granted_to: None,
        }
    }

    #[test]
    fn a_granted_lock_is_known_by_its_operation_until_it_leaves_the_table() {
        let mut table = HeldTable::default();
        let far = SystemTime::now() + Duration::from_secs(60);
        let id = table.insert(HeldEntry {
            granted_to: Some(7),
            ..entry(far)
        });
        assert_eq!(table.granted_to(7), Some(id));
        assert_eq!(table.granted_to(7), None, "asked once");
        let other = table.insert(HeldEntry {
            granted_to: Some(8),
            ..entry(far)
        });
        table.remove(other);
        assert_eq!(table.granted_to(8), None, "released: nothing to give back");
    }

    #[test]
    fn locks_never_released_are_dropped_once_surely_expired() {
        let mut table = HeldTable::default();
        let long_gone = SystemTime::now() - Duration::from_secs(60);
        for _ in 0..PRUNE_MIN {
            table.insert(entry(long_gone));
        }
        let live = table.insert(entry(SystemTime::now() + Duration::from_secs(60)));
        assert_eq!(table.len(), 1, "the expired ones were pruned on the way");
        assert!(table.get(live).is_some());
    }

    #[test]
    fn ids_are_never_zero_and_never_reused_while_held() {
        let mut table = HeldTable {
            next_id: u32::MAX - 1,
            ..HeldTable::default()
        };
        let far = SystemTime::now() + Duration::from_secs(60);
        let first = table.insert(entry(far));
        let second = table.insert(entry(far));
        assert_eq!((first, second), (u32::MAX, 1), "wraps past 0");
        table.next_id = u32::MAX - 1;
        assert_eq!(table.insert(entry(far)), 2, "skips the ids still held");
    }
}
