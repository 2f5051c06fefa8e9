//! The napi binding of ironlock: converts JS values into the core's types and completions back
//! into JS values, and nothing else. The lock protocol lives in `ironlock-core`.

mod binding;

pub use binding::locker::NativeLocker;
