//! The napi binding of ironlock: converts JS values into the core's types and completions back
//! into JS values, and nothing else. The lock protocol lives in `ironlock-core`.

mod binding;

pub use binding::defaults;
pub use binding::locker::NativeLocker;
pub use binding::messages;

/// The tokio thread allocates and frees a few buffers per Redis call; glibc's allocator spent a
/// third of that thread's time on them (perf), mimalloc's thread-local heaps far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
