//! Local hand-over against a real `redis-server`: a contended one-key lock goes from its holder
//! straight to the next waiter of the same process, in 3 Redis commands instead of 7. And what a
//! waiter that goes away leaves behind: nothing locked, nothing subscribed, whatever thread drops it.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ironlock_core::session::handover::MAX_LINKS;
use ironlock_core::{
    AcquireOptions, CancelToken, HeldLock, Lifecycle, LockError, LockerConfig, Replicas, Target,
};
use support::RedisServer;
use support::ShowsLogs;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_millis(1_000);
/// Added to every upper time bound: the tests check behaviour, not the scheduler's latency.
const SLACK: Duration = Duration::from_millis(1_000);
const KEY: &str = "hot";
/// Long enough that no waiter in these tests wakes because the holder's TTL ran out.
const TTL_MS: u64 = 10_000;

fn locker(server: &RedisServer) -> Arc<Lifecycle> {
    let config = LockerConfig {
        connect_timeout: TIMEOUT,
        command_timeout: TIMEOUT,
        ..LockerConfig::new(Target::Single(server.node()))
    };
    Arc::new(Lifecycle::new(&config).expect("valid config"))
}

fn options(wait_ms: Option<u64>) -> AcquireOptions {
    AcquireOptions {
        ttl: Duration::from_millis(TTL_MS),
        wait: wait_ms.map(Duration::from_millis),
        cancel: None,
        replicas: Replicas::NONE,
    }
}

async fn acquire(server: &RedisServer, locker: &Lifecycle, options: &AcquireOptions) -> HeldLock {
    match locker.acquire(locker.keys(vec![KEY.into()]), options).await {
        Ok(lock) => lock,
        Err(error) => server.fail(format_args!("acquire {KEY}: {error:?}")),
    }
}

fn stored_token(server: &RedisServer) -> Option<String> {
    server.query(&["GET", KEY])
}

/// Waits until `KEY` is free, or fails.
async fn until_free(server: &RedisServer, what: &str) {
    let deadline = Instant::now() + SLACK;
    while stored_token(server).is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.check(
        stored_token(server).is_none(),
        format_args!("{what}: the key is left locked"),
    );
}

/// Who held the lock, in the order they held it.
#[derive(Default)]
struct Record {
    inside: AtomicUsize,
    taken: Mutex<Vec<(&'static str, u64)>>,
}

impl Record {
    /// Holds `lock` for `hold`, checking nobody else holds it meanwhile, then releases it. Sends
    /// Redis nothing of its own: the command counts are the locker's alone.
    async fn hold(
        &self,
        server: &RedisServer,
        locker: &Lifecycle,
        lock: HeldLock,
        who: &'static str,
        hold: Duration,
    ) {
        server.check_eq(
            self.inside.fetch_add(1, Ordering::SeqCst),
            0,
            "others holding the lock at the same time",
        );
        self.taken.lock().unwrap().push((who, lock.fence));
        tokio::time::sleep(hold).await;
        self.inside.fetch_sub(1, Ordering::SeqCst);
        server.check_eq(
            locker.release(&lock).await,
            Ok(true),
            "release of a held lock",
        );
    }

    fn taken(&self) -> Vec<(&'static str, u64)> {
        self.taken.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.taken.lock().unwrap().len()
    }
}

#[track_caller]
fn check_fences_increase(server: &RedisServer, taken: &[(&str, u64)]) {
    for pair in taken.windows(2) {
        server.check(
            pair[0].1 < pair[1].1,
            format_args!("fences must grow in acquisition order: {pair:?}"),
        );
    }
}

/// Starts `n` tasks that each acquire the key, hold it for `hold` and release it.
fn spawn_waiters(
    server: &Arc<RedisServer>,
    locker: &Arc<Lifecycle>,
    record: &Arc<Record>,
    who: &'static str,
    n: usize,
    hold: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let (server, locker, record) = (server.clone(), locker.clone(), record.clone());
            tokio::spawn(async move {
                let lock = acquire(&server, &locker, &options(Some(60_000))).await;
                record.hold(&server, &locker, lock, who, hold).await;
            })
        })
        .collect()
}

