//! The lock protocol against one real `redis-server`, started fresh for every test.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ironlock_core::protocol::keys::hash_slot;
use ironlock_core::{
    AcquireOptions, CancelToken, HeldLock, Lifecycle, LockError, LockerConfig, Target, Upkeep,
    Watchdog,
};
use support::RedisServer;
use tokio::time::Instant;

/// Short enough that failure tests finish fast, long enough for a loaded CI machine.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Added to every upper time bound: the tests check behaviour, not the scheduler's latency.
const SLACK: Duration = Duration::from_millis(1_000);

fn config(server: &RedisServer) -> LockerConfig {
    LockerConfig {
        connect_timeout: CONNECT_TIMEOUT,
        command_timeout: COMMAND_TIMEOUT,
        ..LockerConfig::new(Target::Single(server.node()))
    }
}

fn locker(server: &RedisServer) -> Lifecycle {
    Lifecycle::new(&config(server)).expect("valid config")
}

fn names(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|&key| key.to_owned()).collect()
}

fn options(ttl_ms: u64, wait_ms: Option<u64>) -> AcquireOptions {
    AcquireOptions {
        ttl: Duration::from_millis(ttl_ms),
        wait: wait_ms.map(Duration::from_millis),
        cancel: None,
    }
}

/// Fails the test (with the server log) unless the lock was taken.
async fn acquire(
    server: &RedisServer,
    locker: &Lifecycle,
    keys: &[&str],
    options: &AcquireOptions,
) -> HeldLock {
    match locker.acquire(locker.keys(names(keys)), options).await {
        Ok(lock) => lock,
        Err(error) => server.fail(format_args!("acquire {keys:?}: {error:?}")),
    }
}

/// Fails the test unless the lock was refused with an error.
async fn refused(
    server: &RedisServer,
    locker: &Lifecycle,
    keys: &[&str],
    options: &AcquireOptions,
) -> LockError {
    match locker.acquire(locker.keys(names(keys)), options).await {
        Ok(lock) => server.fail(format_args!("acquire {keys:?} should fail, got {lock:?}")),
        Err(error) => error,
    }
}

fn stored_token(server: &RedisServer, key: &str) -> Option<String> {
    server.query(&["GET", key])
}

fn exists(server: &RedisServer, key: &str) -> bool {
    server.query::<i64>(&["EXISTS", key]) == 1
}

