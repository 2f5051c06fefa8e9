//! `replicas: n` on a Redis Cluster of three masters with a replica each: a lock is granted only
//! once `n` replicas of each master it was written to acknowledged it and its fence (`WAIT` on
//! that master's connection of its own), else given back and refused with
//! `LockError::Replication`; slots that moved followed. One cluster for the whole file, its steps in order, the master
//! killed last: a cluster takes seconds to start.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ironlock_core::protocol::keys::{fence_key, hash_slot};
use ironlock_core::{
    AcquireOptions, HeldLock, Lifecycle, LockError, LockerConfig, Replicas, Target,
};
use support::cluster::RedisCluster;
use support::ShowsLogs;
use tokio::time::Instant;

/// Covers a failover (about two seconds with the harness's node timeout) within one call.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long `WAIT` may wait: short, so that shortfalls fail fast.
const REPLICAS_TIMEOUT: Duration = Duration::from_millis(300);
/// Added to every upper time bound: the tests check behaviour, not the scheduler's latency.
const SLACK: Duration = Duration::from_millis(1_000);

fn locker(cluster: &RedisCluster) -> Arc<Lifecycle> {
    let config = LockerConfig {
        connect_timeout: TIMEOUT,
        command_timeout: TIMEOUT,
        ..LockerConfig::new(Target::Cluster(cluster.seeds()))
    };
    Arc::new(Lifecycle::new(&config).expect("valid config"))
}

fn options(wanted: u32, wait: Duration) -> AcquireOptions {
    AcquireOptions {
        ttl: Duration::from_secs(30),
        wait: Some(wait),
        cancel: None,
        replicas: Replicas {
            wanted,
            timeout: REPLICAS_TIMEOUT,
        },
    }
}

fn names(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|&key| key.to_owned()).collect()
}

async fn acquire(
    cluster: &RedisCluster,
    locker: &Lifecycle,
    keys: &[&str],
    wanted: u32,
) -> HeldLock {
    let asked = options(wanted, Duration::ZERO);
    match locker.acquire(locker.keys(names(keys)), &asked).await {
        Ok(lock) => lock,
        Err(error) => cluster.fail(format_args!("acquire {keys:?}: {error:?}")),
    }
}

async fn refused(
    cluster: &RedisCluster,
    locker: &Lifecycle,
    keys: &[&str],
    wanted: u32,
) -> LockError {
    let asked = options(wanted, Duration::ZERO);
    match locker.acquire(locker.keys(names(keys)), &asked).await {
        Ok(lock) => cluster.fail(format_args!("acquire {keys:?} should fail, got {lock:?}")),
        Err(error) => error,
    }
}

/// What the master of `key` and its replica hold under `key` and its fencing counter.
fn on_master_and_replica(cluster: &RedisCluster, key: &str) -> [(Option<String>, u64); 2] {
    let master = cluster.master_of(key);
    let counter = fence_key("", key);
    let read = |value: Option<String>| value.map_or(0, |value| value.parse().expect("a counter"));
    let replica = cluster.replica_of(master);
    [
        (
            master.query(&["GET", key]),
            read(master.query(&["GET", &counter])),
        ),
        (
            replica.query_replica(&["GET", key]),
            read(replica.query_replica(&["GET", &counter])),
        ),
    ]
}

/// Each master's `WAIT`s and script calls since its stats were reset.
fn calls_per_master(cluster: &RedisCluster, command: &str) -> Vec<u64> {
    cluster
        .masters()
        .into_iter()
        .map(|master| master.calls_of(command))
        .collect()
}

// One thread: every acquire of a burst is queued before the flush task gets to run.
#[tokio::test]
async fn replicas_on_a_cluster_wait_on_each_master_the_lock_was_written_to() {
    let mut cluster = RedisCluster::start(3, 1);
    let locker = locker(&cluster);
    a_lock_on_every_master_is_granted_once_its_replica_has_it(&cluster, &locker).await;
    too_few_replicas_refuse_the_lock_and_leave_it_free(&cluster, &locker).await;
    a_lock_across_slots_waits_on_every_master(&cluster, &locker).await;
    attempts_asked_together_share_one_wait_per_master(&cluster, &locker).await;
    a_lock_handed_to_a_waiter_that_asked_for_replicas_is_on_the_replica(&cluster, &locker).await;
    a_slot_moved_since_the_map_was_read_is_followed(&cluster, &locker).await;
    a_replicated_lock_survives_the_death_of_its_master(&mut cluster, &locker).await;
}

