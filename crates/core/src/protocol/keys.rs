//! The names a lock uses in Redis: the lock keys themselves and their helper keys and channels.
//!
//! Helper names share the lock key's hash slot so every script also runs on Redis Cluster. The
//! fencing counter is one per hash slot, not one per key, so locking a billion distinct keys leaves
//! at most 16384 counters behind.

use std::sync::LazyLock;

const SLOT_COUNT: u16 = 16384;

/// The Redis names behind one lock request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockKeys {
    /// The keys as the caller named them, duplicates removed, order kept.
    pub names: Vec<String>,
    /// `names` with the locker's key prefix: what `SET NX` writes.
    pub redis_keys: Vec<String>,
    /// The fencing counters to bump: one per distinct hash slot among `redis_keys`.
    pub fence_keys: Vec<String>,
    /// One release channel per lock key, in the same order.
    pub channels: Vec<String>,
}

impl LockKeys {
    pub fn new(prefix: &str, names: impl IntoIterator<Item = String>) -> Self {
        let mut unique: Vec<String> = Vec::new();
        for name in names {
            if !unique.contains(&name) {
                unique.push(name);
            }
        }
        let redis_keys: Vec<String> = unique
            .iter()
            .map(|name| format!("{prefix}{name}"))
            .collect();
        let mut fence_keys: Vec<String> = Vec::new();
        for key in &redis_keys {
            let counter = fence_key(prefix, key);
            if !fence_keys.contains(&counter) {
                fence_keys.push(counter);
            }
        }
        let channels = redis_keys.iter().map(|key| release_channel(key)).collect();
        Self {
            names: unique,
            redis_keys,
            fence_keys,
            channels,
        }
    }

    /// The first key: what errors and `Lock.key` name.
    pub fn first(&self) -> &str {
        &self.names[0]
    }
}

/// `{key}:released`, or `key:released` when the key already carries a hash tag.
pub fn release_channel(redis_key: &str) -> String {
    format!("{}:released", with_hash_tag(redis_key))
}

/// A name that hashes to `redis_key`'s slot and starts with it where possible: the key itself when
/// it has a hash tag, else `{key}`, else (braces inside the key get in the way) `{tag}:key`.
fn with_hash_tag(redis_key: &str) -> String {
    if hash_tag(redis_key).is_some() {
        return redis_key.to_owned();
    }
    let wrapped = format!("{{{redis_key}}}");
    // Without braces inside, `{key}` hashes exactly as `key`: no second checksum needed.
    if !redis_key.contains('}') {
        return wrapped;
    }
    let slot = hash_slot(redis_key);
    if hash_slot(&wrapped) == slot {
        wrapped
    } else {
        format!("{{{}}}:{redis_key}", slot_tag(slot))
    }
}

/// The fencing counter that serves `redis_key`: `<prefix>ironlock:fence:{tag}` where `tag` hashes
/// to the key's slot. A prefix whose own braces would capture the counter's hash tag gets a
/// per-key counter instead, which is correct but not bounded.
pub fn fence_key(prefix: &str, redis_key: &str) -> String {
    let slot = hash_slot(redis_key);
    let shared = format!("{prefix}ironlock:fence:{{{}}}", slot_tag(slot));
    // Only braces in the prefix can take the hash tag away from ours.
    if !prefix.contains('{') || hash_slot(&shared) == slot {
        shared
    } else {
        format!("{}:fence", with_hash_tag(redis_key))
    }
}

/// The part of a key Redis Cluster hashes: the first non-empty `{…}`.
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')?;
    (close > 0).then(|| &key[open + 1..open + 1 + close])
}

/// Redis Cluster's slot for `key`.
pub fn hash_slot(key: &str) -> u16 {
    crc16(hash_tag(key).unwrap_or(key).as_bytes()) % SLOT_COUNT
}

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster uses.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A short string for every slot that hashes to it, found once by search.
static SLOT_TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut tags: Vec<Option<String>> = vec![None; SLOT_COUNT as usize];
    let mut missing = SLOT_COUNT as usize;
    let mut length = 1;
    while missing > 0 {
        let mut digits = vec![0usize; length];
        'combinations: loop {
            let tag: Vec<u8> = digits.iter().map(|&d| ALPHABET[d]).collect();
            let slot = (crc16(&tag) % SLOT_COUNT) as usize;
            if tags[slot].is_none() {
                tags[slot] = Some(String::from_utf8(tag).expect("alphabet is ASCII"));
                missing -= 1;
            }
            for digit in digits.iter_mut().rev() {
                *digit += 1;
                if *digit < ALPHABET.len() {
                    continue 'combinations;
                }
                *digit = 0;
            }
            break;
        }
        length += 1;
    }
    tags.into_iter()
        .map(|tag| tag.expect("every slot found"))
        .collect()
});

fn slot_tag(slot: u16) -> &'static str {
    &SLOT_TAGS[slot as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from CLUSTER KEYSLOT on a real server.
        assert_eq!(hash_slot("foo"), 12182);
        assert_eq!(hash_slot("bar"), 5061);
        assert_eq!(hash_slot("{user1000}.following"), hash_slot("user1000"));
        assert_eq!(hash_slot("foo{}{bar}"), crc16(b"foo{}{bar}") % SLOT_COUNT);
    }

    #[test]
    fn every_slot_has_a_tag_that_hashes_to_it() {
        for slot in 0..SLOT_COUNT {
            assert_eq!(hash_slot(slot_tag(slot)), slot);
        }
    }

    #[test]
    fn helper_names_share_the_lock_key_slot() {
        for key in ["order:1", "{tenant}:order:2", "x", "a{b}c", "{}"] {
            for prefix in ["", "app:", "{app}:"] {
                let keys = LockKeys::new(prefix, [key.to_owned()]);
                let slot = hash_slot(&keys.redis_keys[0]);
                assert_eq!(hash_slot(&keys.fence_keys[0]), slot, "{prefix}{key}");
                assert_eq!(hash_slot(&keys.channels[0]), slot, "{prefix}{key}");
            }
        }
    }

    #[test]
    fn channels_add_a_hash_tag_only_when_missing() {
        assert_eq!(release_channel("order:1"), "{order:1}:released");
        assert_eq!(release_channel("{order}:1"), "{order}:1:released");
    }

    #[test]
    fn fence_counters_are_bounded_by_the_slot_count() {
        let counters: std::collections::HashSet<String> = (0..100_000)
            .map(|i| fence_key("", &format!("key:{i}")))
            .collect();
        assert!(counters.len() <= SLOT_COUNT as usize);
    }

    #[test]
    fn duplicate_keys_are_locked_once() {
        let keys = LockKeys::new("p:", ["a".to_owned(), "b".to_owned(), "a".to_owned()]);
        assert_eq!(keys.names, ["a", "b"]);
        assert_eq!(keys.redis_keys, ["p:a", "p:b"]);
        assert_eq!(keys.first(), "a");
    }
}
