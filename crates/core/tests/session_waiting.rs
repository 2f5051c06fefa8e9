//! Waiting for a busy lock against one real `redis-server`: woken by a release in this process or
//! another, by the holder's expiry, or by polling a holder that is not ironlock's; never polling
//! behind one that is; giving up when the wait runs out.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ironlock_core::{Lifecycle, LockError};
use support::locker::{acquire, locker, names, options, refused, stored_token, SLACK};
use support::RedisServer;
use support::ShowsLogs;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_acquire_gets_the_lock_released_by_the_same_locker() {
    let server = RedisServer::start();
    let locker = Arc::new(locker(&server));
    waiter_gets_the_lock_once_released(&server, locker.clone(), &locker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_acquire_gets_the_lock_released_by_another_locker() {
    let server = RedisServer::start();
    // Stands for another process: its own connection, no shared state with the waiter.
    let holder_side = locker(&server);
    waiter_gets_the_lock_once_released(&server, Arc::new(locker(&server)), &holder_side).await;
}

async fn waiter_gets_the_lock_once_released(
    server: &RedisServer,
    waiter_side: Arc<Lifecycle>,
    holder_side: &Lifecycle,
) {
    let holder = acquire(server, holder_side, &["door"], &options(30_000, Some(0))).await;

    let waiting = tokio::spawn(async move {
        waiter_side
            .acquire(
                waiter_side.keys(names(&["door"])),
                &options(10_000, Some(10_000)),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.check(!waiting.is_finished(), "the waiter got a held lock");

    let released_at = Instant::now();
    server.check_eq(holder_side.release(&holder).await, Ok(true), "release");
    let lock = match waiting.await.expect("waiter task") {
        Ok(lock) => lock,
        Err(error) => server.fail(format_args!("waiter: {error:?}")),
    };
    server.check(
        released_at.elapsed() < SLACK,
        format_args!("waiter took {:?} after the release", released_at.elapsed()),
    );
    server.check_eq(
        stored_token(server, "door"),
        Some(lock.token),
        "waiter's token",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_acquire_gets_the_lock_once_expired() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let holder = acquire(&server, &locker, &["door"], &options(400, Some(0))).await;

    let started = Instant::now();
    let lock = acquire(&server, &locker, &["door"], &options(10_000, Some(10_000))).await;

    // Never before the holder's TTL ran out (less what already passed before `started`).
    server.check(
        started.elapsed() >= Duration::from_millis(250),
        format_args!("got a live lock after {:?}", started.elapsed()),
    );
    server.check(
        started.elapsed() < Duration::from_millis(400) + SLACK,
        format_args!("expiry noticed only after {:?}", started.elapsed()),
    );
    server.check(lock.token != holder.token, "a fresh token per acquisition");
    server.check_eq(
        stored_token(&server, "door"),
        Some(lock.token),
        "waiter's token",
    );
}

/// A holder that is not ironlock's (a hand-rolled `SET NX` lock) never announces its release:
/// the waiter must notice the key gone by polling, long before the holder's TTL.
async fn foreign_release_is_noticed_quickly(keys: &[&str]) {
    let server = RedisServer::start();
    let locker = Arc::new(locker(&server));
    let _: Option<String> = server.query(&["SET", keys[0], "1", "PX", "10000", "NX"]);

    let started = Instant::now();
    let waiting = tokio::spawn({
        let locker = locker.clone();
        let keys = names(keys);
        async move {
            let keys = locker.keys(keys);
            locker.acquire(keys, &options(10_000, Some(15_000))).await
        }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let _: i64 = server.query(&["DEL", keys[0]]);
    let deleted = started.elapsed();
    let lock = waiting.await.expect("acquire task");

    let waited = started.elapsed() - deleted;
    server.check(lock.is_ok(), format_args!("acquire failed: {lock:?}"));
    // The poll's longest pause is 16 ms; the rest is slack for a loaded machine, and still far
    // below the 10 s that waiting for the holder's TTL would take.
    server.check(
        waited < Duration::from_millis(16) + SLACK,
        format_args!("the foreign release was noticed {waited:?} after it happened"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_holders_release_is_noticed_without_waiting_for_its_ttl() {
    foreign_release_is_noticed_quickly(&["job"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_holders_release_is_noticed_by_a_multi_key_waiter() {
    foreign_release_is_noticed_quickly(&["job", "other"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_behind_an_ironlock_holder_does_not_poll() {
    let server = RedisServer::start();
    let holder_locker = locker(&server);
    let waiter_locker = Arc::new(locker(&server));
    let holder = acquire(
        &server,
        &holder_locker,
        &["door"],
        &options(10_000, Some(0)),
    )
    .await;
    server.check(
        holder
            .token
            .starts_with(ironlock_core::protocol::token::TOKEN_MARK),
        format_args!("token {} lacks the mark", holder.token),
    );

    let waiting = tokio::spawn({
        let locker = waiter_locker.clone();
        async move {
            let keys = locker.keys(names(&["door"]));
            locker.acquire(keys, &options(10_000, Some(15_000))).await
        }
    });
    // Let the waiter make its attempts and settle into its sleep.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.reset_stats();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls_while_held = server.calls();
    holder_locker.release(&holder).await.expect("release");
    let lock = waiting.await.expect("acquire task");

    server.check(lock.is_ok(), format_args!("acquire failed: {lock:?}"));
    // Only the stats reset's own CONFIG RESETSTAT may show: an ironlock holder announces its
    // release, so its waiter sleeps instead of asking Redis.
    server.check(
        calls_while_held <= 1,
        format_args!(
            "{calls_while_held} commands while an ironlock holder held the lock: {:?}",
            server.command_calls()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_runs_out_while_the_lock_stays_held() {
    let server = RedisServer::start();
    let locker = locker(&server);
    acquire(&server, &locker, &["door"], &options(30_000, Some(0))).await;

    let started = Instant::now();
    let error = refused(&server, &locker, &["door"], &options(10_000, Some(300))).await;

    let waited = started.elapsed();
    server.check(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(300) + SLACK,
        format_args!("waited {waited:?} for a 300 ms wait"),
    );
    server.check(
        matches!(error, LockError::Busy { ref key, retry_after: Some(_) } if key == "door"),
        format_args!("expected Busy, got {error:?}"),
    );
}
