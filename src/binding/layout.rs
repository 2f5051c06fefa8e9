//! The batch layout between `lib/dispatch.js` and the binding, declared once: these enums and
//! constants are exported to JS (and into `binding.d.ts`), and `lib/dispatch.js` reads them from
//! the native binding instead of keeping copies.
//!
//! **Requests** (JS → Rust, [`NativeLocker::submit`](super::locker::NativeLocker::submit)): a
//! `Float64Array` of [`REQUEST_FIELDS`] numbers per request, `[kind, op, a, b, c, key count]`, and
//! a string array with the keys of every request, in order:
//! - `kind`: a [`RequestKind`];
//! - `op`: the operation id its completion carries back (a u32; 0 for a release nobody awaits);
//! - `a`, `b`, `c`: as [`RequestKind`] says for each kind;
//! - `key count`: how many of the next strings in the key array are this request's keys.
//!
//! **Completions** (Rust → JS, `onComplete(numbers, texts, failures)` and `WireOutput`): a
//! `Float64Array` of [`COMPLETION_FIELDS`] numbers per completion, `[op, status, v0, v1, v2]`,
//! where `status` is a [`CompletionStatus`] and says what `v0..v2` hold; `texts` holds one string
//! per completion that carries text (only [`CompletionStatus::Acquired`]: the token), and
//! `failures` one [`NativeFailure`](super::completions::NativeFailure) per
//! [`CompletionStatus::Failed`] or [`CompletionStatus::Lost`] completion (`undefined` when the
//! batch has none), each in completion order.

use napi_derive::napi;

/// Numbers per request: kind, op, `a`, `b`, `c`, key count.
#[napi]
pub const REQUEST_FIELDS: u32 = 6;

/// Numbers per completion: op, status, and three status-specific values.
#[napi]
pub const COMPLETION_FIELDS: u32 = 5;

/// The first number of each request.
#[napi]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// `a` ttl ms, `b` wait ms (< 0 waits forever), `c` [`AcquireFlag`]s; its keys are next in
    /// the key array.
    Acquire = 0,
    /// `a` lock id. Completes [`CompletionStatus::Done`] with 1 when the lock was still ours,
    /// else 0.
    Release = 1,
    /// `a` lock id, `b` ttl ms (<= 0: the lock's own TTL).
    Extend = 2,
    /// `a` lock id: stop extending it and let its lease run out. Completes nothing (`op` is
    /// unused): its loss is still reported as [`CompletionStatus::Lost`] when the lease can have
    /// ended, and a release after that completes with 0 without reaching Redis. Internal to the
    /// JS layer (the Express middleware, for a client that went away).
    LetLapse = 3,
}

impl RequestKind {
    /// The kind a request's first number names.
    pub fn from_field(kind: f64) -> napi::Result<Self> {
        [Self::Acquire, Self::Release, Self::Extend, Self::LetLapse]
            .into_iter()
            .find(|known| f64::from(*known as u8) == kind)
            .ok_or_else(|| napi::Error::from_reason(format!("unknown request kind {kind}")))
    }
}

/// Bits of an acquire's `c`.
#[napi]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcquireFlag {
    /// JS may stop the wait with `NativeLocker::cancel(op)`.
    Cancellable = 1,
    /// Extend the lock every ttl/3 until released; a [`CompletionStatus::Lost`] completion
    /// reports its loss, at the latest when the lease can have ended.
    Watchdog = 2,
    /// Only the [`CompletionStatus::Lost`] completion, no extensions.
    WatchLease = 4,
}

impl AcquireFlag {
    /// Whether `flags` (an acquire's `c`) has this flag.
    pub fn is_in(self, flags: f64) -> bool {
        (flags as u8) & (self as u8) != 0
    }
}

/// The second number of each completion: what finished, and what `v0..v2` hold.
#[napi]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionStatus {
    /// `[lock id, fence, expiresAt]`; text: the token.
    Acquired = 0,
    /// `[retryAfter ms, or -1]`: busy when the wait ended.
    Busy = 1,
    /// `[1 or 0]`.
    Done = 2,
    /// `[_, _, expiresAt]`.
    Extended = 3,
    /// Failure: the error.
    Failed = 4,
    /// The watchdog lost a lock: `[lock id]`, op 0; failure: the error.
    Lost = 5,
}

impl CompletionStatus {
    pub fn field(self) -> f64 {
        f64::from(self as u8)
    }
}
