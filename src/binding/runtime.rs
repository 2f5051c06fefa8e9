//! The tokio runtime every locker runs on.

use std::sync::LazyLock;

/// One worker thread: lock operations wait on Redis, not on CPU, and a single thread keeps the
/// completions of many operations together so they reach JS in batches.
pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ironlock")
        .enable_all()
        .build()
        .expect("the ironlock tokio runtime starts")
});
