//! Fencing tokens against real `redis-server`s: strictly increasing per key, one counter per hash
//! slot, and still rising after Redis restarts empty or fails over to a replica that lagged.

mod support;

use std::collections::HashSet;

use ironlock_core::protocol::keys::hash_slot;
use support::locker::{acquire, locker, options};
use support::RedisServer;
use support::ShowsLogs;

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
    // Locks taken while the full sync runs may reach the replica in its snapshot and their
    // release only later: start once the replica follows the stream.
    let replica = RedisServer::start_replica_of(&primary);
    let on_primary = locker(&primary);
    let first = acquire(&primary, &on_primary, &["seat"], &options(1_000, Some(0))).await;
    let _ = on_primary.release(&first).await;
    // The replica has the counter as it was after the first lock…
    let replicated: i64 = primary.query(&["WAIT", "1", "15000"]);
    primary.check_eq(replicated, 1, "replicas that acknowledged");
    replica.promote();
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
