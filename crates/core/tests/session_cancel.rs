//! A caller that gives up, against one real `redis-server`: its cancel token ends the wait, and a
//! call it drops mid-way leaves nothing locked.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ironlock_core::{AcquireOptions, CancelToken, LockError};
use support::locker::{acquire, exists, locker, names, options, refused, stored_token, SLACK};
use support::RedisServer;
use support::ShowsLogs;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_token_ends_a_wait() {
    let server = RedisServer::start();
    let locker = Arc::new(locker(&server));
    let holder = acquire(&server, &locker, &["queue"], &options(30_000, Some(0))).await;

    let cancel = CancelToken::default();
    let waiting = tokio::spawn({
        let locker = locker.clone();
        let options = AcquireOptions {
            cancel: Some(cancel.clone()),
            ..options(10_000, None)
        };
        async move {
            locker
                .acquire(locker.keys(names(&["queue"])), &options)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.check(!waiting.is_finished(), "an endless wait ended by itself");

    let cancelled_at = Instant::now();
    cancel.cancel();
    let outcome = tokio::time::timeout(SLACK, waiting)
        .await
        .unwrap_or_else(|_| server.fail("the wait ignored its cancel token"))
        .expect("waiter task");
    server.check(
        cancelled_at.elapsed() < SLACK,
        format_args!("cancel took {:?}", cancelled_at.elapsed()),
    );
    let error = outcome.map(|lock| lock.token);
    server.check_eq(
        error.clone(),
        Err(LockError::Aborted {
            key: "queue".into(),
        }),
        "cancelled wait",
    );
    server.check_eq(error.unwrap_err().code(), "ABORT_ERR", "error code");
    server.check_eq(
        stored_token(&server, "queue"),
        Some(holder.token),
        "holder's token",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn already_cancelled_token_takes_nothing() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let cancel = CancelToken::default();
    cancel.cancel();

    // The key is free: only the token can stop the acquire.
    let error = refused(
        &server,
        &locker,
        &["free"],
        &AcquireOptions {
            cancel: Some(cancel),
            ..options(10_000, None)
        },
    )
    .await;
    server.check_eq(
        error,
        LockError::Aborted { key: "free".into() },
        "pre-cancelled acquire",
    );
    server.check(
        !exists(&server, "free"),
        "a cancelled acquire holds the key",
    );
}

#[tokio::test]
async fn a_caller_that_gives_up_mid_call_leaves_nothing_locked() {
    use futures_util::FutureExt;

    let server = RedisServer::start();
    let locker = locker(&server);
    let options = options(60_000, Some(0));
    // Polled once, the acquire is on its way to Redis; then its caller drops it.
    let abandoned = locker
        .acquire(locker.keys(names(&["abandoned"])), &options)
        .now_or_never();
    server.check(abandoned.is_none(), "the acquire cannot finish in one poll");

    let deadline = Instant::now() + SLACK;
    while server.calls_of("del") == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.check_eq(server.calls_of("set"), 1, "SETs: the lock was taken");
    server.check_eq(server.calls_of("del"), 1, "DELs: and given back");
    server.check(
        !exists(&server, "abandoned"),
        "the abandoned lock is still held",
    );
}