/// `n` local waiters queue for one key while it is held, then each holds it for `hold`.
/// Returns the Redis commands (those inside scripts included) per acquisition, from the first
/// holder's acquire to the last waiter's release.
async fn contend(
    server: &Arc<RedisServer>,
    locker: &Arc<Lifecycle>,
    n: usize,
    hold: Duration,
) -> f64 {
    until_free(server, "before a run").await;
    server.reset_stats();
    let record = Arc::new(Record::default());
    let first = acquire(server, locker, &options(Some(0))).await;
    let waiters = spawn_waiters(server, locker, &record, "local", n, hold);
    // Every waiter queues behind the held lock before it is released.
    tokio::time::sleep(Duration::from_millis(200)).await;
    record
        .hold(server, locker, first, "first", Duration::ZERO)
        .await;
    for waiter in waiters {
        waiter.await.expect("a waiter panicked");
    }
    let commands = server.calls();
    let taken = record.taken();
    server.check_eq(taken.len(), n + 1, "acquisitions");
    check_fences_increase(server, &taken);
    let publishes = server.calls_of("publish");
    // Each chain of hand-overs ends with a normal release, announced for other processes.
    let chains = n as u64 / (u64::from(MAX_LINKS) + 1);
    server.check(
        (chains..=chains + 3).contains(&publishes),
        format_args!("{publishes} releases published for {n} waiters: chains should end every {MAX_LINKS} hand-overs"),
    );
    let per_acquisition = commands as f64 / (n + 1) as f64;
    eprintln!(
        "{n} waiters: {commands} commands, {per_acquisition:.2} per acquisition; {:?}",
        server.command_calls()
    );
    per_acquisition
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_acquisitions_cost_at_most_four_commands_whatever_the_waiters() {
    let server = Arc::new(RedisServer::start());
    let locker = locker(&server);
    // Loads the scripts and subscribes once, as a long-running process would have.
    contend(&server, &locker, 3, Duration::from_millis(1)).await;

    let hundred = contend(&server, &locker, 100, Duration::from_millis(5)).await;
    server.check(
        hundred <= 4.0,
        format_args!("100 waiters: {hundred:.2} commands per acquisition"),
    );
    let three_hundred = contend(&server, &locker, 300, Duration::from_millis(5)).await;
    server.check(
        three_hundred <= 4.0 && three_hundred <= hundred + 0.1,
        format_args!("300 waiters: {three_hundred:.2} commands per acquisition, 100: {hundred:.2}"),
    );
}

/// Waits up to 30 s for [`KEY`] in a task of its own, until `cancel` is cancelled.
fn spawn_cancellable_acquire(
    locker: &Arc<Lifecycle>,
    cancel: &CancelToken,
) -> tokio::task::JoinHandle<Result<HeldLock, LockError>> {
    let locker = locker.clone();
    let options = AcquireOptions {
        cancel: Some(cancel.clone()),
        replicas: Replicas::NONE,
        ..options(Some(30_000))
    };
    tokio::spawn(async move {
        locker
            .acquire(locker.keys(vec![KEY.into()]), &options)
            .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_head_neither_gets_the_lock_nor_leaves_it_locked() {
    let server = Arc::new(RedisServer::start());
    let locker = locker(&server);

    // Cancelled while it sleeps: the lock goes to the waiter behind it.
    let holder = acquire(&server, &locker, &options(Some(0))).await;
    let cancel = CancelToken::default();
    let cancelled = spawn_cancellable_acquire(&locker, &cancel);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let behind = {
        let (server, locker) = (server.clone(), locker.clone());
        tokio::spawn(async move { acquire(&server, &locker, &options(Some(30_000))).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.cancel();
    server.check_eq(
        cancelled.await.unwrap().map(|lock| lock.token),
        Err(LockError::Aborted { key: KEY.into() }),
        "the cancelled head",
    );
    server.check_eq(locker.release(&holder).await, Ok(true), "holder's release");
    let lock = behind.await.unwrap();
    server.check_eq(
        stored_token(&server),
        Some(lock.token.clone()),
        "the waiter behind holds it",
    );
    server.check_eq(locker.release(&lock).await, Ok(true), "its release");
    until_free(&server, "after the waiter behind").await;

    // Cancelled just as the lock is handed to it, in every interleaving we can provoke.
    for round in 0..30u64 {
        let holder = acquire(&server, &locker, &options(Some(0))).await;
        let cancel = CancelToken::default();
        let waiter = spawn_cancellable_acquire(&locker, &cancel);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (_, released) = tokio::join!(
            async {
                tokio::time::sleep(Duration::from_micros(round * 20)).await;
                cancel.cancel();
            },
            locker.release(&holder),
        );
        server.check_eq(released, Ok(true), "holder's release");
        match waiter.await.unwrap() {
            // It got the lock before it saw the cancel: it is a holder like any other.
            Ok(lock) => {
                server.check_eq(locker.release(&lock).await, Ok(true), "release");
            }
            Err(error) => server.check_eq(error, LockError::Aborted { key: KEY.into() }, "error"),
        }
        until_free(&server, &format!("round {round}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_lost_before_its_release_is_not_handed_over() {
    let server = Arc::new(RedisServer::start());
    let locker = locker(&server);
    for lose in [&["DEL", KEY][..], &["PEXPIRE", KEY, "1"][..]] {
        let holder = acquire(&server, &locker, &options(Some(0))).await;
        let waiter = {
            let (server, locker) = (server.clone(), locker.clone());
            tokio::spawn(async move { acquire(&server, &locker, &options(Some(30_000))).await })
        };
        // The waiter sleeps, bounded by the holder's TTL of 10 s; its offer is on the table.
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.query::<i64>(lose);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let started = Instant::now();
        server.check_eq(
            locker.release(&holder).await,
            Ok(false),
            &format!("release after {lose:?}"),
        );
        // Told by the failed hand-over, the waiter attempts at once instead of sleeping 10 s.
        let lock = tokio::time::timeout(SLACK, waiter)
            .await
            .unwrap_or_else(|_| server.fail(format_args!("after {lose:?} the waiter still waits")))
            .unwrap();
        server.check(started.elapsed() < SLACK, "the waiter took long");
        server.check(lock.fence > holder.fence, "a new fence");
        server.check_eq(
            stored_token(&server),
            Some(lock.token.clone()),
            "the waiter holds it",
        );
        server.check_eq(locker.release(&lock).await, Ok(true), "its release");
        until_free(&server, "after the waiter").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_gets_its_turn_while_a_chain_runs() {
    let server = Arc::new(RedisServer::start());
    let (local, remote) = (locker(&server), locker(&server));
    let record = Arc::new(Record::default());
    const LOCAL: usize = 400;
    let first = acquire(&server, &local, &options(Some(0))).await;
    let waiters = spawn_waiters(
        &server,
        &local,
        &record,
        "local",
        LOCAL,
        Duration::from_millis(2),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    record
        .hold(&server, &local, first, "first", Duration::ZERO)
        .await;
    // The chain is under way when the other process starts waiting.
    let deadline = Instant::now() + SLACK;
    while record.count() < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let before = record.count();
    let lock = acquire(&server, &remote, &options(Some(30_000))).await;
    let after = record.count();
    record
        .hold(&server, &remote, lock, "remote", Duration::from_millis(2))
        .await;
    for waiter in waiters {
        waiter.await.expect("a waiter panicked");
    }
    eprintln!(
        "{} local acquisitions while the other process waited",
        after - before
    );
    // A chain ends after MAX_LINKS hand-overs and the local head then lets others try first.
    server.check(
        after - before <= 2 * MAX_LINKS as usize + 2,
        format_args!(
            "{} local acquisitions while the other process waited",
            after - before
        ),
    );
    let taken = record.taken();
    server.check_eq(taken.len(), LOCAL + 2, "acquisitions");
    check_fences_increase(&server, &taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_stay_increasing_across_processes_after_a_chain() {
    let server = Arc::new(RedisServer::start());
    let (local, remote) = (locker(&server), locker(&server));
    let record = Arc::new(Record::default());
    let first = acquire(&server, &local, &options(Some(0))).await;
    let waiters = spawn_waiters(
        &server,
        &local,
        &record,
        "local",
        100,
        Duration::from_millis(1),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    record
        .hold(&server, &local, first, "first", Duration::ZERO)
        .await;
    for waiter in waiters {
        waiter.await.expect("a waiter panicked");
    }
    let handed_out = record
        .taken()
        .iter()
        .map(|&(_, fence)| fence)
        .max()
        .unwrap();
    // The other process's INCR lands above every block the chains reserved.
    let lock = acquire(&server, &remote, &options(Some(0))).await;
    server.check(
        lock.fence > handed_out,
        format_args!(
            "fence {} after the chain handed out up to {handed_out}",
            lock.fence
        ),
    );
    server.check_eq(remote.release(&lock).await, Ok(true), "remote release");
    // And a chain started afterwards continues above it.
    let record = Arc::new(Record::default());
    let first = acquire(&server, &local, &options(Some(0))).await;
    let waiters = spawn_waiters(
        &server,
        &local,
        &record,
        "local",
        5,
        Duration::from_millis(1),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    record
        .hold(&server, &local, first, "first", Duration::ZERO)
        .await;
    for waiter in waiters {
        waiter.await.expect("a waiter panicked");
    }
    server.check(
        record.taken().iter().all(|&(_, fence)| fence > lock.fence),
        "fences of the next chain",
    );
}

/// Waits until no key of `keys` is held, or fails.
async fn until_all_free(server: &RedisServer, keys: &[&str], what: &str) {
    let held = || {
        keys.iter()
            .filter(|key| server.query::<Option<String>>(&["GET", key]).is_some())
            .count()
    };
    let deadline = Instant::now() + SLACK;
    while held() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.check_eq(held(), 0, &format!("{what}: keys left locked"));
}

/// Drops `future` on a thread of its own, which has no tokio runtime at hand: whatever clean-up
/// the drop owes must not need one.
fn drop_without_runtime<F: Send + 'static>(server: &RedisServer, future: F) {
    let dropped = std::thread::spawn(move || drop(future)).join();
    server.check(dropped.is_ok(), "dropping the future panicked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_dropped_mid_attempt_without_a_runtime_leaves_nothing_locked() {
    let server = Arc::new(RedisServer::start());
    let locker = locker(&server);
    let names = ["left", "right"];
    let keys = || locker.keys(names.iter().map(|&name| name.to_owned()).collect());
    // Connected, with its scripts loaded, before Redis freezes.
    let warm = locker.acquire(keys(), &options(Some(0))).await.unwrap();
    server.check_eq(locker.release(&warm).await, Ok(true), "warm-up release");

    server.pause();
    let mut waiter = Box::pin({
        let (locker, keys) = (locker.clone(), keys());
        async move { locker.acquire(keys, &options(Some(30_000))).await }
    });
    // Its attempt is on its way when the waiter goes: Redis runs it once it thaws.
    let pending = tokio::time::timeout(Duration::from_millis(200), &mut waiter).await;
    server.check(
        pending.is_err(),
        "the attempt was answered by a frozen Redis",
    );
    drop_without_runtime(&server, waiter);
    server.resume();
    until_all_free(&server, &names, "after the waiter went").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_handed_to_a_waiter_dropped_without_a_runtime_goes_to_the_next() {
    let server = Arc::new(RedisServer::start());
    let locker = locker(&server);
    let holder = acquire(&server, &locker, &options(Some(0))).await;
    let mut head = Box::pin({
        let locker = locker.clone();
        async move {
            let keys = locker.keys(vec![KEY.into()]);
            locker.acquire(keys, &options(Some(30_000))).await
        }
    });
    // Polled until it sleeps, offering to take the lock over; then left unpolled.
    let pending = tokio::time::timeout(Duration::from_millis(300), &mut head).await;
    server.check(pending.is_err(), "the head got a held lock");
    let next = {
        let (server, locker) = (server.clone(), locker.clone());
        tokio::spawn(async move { acquire(&server, &locker, &options(Some(30_000))).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.check_eq(locker.release(&holder).await, Ok(true), "holder's release");
    let handed = stored_token(&server);
    server.check(
        handed.is_some() && handed != Some(holder.token.clone()),
        "the release handed the lock to the head",
    );

    // The head goes before it took the lock handed to it: the lock must not wait out its TTL.
    drop_without_runtime(&server, head);
    let lock = tokio::time::timeout(SLACK, next)
        .await
        .unwrap_or_else(|_| server.fail("the next waiter still waits: the handed lock was kept"))
        .unwrap();
    server.check_eq(locker.release(&lock).await, Ok(true), "its release");
    until_free(&server, "after the next waiter").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_waiter_dropped_without_a_runtime_gives_its_release_channel_back() {
    let server = Arc::new(RedisServer::start());
    let locker = locker(&server);
    let holder = acquire(&server, &locker, &options(Some(0))).await;
    let channels = || server.query::<Vec<String>>(&["PUBSUB", "CHANNELS"]);
    let mut waiter = Box::pin({
        let locker = locker.clone();
        async move {
            let keys = locker.keys(vec![KEY.into()]);
            locker.acquire(keys, &options(Some(30_000))).await
        }
    });
    let deadline = Instant::now() + SLACK;
    while channels().is_empty() && Instant::now() < deadline {
        let pending = tokio::time::timeout(Duration::from_millis(5), &mut waiter).await;
        server.check(pending.is_err(), "the waiter got a held lock");
    }
    server.check(
        !channels().is_empty(),
        "the waiter subscribed its release channel",
    );

    drop_without_runtime(&server, waiter);
    let deadline = Instant::now() + SLACK;
    while !channels().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.check_eq(
        channels(),
        Vec::<String>::new(),
        "channels still subscribed",
    );
    server.check_eq(locker.release(&holder).await, Ok(true), "holder's release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_use_never_meets_an_internal_error() {
    let server = Arc::new(RedisServer::start());
    let locker = locker(&server);
    // One-key and multi-key locks on the same keys, so one-key heads offer to take over locks
    // that multi-key holders release; some waits are cancelled.
    const SETS: [&[&str]; 3] = [&["a"], &["a", "b"], &["b"]];
    let tasks: Vec<_> = (0..12)
        .map(|task| {
            let locker = locker.clone();
            tokio::spawn(async move {
                let mut errors = Vec::new();
                for round in 0..20 {
                    let names = SETS[(task + round) % SETS.len()];
                    let keys = locker.keys(names.iter().map(|&name| name.to_owned()).collect());
                    let cancel = CancelToken::default();
                    if round % 5 == 4 {
                        let cancel = cancel.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            cancel.cancel();
                        });
                    }
                    let options = AcquireOptions {
                        cancel: Some(cancel),
                        replicas: Replicas::NONE,
                        ..options(Some(30_000))
                    };
                    match locker.acquire(keys, &options).await {
                        Ok(lock) => {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            match locker.extend(&lock, lock.ttl).await {
                                Ok(extended) => {
                                    errors.extend(locker.release(&extended).await.err())
                                }
                                Err(error) => errors.push(error),
                            }
                        }
                        Err(error) => errors.push(error),
                    }
                }
                errors
            })
        })
        .collect();
    for task in tasks {
        for error in task.await.expect("a task panicked") {
            server.check(
                matches!(error, LockError::Aborted { .. }),
                format_args!("{} error in normal use: {error}", error.code()),
            );
        }
    }
}
