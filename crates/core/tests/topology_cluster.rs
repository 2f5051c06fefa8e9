//! Redis Cluster against real clusters of three masters with a replica each: every key's lock on
//! the master of its slot, keys across slots all or nothing, releases announced on the key's
//! shard, calls resent by redis-rs, scripts loaded again where a master lost them, contention
//! between lockers, a master killed under held and waited locks, and a slot migrated under them.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ironlock_core::protocol::keys::{hash_slot, release_channel, LockKeys};
use ironlock_core::topology::{Attempt, Cluster, HandOver, ReleaseListener, Topology};
use ironlock_core::{
    AcquireOptions, HeldLock, Lifecycle, LockError, LockerConfig, Replicas, Target,
};
use support::cluster::RedisCluster;
use support::ShowsLogs;
use tokio::time::Instant;

/// Long enough that no waiter in these tests wakes because a holder's TTL ran out.
const TTL: Duration = Duration::from_secs(20);
/// Covers a failover (about two seconds with the harness's node timeout) within one call.
const TIMEOUT: Duration = Duration::from_secs(5);

fn start() -> RedisCluster {
    RedisCluster::start(3, 1)
}

fn locker(cluster: &RedisCluster) -> Arc<Lifecycle> {
    let config = LockerConfig {
        connect_timeout: TIMEOUT,
        command_timeout: TIMEOUT,
        ..LockerConfig::new(Target::Cluster(cluster.seeds()))
    };
    Arc::new(Lifecycle::new(&config).expect("valid config"))
}

fn options(wait: Option<Duration>) -> AcquireOptions {
    AcquireOptions {
        ttl: TTL,
        wait,
        cancel: None,
        replicas: Replicas::NONE,
    }
}

async fn acquire(cluster: &RedisCluster, locker: &Lifecycle, keys: &[&str]) -> HeldLock {
    let names = keys.iter().map(|key| (*key).to_owned()).collect();
    match locker
        .acquire(locker.keys(names), &options(Some(TIMEOUT)))
        .await
    {
        Ok(lock) => lock,
        Err(error) => cluster.fail(format_args!("acquire {keys:?}: {error:?}")),
    }
}

async fn try_acquire(locker: &Lifecycle, keys: &[&str]) -> Result<HeldLock, LockError> {
    let names = keys.iter().map(|key| (*key).to_owned()).collect();
    locker
        .acquire(locker.keys(names), &options(Some(Duration::ZERO)))
        .await
}

