//! `replicas: n` on one Redis with replicas: a lock is granted only once `n` replicas
//! acknowledged it and its fence (`WAIT` on a connection of its own), else given back and refused
//! with `LockError::Replication`. Real servers: a master and replicas started by the test.

mod support;

use std::time::Duration;

use ironlock_core::protocol::keys::fence_key;
use ironlock_core::{
    AcquireOptions, HeldLock, Lifecycle, LockError, LockerConfig, Replicas, Target,
};
use support::RedisServer;
use support::ShowsLogs;
use tokio::time::Instant;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How long the tests let `WAIT` wait: short, so that shortfalls fail fast.
const REPLICAS_TIMEOUT: Duration = Duration::from_millis(300);
/// Added to every upper time bound: the tests check behaviour, not the scheduler's latency.
const SLACK: Duration = Duration::from_millis(1_000);

fn locker(server: &RedisServer) -> Lifecycle {
    Lifecycle::new(&LockerConfig {
        connect_timeout: CONNECT_TIMEOUT,
        command_timeout: COMMAND_TIMEOUT,
        ..LockerConfig::new(Target::Single(server.node()))
    })
    .expect("valid config")
}

fn replicas(wanted: u32) -> Replicas {
    Replicas {
        wanted,
        timeout: REPLICAS_TIMEOUT,
    }
}

fn options(wanted: u32, wait: Option<Duration>) -> AcquireOptions {
    AcquireOptions {
        ttl: Duration::from_secs(30),
        wait,
        cancel: None,
        replicas: replicas(wanted),
    }
}

fn names(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|&key| key.to_owned()).collect()
}

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

