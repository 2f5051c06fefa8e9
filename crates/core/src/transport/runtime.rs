//! The tokio runtime every locker of a Node process runs on (cargo tests bring their own).

use std::sync::LazyLock;

use tokio::runtime::{Builder, Handle};

/// One thread: lock operations wait on Redis, not on CPU. A current-thread scheduler runs woken
/// tasks in order, so the commands of a burst of operations are all queued before the connection
/// writes them, and leave in one socket write instead of one each (a multi-thread scheduler runs
/// a freshly woken task at once, flushing every command on its own).
pub static RUNTIME: LazyLock<Handle> = LazyLock::new(|| {
    let runtime = Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the ironlock tokio runtime starts");
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("ironlock".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .expect("the ironlock runtime thread starts");
    handle
});