async fn a_lock_on_every_master_is_granted_once_its_replica_has_it(
    cluster: &RedisCluster,
    locker: &Lifecycle,
) {
    for key in cluster.key_on_each_master("replicated") {
        let lock = acquire(cluster, locker, &[&key], 1).await;
        // Read at once from the replica: WAIT answered only once it had both writes.
        let [on_master, on_replica] = on_master_and_replica(cluster, &key);
        cluster.check_eq(&on_replica, &on_master, "the replica as the master");
        cluster.check_eq(
            on_replica.0,
            Some(lock.token.clone()),
            "the lock on the replica",
        );
        cluster.check(
            on_replica.1 >= lock.fence,
            format_args!("the replica's counter of {key} covers fence {}", lock.fence),
        );
        cluster.check_eq(locker.release(&lock).await, Ok(true), "release");
    }
}

async fn too_few_replicas_refuse_the_lock_and_leave_it_free(
    cluster: &RedisCluster,
    locker: &Lifecycle,
) {
    let spread = cluster.key_on_each_master("short");
    let across: Vec<&str> = spread.iter().map(String::as_str).collect();
    for keys in [&across[..1], &["{short}:a", "{short}:b"][..], &across[..]] {
        let started = Instant::now();
        let error = refused(cluster, locker, keys, 2).await;
        let took = started.elapsed();
        cluster.check_eq(
            error,
            LockError::Replication {
                key: keys[0].to_owned(),
                acknowledged: 1,
                wanted: 2,
            },
            "the refusal",
        );
        cluster.check(
            took >= REPLICAS_TIMEOUT && took < REPLICAS_TIMEOUT + SLACK,
            format_args!("refused after {took:?}, WAIT's timeout being {REPLICAS_TIMEOUT:?}"),
        );
        // Given back before the refusal: free at once, to anyone.
        for key in keys {
            let master = cluster.master_of(key);
            master.check_eq(
                master.query::<Option<String>>(&["GET", key]),
                None,
                "the key after the refusal",
            );
        }
        let next = acquire(cluster, locker, keys, 0).await;
        cluster.check_eq(locker.release(&next).await, Ok(true), "release");
    }
}

async fn a_lock_across_slots_waits_on_every_master(cluster: &RedisCluster, locker: &Lifecycle) {
    let keys = cluster.key_on_each_master("across");
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    for master in cluster.masters() {
        master.reset_stats();
    }
    let lock = acquire(cluster, locker, &keys, 1).await;
    cluster.check_eq(
        calls_per_master(cluster, "wait"),
        vec![1, 1, 1],
        "WAITs per master",
    );
    for key in &keys {
        let [_, on_replica] = on_master_and_replica(cluster, key);
        cluster.check_eq(
            on_replica.0,
            Some(lock.token.clone()),
            "every key on its replica",
        );
    }
    cluster.check_eq(locker.release(&lock).await, Ok(true), "release");
}

async fn attempts_asked_together_share_one_wait_per_master(
    cluster: &RedisCluster,
    locker: &Lifecycle,
) {
    let keys: Vec<String> = (0..30).map(|i| format!("burst:{i}")).collect();
    let mut slots: Vec<u16> = keys.iter().map(|key| hash_slot(key)).collect();
    slots.sort_unstable();
    slots.dedup();
    for master in cluster.masters() {
        master.reset_stats();
    }
    let asked = options(1, Duration::ZERO);
    let burst = keys
        .iter()
        .map(|key| locker.acquire(locker.keys(vec![key.clone()]), &asked));
    let locks = futures_util::future::join_all(burst).await;
    cluster.check(
        locks.iter().all(Result::is_ok),
        format_args!("every lock granted: {locks:?}"),
    );
    cluster.check_eq(
        calls_per_master(cluster, "wait"),
        vec![1, 1, 1],
        "WAITs per master",
    );
    let scripts: u64 = calls_per_master(cluster, "evalsha").iter().sum();
    cluster.check_eq(scripts, slots.len() as u64, "one script call per slot");
    for lock in locks.into_iter().flatten() {
        cluster.check_eq(locker.release(&lock).await, Ok(true), "release");
    }
}