fn pttl(server: &RedisServer, key: &str) -> i64 {
    server.query(&["PTTL", key])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_stores_a_plain_set_nx_px_key() {
    let server = RedisServer::start();
    let locker = locker(&server);

    let lock = acquire(&server, &locker, &["order:1"], &options(10_000, Some(0))).await;

    server.check_eq(lock.key(), "order:1", "lock key");
    server.check_eq(
        stored_token(&server, "order:1"),
        Some(lock.token.clone()),
        "value of the lock key",
    );
    server.check_eq(
        server.query::<String>(&["TYPE", "order:1"]),
        "string".to_owned(),
        "type of the lock key",
    );
    let left = pttl(&server, "order:1");
    server.check(
        left > 0 && left <= 10_000,
        format_args!("PTTL {left} should be in (0, 10000]"),
    );
    server.check(lock.fence >= 1, format_args!("fence {}", lock.fence));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_is_true_once_then_false() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let lock = acquire(&server, &locker, &["job"], &options(10_000, Some(0))).await;

    server.check_eq(locker.release(&lock).await, Ok(true), "first release");
    server.check(!exists(&server, "job"), "released key still exists");
    server.check_eq(locker.release(&lock).await, Ok(false), "second release");

    // A stale holder must not delete the lock of whoever took the key next.
    let next = acquire(&server, &locker, &["job"], &options(10_000, Some(0))).await;
    server.check_eq(locker.release(&lock).await, Ok(false), "stale release");
    server.check_eq(
        stored_token(&server, "job"),
        Some(next.token),
        "the new holder's token",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_lock_fails_at_once_with_retry_after_when_wait_is_zero() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let holder = acquire(&server, &locker, &["report"], &options(10_000, Some(0))).await;

    let started = Instant::now();
    let error = refused(&server, &locker, &["report"], &options(5_000, Some(0))).await;

    server.check(
        started.elapsed() < SLACK,
        format_args!("wait = 0 took {:?}", started.elapsed()),
    );
    match &error {
        LockError::Busy {
            key,
            retry_after: Some(after),
        } => {
            server.check_eq(key.as_str(), "report", "busy key");
            server.check(
                *after > Duration::from_millis(5_000) && *after <= Duration::from_millis(10_000),
                format_args!("retry_after {after:?} should be the holder's TTL left"),
            );
        }
        other => server.fail(format_args!(
            "expected Busy with retry_after, got {other:?}"
        )),
    }
    server.check_eq(error.code(), "ELOCKBUSY", "error code");
    server.check_eq(
        stored_token(&server, "report"),
        Some(holder.token),
        "holder's token",
    );

    // A key set without TTL by someone else has no known end.
    server.query::<()>(&["SET", "forever", "someone-else"]);
    let error = refused(&server, &locker, &["forever"], &options(5_000, Some(0))).await;
    server.check_eq(
        error,
        LockError::Busy {
            key: "forever".into(),
            retry_after: None,
        },
        "busy without TTL",
    );
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_lock_is_all_or_nothing() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let short = acquire(&server, &locker, &["a"], &options(5_000, Some(0))).await;
    let long = acquire(&server, &locker, &["b"], &options(20_000, Some(0))).await;

    let error = refused(
        &server,
        &locker,
        &["c", "a", "b"],
        &options(10_000, Some(0)),
    )
    .await;
    match &error {
        LockError::Busy {
            key,
            retry_after: Some(after),
        } => {
            server.check_eq(key.as_str(), "c", "busy names the first key");
            server.check(
                *after > Duration::from_millis(15_000),
                format_args!("retry_after {after:?} should be the longest TTL left"),
            );
        }
        other => server.fail(format_args!("expected Busy, got {other:?}")),
    }
    server.check(
        !exists(&server, "c"),
        "a refused multi-key lock set a free key",
    );
    server.check_eq(
        stored_token(&server, "a"),
        Some(short.token.clone()),
        "a's holder",
    );

    server.check_eq(locker.release(&short).await, Ok(true), "release a");
    server.check_eq(locker.release(&long).await, Ok(true), "release b");
    let all = acquire(
        &server,
        &locker,
        &["c", "a", "b", "a"],
        &options(10_000, Some(0)),
    )
    .await;
    server.check_eq(all.keys.names.clone(), names(&["c", "a", "b"]), "names");
    for key in ["a", "b", "c"] {
        server.check_eq(stored_token(&server, key), Some(all.token.clone()), key);
        let left = pttl(&server, key);
        server.check(
            left > 0 && left <= 10_000,
            format_args!("PTTL of {key}: {left}"),
        );
    }
    refused(&server, &locker, &["b"], &options(10_000, Some(0))).await;

    server.check_eq(locker.release(&all).await, Ok(true), "release all");
    for key in ["a", "b", "c"] {
        server.check(!exists(&server, key), format_args!("{key} still exists"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefix_applies_to_every_key_written() {
    let server = RedisServer::start();
    let locker = Lifecycle::new(&LockerConfig {
        key_prefix: "app:".into(),
        ..config(&server)
    })
    .expect("valid config");

    let lock = acquire(&server, &locker, &["job"], &options(10_000, Some(0))).await;

    server.check_eq(lock.key(), "job", "the key as the caller named it");
    server.check_eq(
        stored_token(&server, "app:job"),
        Some(lock.token.clone()),
        "prefixed key",
    );
    server.check(!exists(&server, "job"), "unprefixed key was written");
    let mut written: Vec<String> = server.query(&["KEYS", "*"]);
    written.sort();
    server.check(
        written.len() == 2,
        format_args!("expected the lock and one counter, got {written:?}"),
    );
    server.check(
        written.iter().all(|key| key.starts_with("app:")),
        format_args!("every key carries the prefix: {written:?}"),
    );
    server.check(
        written
            .iter()
            .any(|key| key.starts_with("app:ironlock:fence:")),
        format_args!("fence counter under the prefix: {written:?}"),
    );
    server.check_eq(locker.release(&lock).await, Ok(true), "release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_strictly_increase_per_key() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let (x, y) = ("x", "y");
    server.check(hash_slot(x) != hash_slot(y), "x and y must hash apart");

    let mut last_fence = 0;
    for round in 0..20 {
        let lock = acquire(&server, &locker, &[x], &options(10_000, Some(0))).await;
        server.check(
            lock.fence > last_fence,
            format_args!("round {round}: fence {} after {last_fence}", lock.fence),
        );
        last_fence = lock.fence;
        server.check_eq(locker.release(&lock).await, Ok(true), "release x");
    }
    let y_alone = acquire(&server, &locker, &[y], &options(10_000, Some(0))).await;
    locker.release(&y_alone).await.expect("release y");

    // Keys from two slots: the fence must beat both counters, and both must move past it.
    let both = acquire(&server, &locker, &[x, y], &options(10_000, Some(0))).await;
    server.check(
        both.fence > last_fence && both.fence > y_alone.fence,
        format_args!(
            "fence {} of x+y after x {last_fence}, y {}",
            both.fence, y_alone.fence
        ),
    );
    locker.release(&both).await.expect("release x+y");
    for key in [x, y] {
        let lock = acquire(&server, &locker, &[key], &options(10_000, Some(0))).await;
        server.check(
            lock.fence > both.fence,
            format_args!("{key} fence {} after x+y {}", lock.fence, both.fence),
        );
        locker.release(&lock).await.expect("release");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_counters_are_one_per_slot() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let keys: Vec<String> = (0..300).map(|i| format!("item:{i}")).collect();

    for key in &keys {
        let lock = acquire(&server, &locker, &[key.as_str()], &options(10_000, Some(0))).await;
        server.check_eq(locker.release(&lock).await, Ok(true), "release");
    }

    // Released locks leave nothing behind but their slots' counters.
    let left: Vec<String> = server.query(&["KEYS", "*"]);
    let slots: HashSet<u16> = keys.iter().map(|key| hash_slot(key)).collect();
    server.check_eq(left.len(), slots.len(), "counters left");
    server.check(
        left.iter().all(|key| key.starts_with("ironlock:fence:")),
        format_args!("only fence counters remain: {left:?}"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_redis_forgot_go_again_with_their_source() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let forget = || server.query::<()>(&["SCRIPT", "FLUSH"]);

    forget();
    let one = acquire(&server, &locker, &["forgot:one"], &options(10_000, Some(0))).await;
    forget();
    let both = acquire(
        &server,
        &locker,
        &["forgot:a", "forgot:b"],
        &options(10_000, Some(0)),
    )
    .await;
    forget();
    if let Err(error) = locker.extend(&both, Duration::from_millis(20_000)).await {
        server.fail(format_args!("extend: {error:?}"));
    }
    forget();
    server.check_eq(locker.release(&one).await, Ok(true), "release of one key");
    server.check_eq(locker.release(&both).await, Ok(true), "release of two keys");

    server.check(
        !exists(&server, "forgot:one") && !exists(&server, "forgot:a"),
        "released keys still exist",
    );
    // Each call Redis did not know went once more, as EVAL with its source.
    server.check_eq(server.calls_of("eval"), 4, "EVAL calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_renews_the_ttl_until_someone_else_takes_the_lock() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let lock = acquire(&server, &locker, &["lease"], &options(1_000, Some(0))).await;

    let extended = match locker.extend(&lock, Duration::from_millis(20_000)).await {
        Ok(extended) => extended,
        Err(error) => server.fail(format_args!("extend: {error:?}")),
    };
    server.check_eq(extended.ttl, Duration::from_millis(20_000), "new ttl");
    server.check_eq(extended.token.clone(), lock.token.clone(), "same token");
    server.check(
        extended.expires_at > lock.expires_at,
        "validity moves forward",
    );
    let left = pttl(&server, "lease");
    server.check(
        left > 10_000 && left <= 20_000,
        format_args!("PTTL after extend: {left}"),
    );

    // As if the lease expired and another client took the key.
    server.query::<()>(&["DEL", "lease"]);
    let thief = acquire(&server, &locker, &["lease"], &options(5_000, Some(0))).await;

    let error = locker
        .extend(&extended, Duration::from_millis(20_000))
        .await;
    server.check_eq(
        error.map(|lock| lock.token),
        Err(LockError::Lost {
            key: "lease".into(),
        }),
        "extend of a taken lock",
    );
    server.check_eq(
        stored_token(&server, "lease"),
        Some(thief.token),
        "thief's token",
    );
    let left = pttl(&server, "lease");
    server.check(
        left > 0 && left <= 5_000,
        format_args!("a failed extend changed the thief's TTL: {left}"),
    );
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_keeps_a_short_lock_alive_and_reports_its_loss() {
    let server = RedisServer::start();
    let locker = Arc::new(locker(&server));
    let lock = acquire(&server, &locker, &["batch"], &options(300, Some(0))).await;

    let (lost_sender, mut lost) = tokio::sync::oneshot::channel();
    let watchdog = Watchdog::start(locker.clone(), lock.clone(), Upkeep::Extend, move |error| {
        let _ = lost_sender.send(error);
    });

    // Four TTLs: without extensions the key would be long gone.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    server.check_eq(
        stored_token(&server, "batch"),
        Some(lock.token.clone()),
        "token after 1.2 s",
    );
    let left = pttl(&server, "batch");
    server.check(
        left > 0 && left <= 300,
        format_args!("PTTL {left} should stay within the 300 ms ttl"),
    );
    server.check(
        lost.try_recv().is_err(),
        "on_lost ran while the lock was held",
    );

    server.query::<()>(&["DEL", "batch"]);
    let error = tokio::time::timeout(SLACK, &mut lost)
        .await
        .unwrap_or_else(|_| server.fail("on_lost did not run after the key was deleted"))
        .expect("on_lost sends before the watchdog ends");
    server.check_eq(
        error,
        LockError::Lost {
            key: "batch".into(),
        },
        "reported loss",
    );
    drop(watchdog);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watchdog_lets_the_lock_expire() {
    let server = RedisServer::start();
    let locker = Arc::new(locker(&server));
    let lock = acquire(&server, &locker, &["batch"], &options(300, Some(0))).await;

    let watchdog = Watchdog::start(locker.clone(), lock, Upkeep::Extend, |_| {});
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.check(exists(&server, "batch"), "the watchdog did not extend");
    drop(watchdog);

    tokio::time::sleep(Duration::from_millis(800)).await;
    server.check(
        !exists(&server, "batch"),
        "the lock outlived its dropped watchdog",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_is_a_connection_error() {
    let mut server = RedisServer::start();
    let connected = locker(&server);
    acquire(&server, &connected, &["warm-up"], &options(10_000, Some(0))).await;
    server.stop();
    let never_connected = locker(&server);
    let bound = CONNECT_TIMEOUT + COMMAND_TIMEOUT + SLACK;

    for (which, locker) in [
        ("connected", &connected),
        ("never connected", &never_connected),
    ] {
        let started = Instant::now();
        let error = refused(&server, locker, &["job"], &options(10_000, Some(10_000))).await;
        server.check(
            started.elapsed() < bound,
            format_args!("{which}: took {:?}", started.elapsed()),
        );
        match &error {
            LockError::Connection { key, message } => {
                server.check_eq(key.as_str(), "job", "error key");
                server.check(
                    message.contains(&format!("127.0.0.1:{}", server.port())),
                    format_args!("{which}: message names the node: {message}"),
                );
            }
            other => server.fail(format_args!("{which}: expected Connection, got {other:?}")),
        }
        server.check_eq(error.code(), "ECONNECTION", "error code");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_server_times_out_then_recovers() {
    let server = RedisServer::start();
    let command_timeout = Duration::from_millis(500);
    let locker = Lifecycle::new(&LockerConfig {
        command_timeout,
        ..config(&server)
    })
    .expect("valid config");
    // Connects and loads the acquire and release scripts.
    let warm_up = acquire(&server, &locker, &["warm-up"], &options(10_000, Some(0))).await;
    locker.release(&warm_up).await.expect("release warm-up");

    server.pause();
    let started = Instant::now();
    let error = refused(&server, &locker, &["job"], &options(30_000, Some(0))).await;
    let waited = started.elapsed();
    server.resume();

    server.check(
        waited >= command_timeout.mul_f64(0.9) && waited < command_timeout + SLACK,
        format_args!("a paused server failed after {waited:?}"),
    );
    server.check(
        matches!(&error, LockError::Connection { key, .. } if key == "job"),
        format_args!("expected Connection, got {error:?}"),
    );

    // The timed-out SET still ran once the server woke; the core must have undone it, or the
    // key would stay locked for its whole 30 s TTL.
    let started = Instant::now();
    let lock = acquire(&server, &locker, &["job"], &options(10_000, Some(5_000))).await;
    server.check(
        started.elapsed() < SLACK,
        format_args!("recovery took {:?}", started.elapsed()),
    );
    server.check_eq(
        stored_token(&server, "job"),
        Some(lock.token.clone()),
        "token after recovery",
    );
    server.check_eq(
        locker.release(&lock).await,
        Ok(true),
        "release after recovery",
    );
}

/// `commandTimeout` bounds a command on an open connection, whatever `connectTimeout` is, and a
/// timed-out command says so in the wire's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_fails_a_release_after_the_command_timeout_alone() {
    let server = RedisServer::start();
    let command_timeout = Duration::from_millis(300);
    let locker = Lifecycle::new(&LockerConfig {
        connect_timeout: Duration::from_millis(8_000),
        command_timeout,
        ..config(&server)
    })
    .expect("valid config");
    let lock = acquire(&server, &locker, &["job"], &options(30_000, Some(0))).await;

    server.pause();
    let started = Instant::now();
    let released = locker.release(&lock).await;
    let waited = started.elapsed();
    server.resume();

    server.check(
        waited >= command_timeout.mul_f64(0.9) && waited < command_timeout + SLACK,
        format_args!("a stalled server failed the release after {waited:?}"),
    );
    match released {
        Err(LockError::Connection { key, message }) => {
            server.check_eq(key.as_str(), "job", "error key");
            server.check(
                message.ends_with("no answer within 300 ms"),
                format_args!("message: {message}"),
            );
        }
        other => server.fail(format_args!("expected a connection error, got {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_server_before_the_first_connect_is_a_connection_error() {
    let server = RedisServer::start();
    let locker = locker(&server);

    server.pause();
    let started = Instant::now();
    let error = refused(&server, &locker, &["job"], &options(10_000, Some(0))).await;
    let waited = started.elapsed();
    server.resume();

    server.check(
        waited < CONNECT_TIMEOUT + COMMAND_TIMEOUT + SLACK,
        format_args!("a paused server failed after {waited:?}"),
    );
    server.check(
        matches!(&error, LockError::Connection { key, .. } if key == "job"),
        format_args!("expected Connection, got {error:?}"),
    );
    let lock = acquire(&server, &locker, &["job"], &options(10_000, Some(5_000))).await;
    server.check_eq(
        locker.release(&lock).await,
        Ok(true),
        "release after recovery",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_locker_refuses_new_work() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let lock = acquire(&server, &locker, &["job"], &options(10_000, Some(0))).await;

    locker.close();

    let error = refused(&server, &locker, &["other"], &options(10_000, Some(0))).await;
    server.check_eq(
        error,
        LockError::Closed {
            key: "other".into(),
        },
        "acquire after close",
    );
    server.check_eq(
        locker.release(&lock).await,
        Err(LockError::Closed { key: "job".into() }),
        "release after close",
    );
}

/// Calls of `command` (`evalsha`, `set`, …) Redis has run since it started.
fn calls(server: &RedisServer, command: &str) -> u64 {
    let stats: String = server.query(&["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |count| count.parse().expect("a call count"))
}

fn script_calls(server: &RedisServer) -> u64 {
    calls(server, "evalsha") + calls(server, "eval")
}

// One thread: every acquire of the burst is queued before the flush task gets to run.
#[tokio::test]
async fn one_key_locks_asked_together_travel_as_one_script_call() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let keys: Vec<String> = (0..50).map(|n| format!("burst:{n}")).collect();
    // Loads the script, so the burst below runs on EVALSHA alone.
    let warm = acquire(&server, &locker, &["warm"], &options(10_000, Some(0))).await;
    server.check_eq(locker.release(&warm).await, Ok(true), "warm-up release");
    let before = script_calls(&server);

    let acquires = keys.iter().map(|key| {
        let options = options(10_000, Some(0));
        let keys = locker.keys(vec![key.clone()]);
        let locker = &locker;
        async move { locker.acquire(keys, &options).await }
    });
    let locks: Vec<HeldLock> = futures_util::future::join_all(acquires)
        .await
        .into_iter()
        .map(|lock| lock.unwrap_or_else(|error| server.fail(format_args!("{error:?}"))))
        .collect();
    server.check_eq(
        script_calls(&server) - before,
        1,
        "script calls for 50 acquires",
    );
    for (lock, key) in locks.iter().zip(&keys) {
        server.check_eq(stored_token(&server, key), Some(lock.token.clone()), key);
    }

    let releases = futures_util::future::join_all(locks.iter().map(|lock| locker.release(lock)));
    server.check(
        releases.await.iter().all(|released| released == &Ok(true)),
        "every release was ours",
    );
    server.check_eq(
        script_calls(&server) - before,
        2,
        "script calls for 50 releases more",
    );
    server.check(
        keys.iter().all(|key| !exists(&server, key)),
        "a key is left",
    );
}

#[tokio::test]
async fn a_command_redis_refuses_fails_only_its_own_lock() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let (broken, sound) = ("broken", "sound");
    server.check(
        hash_slot(broken) != hash_slot(sound),
        "the two keys need fence counters of their own",
    );
    // A fencing counter that INCR cannot count: Redis refuses that lock's INCR mid-script.
    let counter = ironlock_core::protocol::keys::fence_key("", broken);
    server.query::<()>(&["SET", &counter, "not a number"]);

    let options = options(10_000, Some(0));
    let (failed, taken) = tokio::join!(
        locker.acquire(locker.keys(names(&[broken])), &options),
        locker.acquire(locker.keys(names(&[sound])), &options),
    );
    match failed {
        Err(LockError::Connection { key, message }) => {
            server.check_eq(key.as_str(), broken, "key of the error");
            server.check(
                message.contains("not an integer"),
                format_args!("message {message:?} should give Redis's reason"),
            );
        }
        other => server.fail(format_args!("expected a connection error, got {other:?}")),
    }
    let taken = taken.unwrap_or_else(|error| server.fail(format_args!("{error:?}")));
    server.check_eq(
        stored_token(&server, sound),
        Some(taken.token),
        "the sound lock",
    );
    // The SET before the refused INCR is undone by token.
    let deadline = Instant::now() + SLACK;
    while exists(&server, broken) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.check(
        !exists(&server, broken),
        "the half-taken lock was left behind",
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
    while calls(&server, "del") == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.check_eq(calls(&server, "set"), 1, "SETs: the lock was taken");
    server.check_eq(calls(&server, "del"), 1, "DELs: and given back");
    server.check(
        !exists(&server, "abandoned"),
        "the abandoned lock is still held",
    );
}

/// Starts a watchdog on `lock` whose loss arrives on the returned channel.
fn watch(
    locker: &Arc<Lifecycle>,
    lock: &HeldLock,
    upkeep: Upkeep,
) -> (
    Watchdog,
    tokio::sync::oneshot::Receiver<(LockError, std::time::SystemTime)>,
) {
    let (lost_sender, lost) = tokio::sync::oneshot::channel();
    let watchdog = Watchdog::start(locker.clone(), lock.clone(), upkeep, move |error| {
        let _ = lost_sender.send((error, std::time::SystemTime::now()));
    });
    (watchdog, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_reports_the_loss_before_the_lease_ends_when_redis_stops_answering() {
    let server = RedisServer::start();
    let locker = Arc::new(locker(&server));
    let lock = acquire(&server, &locker, &["stalled"], &options(600, Some(0))).await;
    let (_watchdog, lost) = watch(&locker, &lock, Upkeep::Extend);

    // The extension at a third of the TTL hangs: no answer, no error, for a whole second.
    server.pause();
    let outcome = tokio::time::timeout(Duration::from_millis(600) + SLACK, lost).await;
    server.resume();
    let (error, at) = outcome
        .unwrap_or_else(|_| server.fail("no loss reported"))
        .expect("on_lost sends");
    server.check_eq(
        error,
        LockError::Lost {
            key: "stalled".into(),
        },
        "reported loss",
    );
    server.check(
        at <= lock.expires_at,
        format_args!(
            "loss reported {:?} after the lease ended",
            at.duration_since(lock.expires_at).unwrap_or_default()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_without_upkeep_reports_the_end_of_the_lease_and_follows_extensions() {
    let server = RedisServer::start();
    let locker = Arc::new(locker(&server));
    let lock = acquire(&server, &locker, &["watched"], &options(300, Some(0))).await;
    let (watchdog, mut lost) = watch(&locker, &lock, Upkeep::WatchOnly);

    // The holder extends it once itself; the watch moves its deadline along.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let extended = locker
        .extend(&lock, Duration::from_millis(600))
        .await
        .unwrap_or_else(|error| server.fail(format_args!("extend: {error:?}")));
    watchdog.extended(extended.expires_at);
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.check(
        lost.try_recv().is_err(),
        "loss reported before the extended lease ended",
    );

    let (error, at) = tokio::time::timeout(SLACK, lost)
        .await
        .unwrap_or_else(|_| server.fail("no loss reported"))
        .expect("on_lost sends");
    server.check(
        matches!(error, LockError::Lost { .. }),
        format_args!("{error:?}"),
    );
    server.check(
        at <= extended.expires_at,
        "loss reported after the extended lease ended",
    );
    server.check(
        exists(&server, "watched"),
        "the watch must not extend the lock, and nothing released it",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_keep_rising_after_redis_restarts_empty() {
    let mut server = RedisServer::start();
    let before = {
        let locker = locker(&server);
        let mut last = 0;
        for _ in 0..5 {
            let lock = acquire(&server, &locker, &["order"], &options(10_000, Some(0))).await;
            last = lock.fence;
            let _ = locker.release(&lock).await;
        }
        last
    };

    server.restart_empty();
    let locker = locker(&server);
    let lock = acquire(&server, &locker, &["order"], &options(10_000, Some(0))).await;
    server.check(
        lock.fence > before,
        format_args!("fence {} after a restart, {before} before", lock.fence),
    );
    let _ = locker.release(&lock).await;
    let many = acquire(
        &server,
        &locker,
        &["order", "other"],
        &options(1_000, Some(0)),
    )
    .await;
    server.check(many.fence > lock.fence, "a multi-key fence after it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_keep_rising_after_failover_to_a_replica_that_lagged() {
    let primary = RedisServer::start();
    let replica = RedisServer::start();
    let port = primary.port().to_string();
    // Redis 7 delays a diskless full sync by 5 s by default, as long as the WAIT below.
    primary.query::<()>(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    replica.query::<()>(&["REPLICAOF", "127.0.0.1", &port]);
    // Locks taken while the full sync runs may reach the replica in its snapshot and their
    // release only later: start once the replica follows the stream.
    let synced = Instant::now();
    while !replica
        .query::<String>(&["INFO", "replication"])
        .contains("master_link_status:up")
    {
        replica.check(
            synced.elapsed() < Duration::from_secs(15),
            "the replica did not sync within 15 s",
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let on_primary = locker(&primary);
    let first = acquire(&primary, &on_primary, &["seat"], &options(1_000, Some(0))).await;
    let _ = on_primary.release(&first).await;
    // The replica has the counter as it was after the first lock…
    let replicated: i64 = primary.query(&["WAIT", "1", "15000"]);
    primary.check_eq(replicated, 1, "replicas that acknowledged");
    replica.query::<()>(&["REPLICAOF", "NO", "ONE"]);
    // …and misses what the primary handed out after it.
    let mut last = 0;
    for _ in 0..5 {
        let lock = acquire(&primary, &on_primary, &["seat"], &options(1_000, Some(0))).await;
        last = lock.fence;
        let _ = on_primary.release(&lock).await;
    }

    let on_replica = locker(&replica);
    let promoted = acquire(&replica, &on_replica, &["seat"], &options(1_000, Some(0))).await;
    replica.check(
        promoted.fence > last,
        format_args!(
            "fence {} on the promoted replica, {last} before",
            promoted.fence
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_and_extend_go_once_more_when_the_connection_was_killed() {
    let server = RedisServer::start();
    let locker = locker(&server);
    for key in ["extended", "released"] {
        // Connected: the kill below finds the connection open.
        acquire(
            &server,
            &locker,
            &[&format!("{key}:warm-up")],
            &options(1_000, Some(0)),
        )
        .await;
        let lock = acquire(&server, &locker, &[key], &options(10_000, Some(0))).await;
        let killed: i64 = server.query(&["CLIENT", "KILL", "TYPE", "normal"]);
        server.check(killed >= 1, "the locker's connection was killed");
        if key == "extended" {
            let extended = locker.extend(&lock, Duration::from_millis(20_000)).await;
            server.check(extended.is_ok(), format_args!("extend: {extended:?}"));
            server.check(pttl(&server, key) > 10_000, "the TTL was extended");
        } else {
            let released = locker.release(&lock).await;
            server.check_eq(released, Ok(true), "release");
            server.check(
                !exists(&server, key),
                "the lock is gone, not left to expire",
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_fails_at_once_naming_the_key_and_the_type() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let _: i64 = server.query(&["HSET", "cart", "item", "1"]);
    let _: i64 = server.query(&["RPUSH", "queue", "job"]);
    let other_type = |key: &str, found: &str| LockError::KeyType {
        key: key.to_owned(),
        found: found.to_owned(),
    };

    let started = Instant::now();
    let one = refused(&server, &locker, &["cart"], &options(10_000, Some(10_000))).await;
    server.check_eq(one, other_type("cart", "hash"), "one key, with a wait");
    let both = refused(&server, &locker, &["free", "queue"], &options(10_000, None)).await;
    server.check_eq(
        both,
        other_type("queue", "list"),
        "the key of a multi-key lock",
    );
    server.check(started.elapsed() < SLACK, "a wait was waited out");
    server.check(!exists(&server, "free"), "a multi-key lock set a key");

    let held = acquire(&server, &locker, &["order", "job"], &options(10_000, None)).await;
    let _: i64 = server.query(&["DEL", "job"]);
    let _: i64 = server.query(&["SADD", "job", "member"]);
    let extended = locker.extend(&held, Duration::from_millis(10_000)).await;
    server.check_eq(
        extended.map(|_| ()),
        Err(other_type("job", "set")),
        "extend",
    );
    server.check_eq(
        locker.release(&held).await,
        Err(other_type("job", "set")),
        "release",
    );
}