/// Waits until a waiter on `key` has subscribed to its release channel on the key's master.
async fn until_subscribed(cluster: &RedisCluster, key: &str) {
    let channel = release_channel(key);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counts: Vec<String> =
            cluster
                .master_of(key)
                .query(&["PUBSUB", "SHARDNUMSUB", &channel]);
        if counts.get(1).is_some_and(|count| count != "0") {
            return;
        }
        if Instant::now() >= deadline {
            cluster.fail(format_args!("nobody subscribed {channel}: {counts:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lock_lives_on_the_master_of_its_slot() {
    let cluster = start();
    let locker = locker(&cluster);
    for key in cluster.key_on_each_master("order") {
        let lock = acquire(&cluster, &locker, &[&key]).await;
        let master = cluster.master_of(&key);
        master.check_eq(
            master.query::<Option<String>>(&["GET", &key]),
            Some(lock.token.clone()),
            "the token on the key's master",
        );
        master.check(lock.fence > 0, "a fence");
        let extended = locker.extend(&lock, TTL).await;
        master.check(extended.is_ok(), format_args!("extend: {extended:?}"));
        master.check_eq(locker.release(&lock).await, Ok(true), "release");
        master.check_eq(
            master.query::<Option<String>>(&["GET", &key]),
            None,
            "the key after its release",
        );
        let next = acquire(&cluster, &locker, &[&key]).await;
        master.check(next.fence > lock.fence, "the next fence is higher");
        master.check_eq(locker.release(&next).await, Ok(true), "release");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_across_slots_are_taken_all_or_nothing() {
    let cluster = start();
    let (holder, locker) = (locker(&cluster), locker(&cluster));
    let mut keys = cluster.key_on_each_master("stock");
    keys.sort_by_key(|key| hash_slot(key));
    let (low, high) = (keys[0].as_str(), keys[2].as_str());

    // The later slot is busy: the earlier one, taken first, is given back.
    let blocker = acquire(&cluster, &holder, &[high]).await;
    let busy = try_acquire(&locker, &[high, low]).await;
    cluster.check(
        matches!(busy, Err(LockError::Busy { .. })),
        format_args!("both or none: {busy:?}"),
    );
    cluster.check_eq(
        cluster
            .master_of(low)
            .query::<Option<String>>(&["GET", low]),
        None,
        "the free key after a lost attempt",
    );
    holder.release(&blocker).await.expect("release");

    let both = acquire(&cluster, &locker, &[high, low]).await;
    for key in [low, high] {
        cluster.check_eq(
            cluster
                .master_of(key)
                .query::<Option<String>>(&["GET", key]),
            Some(both.token.clone()),
            "every key of the lock",
        );
    }
    cluster.check(
        try_acquire(&holder, &[low]).await.is_err(),
        "a key of a held lock is busy",
    );
    locker.release(&both).await.expect("release");
    // Each key's next fence is above the lock's, whichever slot's counter gave it.
    for key in [low, high] {
        let next = acquire(&cluster, &holder, &[key]).await;
        cluster.check(
            next.fence > both.fence,
            format_args!("{key}: fence {} after {}", next.fence, both.fence),
        );
        holder.release(&next).await.expect("release");
    }

    // Busy on its first slot, the attempt reports the longest hold among all its keys.
    let short = AcquireOptions {
        ttl: Duration::from_secs(1),
        ..options(Some(Duration::ZERO))
    };
    let first = holder.acquire(holder.keys(vec![low.into()]), &short).await;
    let last = acquire(&cluster, &holder, &[high]).await;
    let middle = keys[1].as_str();
    match try_acquire(&locker, &[low, middle, high]).await {
        Err(LockError::Busy {
            retry_after: Some(left),
            ..
        }) => cluster.check(left > TTL / 2, format_args!("retryAfter {left:?}")),
        other => cluster.fail(format_args!("busy across slots: {other:?}")),
    }
    cluster.check_eq(
        cluster
            .master_of(middle)
            .query::<Option<String>>(&["GET", middle]),
        None,
        "a slot after the busy one is only looked at",
    );
    holder
        .release(&first.expect("acquire"))
        .await
        .expect("release");
    holder.release(&last).await.expect("release");

    let tagged = ["{cart:9}:a", "{cart:9}:b"];
    let one_slot = acquire(&cluster, &locker, &tagged).await;
    let master = cluster.master_of(tagged[0]);
    for key in tagged {
        master.check_eq(
            master.query::<Option<String>>(&["GET", key]),
            Some(one_slot.token.clone()),
            "keys sharing a hash tag, on their one master",
        );
    }
    locker.release(&one_slot).await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_a_waiter_of_another_locker_through_its_shard() {
    let cluster = start();
    let (holder, waiter) = (locker(&cluster), locker(&cluster));
    let key = "invoice:1";
    let master = cluster.master_of(key);
    let held = acquire(&cluster, &holder, &[key]).await;
    let waiting = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            let acquired = waiter
                .acquire(waiter.keys(vec![key.into()]), &options(None))
                .await;
            (acquired, Instant::now())
        })
    };
    until_subscribed(&cluster, key).await;
    master.reset_stats();
    let released_at = Instant::now();
    master.check_eq(holder.release(&held).await, Ok(true), "release");
    let (acquired, at) = waiting.await.expect("the waiter");
    let lock = acquired.unwrap_or_else(|error| master.fail(format_args!("waiter: {error:?}")));
    master.check(
        at - released_at < Duration::from_secs(1),
        format_args!("woken {:?} after the release", at - released_at),
    );
    master.check(lock.fence > held.fence, "a higher fence");
    master.check_eq(master.calls_of("spublish"), 1, "announced on the shard");
    master.check_eq(master.calls_of("publish"), 0, "never to every node");
    waiter.release(&lock).await.expect("release");
}

/// Hears nothing: the topology is driven by hand.
struct Deaf;

impl ReleaseListener for Deaf {
    fn released(&self, _channel: &str, _token: &str) {}
    fn resync(&self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_reaches_redis_twice_does_what_it_did_once() {
    // redis-rs sends a command again after a dropped connection, even one that ran.
    let cluster = start();
    let listener: Arc<dyn ReleaseListener> = Arc::new(Deaf);
    let topology = Cluster::new(
        &cluster.seeds(),
        TIMEOUT,
        TIMEOUT,
        Arc::downgrade(&listener),
    )
    .expect("valid seeds");
    let token = "10c4ed00-0000-4000-8000-000000000001";
    for names in [vec!["twice"], vec!["{both}:a", "{both}:b"]] {
        let keys = LockKeys::new("", names.iter().map(|name| (*name).to_owned()));
        let first = topology
            .try_acquire(&keys, token, TTL, Replicas::NONE)
            .await;
        let again = topology
            .try_acquire(&keys, token, TTL, Replicas::NONE)
            .await;
        match (first, again) {
            (Ok(Attempt::Acquired { fence: one }), Ok(Attempt::Acquired { fence: two })) => {
                cluster.check(one < two, format_args!("{names:?}: fences {one}, {two}"))
            }
            other => cluster.fail(format_args!("{names:?} attempted twice: {other:?}")),
        }
    }
    let keys = LockKeys::new("", ["twice".to_owned()]);
    let next = "10c4ed00-0000-4000-8000-000000000002";
    for round in ["first", "again"] {
        let handed = topology
            .hand_over(&keys, token, 1, next, TTL, 0, Replicas::NONE)
            .await;
        cluster.check_eq(handed, Ok(HandOver::Done { reserved: None }), round);
    }
    topology.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_a_master_lost_are_loaded_there_again() {
    let cluster = start();
    let locker = locker(&cluster);
    let keys = cluster.key_on_each_master("report");
    let warm_up = acquire(&cluster, &locker, &[&keys[0]]).await;
    locker.release(&warm_up).await.expect("release");
    for master in cluster.masters() {
        master.query::<()>(&["SCRIPT", "FLUSH"]);
    }
    for key in &keys {
        let lock = acquire(&cluster, &locker, &[key]).await;
        locker.release(&lock).await.expect("release");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockers_contending_for_a_key_never_overlap() {
    let cluster = Arc::new(start());
    let lockers: Vec<Arc<Lifecycle>> = (0..4).map(|_| locker(&cluster)).collect();
    let inside = Arc::new(AtomicUsize::new(0));
    let fences = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..40)
        .map(|task| {
            let locker = lockers[task % lockers.len()].clone();
            let (cluster, inside, fences) = (cluster.clone(), inside.clone(), fences.clone());
            tokio::spawn(async move {
                let lock = acquire(&cluster, &locker, &["contended"]).await;
                cluster.check_eq(inside.fetch_add(1, Ordering::SeqCst), 0, "overlap");
                fences.lock().unwrap().push(lock.fence);
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                cluster.check_eq(locker.release(&lock).await, Ok(true), "release");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a task panicked");
    }
    let fences = fences.lock().unwrap().clone();
    cluster.check_eq(fences.len(), 40, "acquisitions");
    for pair in fences.windows(2) {
        cluster.check(pair[0] < pair[1], format_args!("fences in order: {pair:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_strands_no_waiter_and_new_locks_succeed() {
    let mut cluster = start();
    let (holder, waiter) = (locker(&cluster), locker(&cluster));
    let (lost, kept) = ("{shard}:lost", "{shard}:kept");
    let lost_lock = acquire(&cluster, &holder, &[lost]).await;
    // The replica misses that write, as asynchronous replication may: it drops its copy of
    // everything (a cluster replica takes no keyed write), then replicates what comes after.
    let replica = cluster.replica_of(cluster.master_of(lost));
    replica.query::<()>(&["CONFIG", "SET", "replica-read-only", "no"]);
    replica.query::<()>(&["FLUSHALL"]);
    let kept_lock = acquire(&cluster, &holder, &[kept]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    // `kept` and its slot's fencing counter.
    while replica.query::<u64>(&["DBSIZE"]) < 2 {
        replica.check(Instant::now() < deadline, "the replica never caught up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waiting = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            waiter
                .acquire(waiter.keys(vec![lost.into()]), &options(None))
                .await
        })
    };
    until_subscribed(&cluster, lost).await;

    cluster.fail_over(lost);
    // Nobody releases `lost`: the waiter learns it is free by looking again once its
    // subscription moved to the promoted replica.
    let woke = tokio::time::timeout(Duration::from_secs(10), waiting).await;
    let lock = match woke {
        Ok(Ok(Ok(lock))) => lock,
        other => cluster.fail(format_args!("the waiter after the failover: {other:?}")),
    };
    cluster.check(
        lock.fence > lost_lock.fence,
        format_args!(
            "fence {} after {}: the new master counts on from its clock",
            lock.fence, lost_lock.fence
        ),
    );
    let extended = holder.extend(&lost_lock, TTL).await;
    cluster.check(
        matches!(extended, Err(LockError::Lost { .. })),
        format_args!("the holder of the vanished lock learns it: {extended:?}"),
    );
    let kept_extended = holder.extend(&kept_lock, TTL).await;
    cluster.check(
        kept_extended.is_ok(),
        format_args!("a replicated lock survives: {kept_extended:?}"),
    );
    let fresh = acquire(&cluster, &holder, &["{shard}:fresh"]).await;
    holder.release(&fresh).await.expect("release");
    waiter.release(&lock).await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrating_under_held_and_waited_locks_keeps_them_exclusive() {
    let cluster = Arc::new(start());
    let (holder, waiter, other) = (locker(&cluster), locker(&cluster), locker(&cluster));
    let key = "{moving}:held";
    let held = acquire(&cluster, &holder, &[key]).await;
    let waiting = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            let acquired = waiter
                .acquire(waiter.keys(vec![key.into()]), &options(None))
                .await;
            (acquired, Instant::now())
        })
    };
    until_subscribed(&cluster, key).await;

    let migration = cluster.begin_migration(key);
    cluster.check(
        try_acquire(&other, &[key]).await.is_err(),
        "busy while its slot is migrating",
    );
    // A lock of the same slot asked for mid-migration waits it out (TRYAGAIN), then lands.
    let sibling = {
        let (cluster, other) = (cluster.clone(), other.clone());
        tokio::spawn(async move { acquire(&cluster, &other, &["{moving}:sibling"]).await })
    };
    cluster.move_keys(&migration);
    cluster.check(
        try_acquire(&other, &[key]).await.is_err(),
        "busy on its new master (ASK)",
    );
    // Released through ASK: announced on the new master, which the waiter hears once the old
    // one gives up the slot and the subscription moves.
    cluster.check_eq(
        holder.release(&held).await,
        Ok(true),
        "release mid-migration",
    );
    cluster.finish_migration(&migration);
    let finished_at = Instant::now();
    let (acquired, at) = waiting.await.expect("the waiter");
    let lock = acquired.unwrap_or_else(|error| cluster.fail(format_args!("waiter: {error:?}")));
    cluster.check(
        at.saturating_duration_since(finished_at) < Duration::from_secs(3),
        format_args!("woken {:?} after the migration", at - finished_at),
    );
    cluster.check(lock.fence > held.fence, "the counter moved with the slot");
    let target = cluster.target_of(&migration);
    target.check_eq(
        target.query::<Option<String>>(&["GET", key]),
        Some(lock.token.clone()),
        "the lock on the slot's new master",
    );
    cluster.check_eq(
        cluster.source_of(&migration).query::<u64>(&[
            "CLUSTER",
            "COUNTKEYSINSLOT",
            &migration.slot.to_string(),
        ]),
        0,
        "nothing of the slot left on the old master",
    );
    let sibling = sibling.await.expect("the sibling");
    other.release(&sibling).await.expect("release");
    waiter.release(&lock).await.expect("release");
}
