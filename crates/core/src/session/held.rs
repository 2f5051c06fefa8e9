//! The locks this process holds, by the id callers know them by.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::protocol::lock::HeldLock;
use crate::session::watchdog::Watchdog;

pub(super) struct HeldEntry {
    pub(super) lock: HeldLock,
    pub(super) watchdog: Option<Watchdog>,
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
    next_id: u32,
    prune_at: usize,
}

/// The table is pruned no earlier than at this many entries.
const PRUNE_MIN: usize = 1024;

impl HeldTable {
    pub(super) fn insert(&mut self, entry: HeldEntry) -> u32 {
        if self.entries.len() >= self.prune_at.max(PRUNE_MIN) {
            let now = SystemTime::now();
            self.entries.retain(|_, held| {
                held.watchdog.is_some() || held.lock.expires_at + held.lock.ttl > now
            });
            self.prune_at = self.entries.len() * 2;
        }
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.entries.contains_key(&self.next_id) {
                break;
            }
        }
        self.entries.insert(self.next_id, entry);
        self.next_id
    }

    pub(super) fn get(&self, id: u32) -> Option<&HeldEntry> {
        self.entries.get(&id)
    }

    pub(super) fn get_mut(&mut self, id: u32) -> Option<&mut HeldEntry> {
        self.entries.get_mut(&id)
    }

    pub(super) fn remove(&mut self, id: u32) -> Option<HeldEntry> {
        self.entries.remove(&id)
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
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
        }
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