async fn a_lock_handed_to_a_waiter_that_asked_for_replicas_is_on_the_replica(
    cluster: &RedisCluster,
    locker: &Arc<Lifecycle>,
) {
    let key = "handed";
    let held = acquire(cluster, locker, &[key], 0).await;
    let waiter = {
        let locker = locker.clone();
        tokio::spawn(async move {
            let keys = locker.keys(names(&[key]));
            locker.acquire(keys, &options(1, TIMEOUT)).await
        })
    };
    // Asleep behind the holder, offering to take the lock over.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let master = cluster.master_of(key);
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
    // Twice when the master did not know the script yet: WAIT goes again behind its source.
    master.check(
        master.calls_of("wait") >= 1,
        "the hand-over waited for the replica",
    );
    let [_, on_replica] = on_master_and_replica(cluster, key);
    master.check_eq(
        on_replica.0,
        Some(handed.token.clone()),
        "the handed lock on the replica",
    );
    master.check(
        handed.fence > held.fence,
        "the handed lock's fence is above",
    );
    master.check_eq(locker.release(&handed).await, Ok(true), "release");
}

async fn a_slot_moved_since_the_map_was_read_is_followed(
    cluster: &RedisCluster,
    locker: &Lifecycle,
) {
    let key = "{moved}:k";
    let before = acquire(cluster, locker, &[key], 1).await;
    cluster.check_eq(locker.release(&before).await, Ok(true), "release");
    let migration = cluster.begin_migration(key);
    cluster.move_keys(&migration);
    cluster.finish_migration(&migration);
    // The map read before says the old master: it answers MOVED, and the call goes again.
    let lock = acquire(cluster, locker, &[key], 1).await;
    let target = cluster.target_of(&migration);
    target.check_eq(
        target.query::<Option<String>>(&["GET", key]),
        Some(lock.token.clone()),
        "the lock on the slot's new master",
    );
    let [_, on_replica] = on_master_and_replica(cluster, key);
    target.check_eq(on_replica.0, Some(lock.token.clone()), "and on its replica");
    cluster.check_eq(locker.release(&lock).await, Ok(true), "release");
}

async fn a_replicated_lock_survives_the_death_of_its_master(
    cluster: &mut RedisCluster,
    locker: &Lifecycle,
) {
    let key = "seat";
    let lock = acquire(cluster, locker, &[key], 1).await;
    // SIGKILL: nothing more leaves the master, whatever was still in its buffers.
    cluster.fail_over(key);
    let promoted = cluster.master_of(key);
    promoted.check_eq(
        promoted.query::<Option<String>>(&["GET", key]),
        Some(lock.token.clone()),
        "the lock on the promoted replica",
    );
    let other = self::locker(cluster);
    let busy = refused(cluster, &other, &[key], 0).await;
    cluster.check(
        matches!(busy, LockError::Busy { .. }),
        format_args!("the lock is still held after the promotion: {busy:?}"),
    );
    let extended = locker.extend(&lock, Duration::from_secs(30)).await;
    cluster.check(
        extended.is_ok(),
        format_args!("its holder extends it: {extended:?}"),
    );
    cluster.check_eq(
        locker.release(&lock).await,
        Ok(true),
        "its holder releases it",
    );
    let next = acquire(cluster, &other, &[key], 0).await;
    cluster.check(
        next.fence > lock.fence,
        format_args!(
            "fence {} after the promotion, {} before",
            next.fence, lock.fence
        ),
    );
}
