//! The records that cross the boundary between `lib/dispatch.js` and the binding, declared once:
//! each field's position in its record is a variant of [`RequestField`] or [`CompletionField`],
//! exported to JS (and into `binding.d.ts`) with the record sizes, the request kinds, the acquire
//! flags and the completion statuses. Both sides read and write every field by its name, never by
//! a number of their own (`__test__/binding/layout.test.js` walks each field through both sides by name).
//!
//! **Requests** (JS → Rust, [`NativeLocker::submit`](super::locker::NativeLocker::submit)): a
//! `Float64Array` of [`REQUEST_FIELDS`] numbers per request, laid out as [`RequestField`] says,
//! and a string array with the keys of every request, in order. A field the request's
//! [`RequestKind`] does not use is 0.
//!
//! **Completions** (Rust → JS, `onComplete(numbers, texts, failures)` and `NativeWireOutput`): a
//! `Float64Array` of [`COMPLETION_FIELDS`] numbers per completion, laid out as [`CompletionField`]
//! says; a field its [`CompletionStatus`] does not set is 0. `texts` holds one string per
//! completion that carries text (only [`CompletionStatus::Acquired`]: the token), and `failures`
//! one [`NativeFailure`](super::completions::NativeFailure) per [`CompletionStatus::Failed`] or
//! [`CompletionStatus::Lost`] completion (`undefined` when the batch has none), each in
//! completion order.

use std::ops::{Index, IndexMut};
use std::time::Duration;

use napi_derive::napi;

/// Where each number of a request sits among its [`REQUEST_FIELDS`].
#[napi]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestField {
    /// A [`RequestKind`].
    Kind = 0,
    /// The operation id its completion carries back (a u32; 0 for a release nobody awaits).
    Op = 1,
    /// Release, Extend, LetLapse: the lock id its [`CompletionStatus::Acquired`] gave.
    Lock = 2,
    /// Acquire: ms the lock lives. Extend: ms more from now (<= 0: the lock's own TTL).
    Ttl = 3,
    /// Acquire: ms to wait while someone else holds it (< 0: forever).
    Wait = 4,
    /// Acquire: its [`AcquireFlag`]s.
    Flags = 5,
    /// Acquire: how many of the next strings in the key array are its keys. Extend: 1, its
    /// lock's first key, which its error names should the lock be released already.
    KeyCount = 6,
    /// Acquire: how many replicas must acknowledge the lock before it is granted (0: none).
    Replicas = 7,
    /// Acquire with `Replicas` > 0: ms to wait for their acknowledgements.
    ReplicasTimeout = 8,
}

/// Numbers per request: one per [`RequestField`].
#[napi]
pub const REQUEST_FIELDS: u32 = RequestField::ReplicasTimeout as u32 + 1;

/// Where each number of a completion sits among its [`COMPLETION_FIELDS`].
#[napi]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionField {
    /// The operation id of the request it completes (0 for a [`CompletionStatus::Lost`]).
    Op = 0,
    /// A [`CompletionStatus`]: which of the fields below it sets.
    Status = 1,
    /// Acquired, Lost: the lock id, which later requests name the lock by.
    Lock = 2,
    /// Acquired: the fencing token.
    Fence = 3,
    /// Acquired, Extended: epoch ms until which the lock is surely ours, rounded down.
    ExpiresAt = 4,
    /// Busy: ms until the holder's TTL ends, as [`retry_after_ms`] rounds it; -1 when it set none.
    RetryAfter = 5,
    /// Done: 1 when the released lock was still ours, else 0.
    Released = 6,
}

/// Numbers per completion: one per [`CompletionField`].
#[napi]
pub const COMPLETION_FIELDS: u32 = CompletionField::Released as u32 + 1;

/// One request's numbers, read by field name.
#[derive(Clone, Copy)]
pub struct RequestRecord<'a>(pub &'a [f64]);

impl Index<RequestField> for RequestRecord<'_> {
    type Output = f64;

    fn index(&self, field: RequestField) -> &f64 {
        &self.0[field as usize]
    }
}

/// One completion's numbers, written by field name; the fields its status does not set stay 0.
pub struct CompletionRecord(pub [f64; COMPLETION_FIELDS as usize]);

impl CompletionRecord {
    pub fn new(op: u32, status: CompletionStatus) -> Self {
        let mut record = Self([0.0; COMPLETION_FIELDS as usize]);
        record[CompletionField::Op] = f64::from(op);
        record[CompletionField::Status] = f64::from(status as u8);
        record
    }
}

impl Index<CompletionField> for CompletionRecord {
    type Output = f64;

    fn index(&self, field: CompletionField) -> &f64 {
        &self.0[field as usize]
    }
}

impl IndexMut<CompletionField> for CompletionRecord {
    fn index_mut(&mut self, field: CompletionField) -> &mut f64 {
        &mut self.0[field as usize]
    }
}

/// Busy's `retryAfter`, the one rounding of it on every path (completion, failure, message): the
/// holder's remaining TTL in whole ms, rounded up, so that "it expires in N ms at the latest"
/// holds; -1 when the holder set no TTL.
pub fn retry_after_ms(retry_after: Option<Duration>) -> f64 {
    retry_after.map_or(-1.0, |after| (after.as_secs_f64() * 1000.0).ceil())
}

/// The kind of a request, in its [`RequestField::Kind`].
#[napi]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// Uses `Ttl`, `Wait`, `Flags`, `KeyCount`, `Replicas` and `ReplicasTimeout`; its keys are
    /// next in the key array.
    Acquire = 0,
    /// Uses `Lock`. Completes [`CompletionStatus::Done`].
    Release = 1,
    /// Uses `Lock`, `Ttl` and `KeyCount` (1: the lock's first key is next in the key array).
    /// Completes [`CompletionStatus::Extended`].
    Extend = 2,
    /// Uses `Lock`: stop extending it and let its lease run out. Completes nothing (`Op` is
    /// unused): its loss is still reported as [`CompletionStatus::Lost`] when the lease can have
    /// ended, and a release after that completes with 0 without reaching Redis. Internal to the
    /// JS layer (the Express middleware, for a client that went away).
    LetLapse = 3,
}

impl RequestKind {
    /// The kind a request's [`RequestField::Kind`] names.
    pub fn from_field(kind: f64) -> napi::Result<Self> {
        [Self::Acquire, Self::Release, Self::Extend, Self::LetLapse]
            .into_iter()
            .find(|known| f64::from(*known as u8) == kind)
            .ok_or_else(|| napi::Error::from_reason(format!("unknown request kind {kind}")))
    }
}

/// Bits of an acquire's [`RequestField::Flags`].
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
    /// Whether `flags` (an acquire's [`RequestField::Flags`]) has this flag.
    pub fn is_in(self, flags: f64) -> bool {
        (flags as u8) & (self as u8) != 0
    }
}

/// What finished, in a completion's [`CompletionField::Status`]: which fields it sets.
#[napi]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionStatus {
    /// `Lock`, `Fence`, `ExpiresAt`; text: the token.
    Acquired = 0,
    /// `RetryAfter`: busy when the wait ended.
    Busy = 1,
    /// `Released`.
    Done = 2,
    /// `ExpiresAt`.
    Extended = 3,
    /// Failure: the error.
    Failed = 4,
    /// The watchdog lost a lock: `Lock`, `Op` 0; failure: the error.
    Lost = 5,
}
