//! The value ironlock stores in a lock key: a uuid v4 whose first 32 bits are a fixed mark.
//!
//! The mark tells a waiter who holds a key. An ironlock holder announces its release on the
//! key's channel, so its waiters sleep until then (bounded by the TTL); any other value belongs to
//! a holder that never announces (a hand-rolled `SET NX` lock, `redlock`, an older ironlock), so
//! its waiters poll instead of sleeping until that holder's TTL. The other 90 random bits keep
//! tokens unique; a foreign uuid that happens to start with the mark (one in 2^32) only costs its
//! waiters the poll, never exclusion.

/// The mark as Lua source text, so the scripts and [`TOKEN_MARK`] cannot drift apart.
macro_rules! token_mark {
    () => {
        "10c4ed00"
    };
}
pub(crate) use token_mark;

/// The first 8 hex digits of every token ironlock writes.
pub const TOKEN_MARK: &str = token_mark!();

const MARK_BYTES: [u8; 4] = [0x10, 0xc4, 0xed, 0x00];

/// A fresh token for one attempt or hand-over: unique, and marked as ironlock's.
pub fn new_token() -> String {
    let mut bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..4].copy_from_slice(&MARK_BYTES);
    // Sets the version (4) and variant bits again, which the mark does not touch.
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_marked_uuid_v4() {
        let token = new_token();
        let parsed = uuid::Uuid::parse_str(&token).expect("a uuid");
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert!(token.starts_with(TOKEN_MARK), "{token}");
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(new_token(), new_token());
    }
}