fn counter(server: &RedisServer, key: &str) -> u64 {
    let value: Option<String> = server.query(&["GET", &fence_key("", key)]);
    value.map_or(0, |value| value.parse().expect("a counter"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_is_granted_once_a_replica_has_it_and_its_fence() {
    let master = RedisServer::start();
    let replica = RedisServer::start_replica_of(&master);
    let locker = locker(&master);
    for keys in [&["one"][..], &["first", "second"][..]] {
        let lock = acquire(&master, &locker, keys, &options(1, Some(Duration::ZERO))).await;
        // Read at once from the replica: WAIT answered only once it had both writes.
        for key in keys {
            replica.check_eq(
                stored_token(&replica, key),
                Some(lock.token.clone()),
                "the lock on the replica",
            );
            replica.check(
                counter(&replica, key) >= lock.fence,
                format_args!("the replica's counter of {key} covers fence {}", lock.fence),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_replicas_refuse_the_lock_after_the_timeout_and_leave_it_free() {
    let master = RedisServer::start();
    let _replica = RedisServer::start_replica_of(&master);
    let locker = locker(&master);
    for keys in [&["one"][..], &["first", "second"][..]] {
        let started = Instant::now();
        let error = refused(&master, &locker, keys, &options(2, Some(Duration::ZERO))).await;
        let took = started.elapsed();
        master.check_eq(
            error,
            LockError::Replication {
                key: keys[0].to_owned(),
                acknowledged: 1,
                wanted: 2,
            },
            "the refusal",
        );
        master.check(
            took >= REPLICAS_TIMEOUT && took < REPLICAS_TIMEOUT + SLACK,
            format_args!("refused after {took:?}, WAIT's timeout being {REPLICAS_TIMEOUT:?}"),
        );
        // Given back before the refusal: free at once, to anyone.
        for key in keys {
            master.check_eq(
                stored_token(&master, key),
                None,
                "the key after the refusal",
            );
        }
        acquire(&master, &locker, keys, &options(0, Some(Duration::ZERO))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_replica_refuses_the_lock() {
    let master = RedisServer::start();
    let replica = RedisServer::start_replica_of(&master);
    let locker = locker(&master);
    acquire(
        &master,
        &locker,
        &["warm"],
        &options(1, Some(Duration::ZERO)),
    )
    .await;
    replica.pause();
    let error = refused(&master, &locker, &["k"], &options(1, Some(Duration::ZERO))).await;
    replica.resume();
    master.check_eq(
        error,
        LockError::Replication {
            key: "k".into(),
            acknowledged: 0,
            wanted: 1,
        },
        "the refusal",
    );
    master.check_eq(
        stored_token(&master, "k"),
        None,
        "the key after the refusal",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_granted_with_a_replica_survives_the_masters_death_and_the_promotion() {
    let mut master = RedisServer::start();
    let replica = RedisServer::start_replica_of(&master);
    let on_master = locker(&master);
    let lock = acquire(
        &master,
        &on_master,
        &["seat"],
        &options(1, Some(Duration::ZERO)),
    )
    .await;
    // SIGKILL: nothing more leaves the master, whatever was still in its buffers.
    master.stop();
    replica.promote();
    replica.check_eq(
        stored_token(&replica, "seat"),
        Some(lock.token.clone()),
        "the lock on the promoted replica",
    );
    let on_replica = locker(&replica);
    let busy = refused(
        &replica,
        &on_replica,
        &["seat"],
        &options(0, Some(Duration::ZERO)),
    )
    .await;
    replica.check(
        matches!(busy, LockError::Busy { .. }),
        format_args!("the lock is still held after the promotion: {busy:?}"),
    );
    replica.check(
        on_replica.release(&lock).await == Ok(true),
        "its holder releases it on the promoted replica",
    );
    let next = acquire(
        &replica,
        &on_replica,
        &["seat"],
        &options(0, Some(Duration::ZERO)),
    )
    .await;
    replica.check(
        next.fence > lock.fence,
        format_args!(
            "fence {} after the promotion, {} before",
            next.fence, lock.fence
        ),
    );
}

// One thread: every acquire of the burst is queued before the flush task gets to run.
#[tokio::test]
async fn attempts_asked_together_share_one_script_call_and_one_wait() {
    let master = RedisServer::start();
    let _replica = RedisServer::start_replica_of(&master);
    let locker = locker(&master);
    acquire(
        &master,
        &locker,
        &["warm"],
        &options(1, Some(Duration::ZERO)),
    )
    .await;
    master.reset_stats();
    let keys: Vec<String> = (0..20).map(|i| format!("burst:{i}")).collect();
    let options = options(1, Some(Duration::ZERO));
    let burst = keys
        .iter()
        .map(|key| locker.acquire(locker.keys(vec![key.clone()]), &options));
    let locks = futures_util::future::join_all(burst).await;
    master.check(
        locks.iter().all(Result::is_ok),
        format_args!("every lock granted: {locks:?}"),
    );
    master.check_eq(master.calls_of("evalsha"), 1, "script calls for the burst");
    master.check_eq(master.calls_of("wait"), 1, "WAITs for the burst");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replicas_asked_no_wait_is_sent() {
    let master = RedisServer::start();
    let _replica = RedisServer::start_replica_of(&master);
    let locker = locker(&master);
    master.reset_stats();
    let lock = acquire(&master, &locker, &["k"], &options(0, Some(Duration::ZERO))).await;
    let _ = locker.release(&lock).await;
    master.check_eq(master.calls_of("wait"), 0, "WAITs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_handed_to_a_waiter_that_asked_for_replicas_is_on_the_replica() {
    let master = RedisServer::start();
    let replica = RedisServer::start_replica_of(&master);
    let locker = std::sync::Arc::new(locker(&master));
    let held = acquire(&master, &locker, &["k"], &options(0, Some(Duration::ZERO))).await;
    let waiter = {
        let locker = locker.clone();
        tokio::spawn(async move {
            let keys = locker.keys(names(&["k"]));
            locker
                .acquire(keys, &options(1, Some(Duration::from_secs(5))))
                .await
        })
    };
    // Asleep behind the holder, offering to take the lock over.
    tokio::time::sleep(Duration::from_millis(200)).await;
    master.reset_stats();
    master.check_eq(
        locker.release(&held).await,
        Ok(true),
        "the holder's release",
    );
    let handed = match waiter.await.expect("the waiter's task") {
        Ok(lock) => lock,
        Err(error) => master.fail(format_args!("the waiter: {error:?}")),
    };
    master.check(
        master.calls_of("wait") >= 1,
        "the hand-over waited for the replica",
    );
    replica.check_eq(
        stored_token(&replica, "k"),
        Some(handed.token.clone()),
        "the handed lock on the replica",
    );
    replica.check(
        handed.fence > held.fence,
        "the handed lock's fence is above",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_replicas_fall_short_is_refused_and_the_lock_left_free() {
    let master = RedisServer::start();
    let _replica = RedisServer::start_replica_of(&master);
    let locker = std::sync::Arc::new(locker(&master));
    let held = acquire(&master, &locker, &["k"], &options(0, Some(Duration::ZERO))).await;
    let waiter = {
        let locker = locker.clone();
        tokio::spawn(async move {
            let keys = locker.keys(names(&["k"]));
            locker
                .acquire(keys, &options(2, Some(Duration::from_secs(5))))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    master.check_eq(
        locker.release(&held).await,
        Ok(true),
        "the holder's release",
    );
    let outcome = waiter.await.expect("the waiter's task");
    master.check_eq(
        outcome.map(|lock| lock.token),
        Err(LockError::Replication {
            key: "k".into(),
            acknowledged: 1,
            wanted: 2,
        }),
        "the waiter's outcome",
    );
    master.check_eq(
        stored_token(&master, "k"),
        None,
        "the key after the refusal",
    );
}
