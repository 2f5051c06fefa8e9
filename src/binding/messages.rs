//! The core's error messages, for the few errors JS makes itself: the text is the core's
//! [`LockError`] `Display`, never written again in `lib/`.

use std::time::Duration;

use ironlock_core::LockError;
use napi_derive::napi;

/// The message of an `ELOCKBUSY` error about `key` (the core's `LockError::Busy` text), worded
/// from `retryAfter` as it crosses the boundary (whole ms, rounded up by `layout::retry_after_ms`;
/// < 0: none): JS calls it for a busy completion, which carries only that number, and a busy
/// failure's message is made by it too, so both say the same number.
#[napi]
pub fn busy_message(key: String, retry_after: f64) -> String {
    LockError::Busy {
        key,
        retry_after: (retry_after >= 0.0).then(|| Duration::from_millis(retry_after as u64)),
    }
    .to_string()
}

/// The message of the `ECONNECTION` error of a call on a closed locker, about `key` (the core's
/// `LockError::Closed` text, as the native side words it for an operation the close cut short).
#[napi]
pub fn closed_message(key: String) -> String {
    LockError::Closed { key }.to_string()
}
