//! Redlock hand-over against three real `redis-server`s: a contended one-key lock goes from its
//! holder straight to the next waiter of the same process, node by node, with a fence above the
//! last one on every node that grants it.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ironlock_core::protocol::scripts;
use ironlock_core::session::handover::MAX_LINKS;
use ironlock_core::{AcquireOptions, HeldLock, Lifecycle, LockerConfig, Replicas, Target};
use support::RedisServer;
use support::ShowsLogs;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_millis(1_000);
const KEY: &str = "hot";
/// Long enough that no waiter in these tests wakes because the holder's TTL ran out.
const TTL_MS: u64 = 10_000;

struct Nodes {
    servers: Vec<RedisServer>,
}

impl Nodes {
    fn start() -> Arc<Self> {
        Arc::new(Self {
            servers: (0..3).map(|_| RedisServer::start()).collect(),
        })
    }

    fn locker(&self) -> Arc<Lifecycle> {
        let config = LockerConfig {
            connect_timeout: TIMEOUT,
            command_timeout: TIMEOUT,
            ..LockerConfig::new(Target::Redlock(
                self.servers.iter().map(RedisServer::node).collect(),
            ))
        };
        Arc::new(Lifecycle::new(&config).expect("valid config"))
    }

    fn first(&self) -> &RedisServer {
        &self.servers[0]
    }

    fn tokens(&self) -> Vec<Option<String>> {
        self.servers
            .iter()
            .map(|server| server.query(&["GET", KEY]))
            .collect()
    }

    fn counters(&self, counter: &str) -> Vec<u64> {
        self.servers
            .iter()
            .map(|server| {
                server
                    .query::<Option<u64>>(&["GET", counter])
                    .unwrap_or_default()
            })
            .collect()
    }

    fn reset_stats(&self) {
        self.servers.iter().for_each(RedisServer::reset_stats);
    }

    /// Per node: every command run since the last reset (those inside scripts included), and the
    /// `PUBLISH`es among them.
    fn calls(&self) -> Vec<(u64, u64)> {
        self.servers
            .iter()
            .map(|server| (server.calls(), server.calls_of("publish")))
            .collect()
    }

    /// Waits until `lock`'s token holds `KEY` on every node, or fails: a node may grant after
    /// the majority decided.
    async fn until_held_everywhere(&self, lock: &HeldLock, what: &str) {
        let expected = vec![Some(lock.token.clone()); self.servers.len()];
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.tokens() != expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.first().check_eq(self.tokens(), expected, what);
    }

    /// Waits until a waiter that started after the last reset sleeps for the lock, or fails.
    ///
    /// A head attempts when it asks, and again once subscribed to releases, before it sleeps:
    /// two `SET`s on every node (attempts may travel in one script call, so those are not
    /// counted). Its offer to take a release over follows the second round at once.
    async fn until_asleep(&self) {
        let sets = || -> Vec<u64> {
            self.servers
                .iter()
                .map(|server| server.calls_of("set"))
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while sets().iter().any(|calls| *calls < 2) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let calls = sets();
        self.first().check(
            calls.iter().all(|calls| *calls >= 2),
            format_args!("the waiter never slept: SETs per node {calls:?}"),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Waits until no node holds `KEY` for a while, or fails: a slow node's grant can land after
    /// the release and is undone only once that node has answered.
    async fn until_free(&self, what: &str) {
        const SETTLED: Duration = Duration::from_millis(100);
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut free_since: Option<Instant> = None;
        loop {
            let tokens = self.tokens();
            let now = Instant::now();
            if tokens.iter().any(Option::is_some) {
                free_since = None;
            } else if now - *free_since.get_or_insert(now) >= SETTLED {
                return;
            }
            if now >= deadline {
                self.first()
                    .fail(format_args!("{what}: the key is left locked: {tokens:?}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn options(wait_ms: Option<u64>) -> AcquireOptions {
    AcquireOptions {
        ttl: Duration::from_millis(TTL_MS),
        wait: wait_ms.map(Duration::from_millis),
        cancel: None,
        replicas: Replicas::NONE,
    }
}

async fn acquire(nodes: &Nodes, locker: &Lifecycle, options: &AcquireOptions) -> HeldLock {
    match locker.acquire(locker.keys(vec![KEY.into()]), options).await {
        Ok(lock) => lock,
        Err(error) => nodes.first().fail(format_args!("acquire {KEY}: {error:?}")),
    }
}

/// Who held the lock, in the order they held it.
#[derive(Default)]
struct Record {
    inside: AtomicUsize,
    fences: Mutex<Vec<u64>>,
}

impl Record {
    /// Holds `lock` for `hold`, checking nobody else holds it meanwhile, then releases it.
    async fn hold(&self, nodes: &Nodes, locker: &Lifecycle, lock: HeldLock, hold: Duration) {
        let server = nodes.first();
        server.check_eq(
            self.inside.fetch_add(1, Ordering::SeqCst),
            0,
            "others holding the lock at the same time",
        );
        self.fences.lock().unwrap().push(lock.fence);
        tokio::time::sleep(hold).await;
        self.inside.fetch_sub(1, Ordering::SeqCst);
        server.check_eq(
            locker.release(&lock).await,
            Ok(true),
            "release of a held lock",
        );
    }

    #[track_caller]
    fn check_fences_increase(&self, nodes: &Nodes, expected: usize) -> Vec<u64> {
        let fences = self.fences.lock().unwrap().clone();
        let server = nodes.first();
        server.check_eq(fences.len(), expected, "acquisitions");
        for pair in fences.windows(2) {
            server.check(
                pair[0] < pair[1],
                format_args!("fences must grow in acquisition order: {pair:?}"),
            );
        }
        fences
    }
}

/// `n` local waiters queue for the key while `first` holds it, then each holds it for `hold`.
async fn contend(
    nodes: &Arc<Nodes>,
    locker: &Arc<Lifecycle>,
    first: HeldLock,
    n: usize,
    hold: Duration,
) -> Arc<Record> {
    let record = Arc::new(Record::default());
    let waiters: Vec<_> = (0..n)
        .map(|_| {
            let (nodes, locker, record) = (nodes.clone(), locker.clone(), record.clone());
            tokio::spawn(async move {
                let lock = acquire(&nodes, &locker, &options(Some(60_000))).await;
                record.hold(&nodes, &locker, lock, hold).await;
            })
        })
        .collect();
    // Every waiter queues behind the held lock before it is released.
    tokio::time::sleep(Duration::from_millis(200)).await;
    record.hold(nodes, locker, first, Duration::ZERO).await;
    for waiter in waiters {
        waiter.await.expect("a waiter panicked");
    }
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_waiters_get_the_lock_handed_over_in_about_four_commands_per_node() {
    let nodes = Nodes::start();
    let locker = nodes.locker();
    // Loads the scripts and subscribes once, as a long-running process would have.
    let first = acquire(&nodes, &locker, &options(Some(0))).await;
    contend(&nodes, &locker, first, 3, Duration::from_millis(1)).await;
    nodes.until_free("after the warm-up").await;

    nodes.reset_stats();
    let n = 100;
    let first = acquire(&nodes, &locker, &options(Some(0))).await;
    let record = contend(&nodes, &locker, first, n, Duration::from_millis(2)).await;
    record.check_fences_increase(&nodes, n + 1);
    nodes.until_free("after the run").await;
    let calls = nodes.calls();
    eprintln!("{n} waiters: per node (commands, publishes) {calls:?}");
    // A hand-over costs each node its script call, GET, SET and INCR; each chain ends with a
    // normal release (and the next head's attempt), announced for other processes.
    let chains = n as u64 / (u64::from(MAX_LINKS) + 1) + 1;
    for (commands, publishes) in calls {
        let per_acquisition = commands as f64 / (n + 1) as f64;
        nodes.first().check(
            per_acquisition <= 5.0,
            format_args!("{per_acquisition:.2} commands per acquisition on a node"),
        );
        nodes.first().check(
            publishes <= chains + 1,
            format_args!("{publishes} releases published for {n} waiters: chains should end every {MAX_LINKS} hand-overs"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_fences_above_the_old_fence_where_the_counters_disagree() {
    let nodes = Nodes::start();
    let locker = nodes.locker();
    let counter = locker.keys(vec![KEY.into()]).fence_keys[0].clone();
    let first = acquire(&nodes, &locker, &options(Some(0))).await;
    // One node's counter far ahead of the others', as after many locks it alone granted.
    let _: u64 = nodes.servers[1].query(&["INCRBY", &counter, "1000000000000"]);
    let record = contend(&nodes, &locker, first, 10, Duration::from_millis(1)).await;
    let fences = record.check_fences_increase(&nodes, 11);
    nodes.until_free("after the run").await;
    // Whichever majority grants next, its fence is above every fence handed out: every
    // majority has a node that counts at least the last one.
    let last = *fences.last().unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    while !counting_in_every_majority(&nodes.counters(&counter), last) && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let counters = nodes.counters(&counter);
    nodes.first().check(
        counting_in_every_majority(&counters, last),
        format_args!("counters {counters:?}: a majority below the last fence {last}"),
    );
    let other = nodes.locker();
    let next = acquire(&nodes, &other, &options(Some(0))).await;
    nodes.first().check(
        next.fence > last,
        format_args!("next fence {} not above {last}", next.fence),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_cycle_lifts_one_counter_of_three_so_that_every_majority_counts_the_fence() {
    let nodes = Nodes::start();
    let locker = nodes.locker();
    let counter = locker.keys(vec![KEY.into()]).fence_keys[0].clone();
    // Known to every node, so each script call is one EVALSHA.
    for server in &nodes.servers {
        for script in [
            &scripts::ACQUIRE_EACH,
            &scripts::RELEASE_EACH,
            &scripts::LIFT_FENCES,
        ] {
            let _: String = server.query(&["SCRIPT", "LOAD", script.source()]);
        }
    }
    for cycle in 0..20 {
        nodes.reset_stats();
        let lock = acquire(&nodes, &locker, &options(Some(0))).await;
        // Every node's answer in before the release, so no late grant is undone by a second one.
        nodes
            .until_held_everywhere(&lock, "every node granted")
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = locker.release(&lock).await;
        // A node's lift leaves before the release: once every node has run the release, it has
        // run the lift, if it got one.
        nodes.until_free("after the release").await;

        let counters = nodes.counters(&counter);
        let calls: Vec<u64> = nodes
            .servers
            .iter()
            .map(|server| server.calls_of("evalsha"))
            .collect();
        let server = nodes.first();
        // Each node its attempt and its release; at most one node a lift (none when two nodes
        // gave the same fence).
        let lifts = calls.iter().sum::<u64>() as i64 - 6;
        server.check(
            (0..=1).contains(&lifts) && calls.iter().all(|calls| (2..=3).contains(calls)),
            format_args!("cycle {cycle}: script calls per node {calls:?}, {lifts} lifts"),
        );
        server.check(
            counting_in_every_majority(&counters, lock.fence),
            format_args!(
                "cycle {cycle}: counters {counters:?}: a majority without the fence {}",
                lock.fence
            ),
        );
    }
}

/// Whether every majority of nodes with these counters has one at `fence` or above, so that the
/// next fence is above it whichever majority grants it.
fn counting_in_every_majority(counters: &[u64], fence: u64) -> bool {
    let quorum = counters.len() / 2 + 1;
    let below = counters.iter().filter(|count| **count < fence).count();
    below < quorum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_lift_every_majority_fences_above_the_last_fence() {
    let nodes = Nodes::start();
    let locker = nodes.locker();
    let counter = locker.keys(vec![KEY.into()]).fence_keys[0].clone();
    let first = acquire(&nodes, &locker, &options(Some(0))).await;
    let _ = locker.release(&first).await;
    nodes.until_free("after the first lock").await;
    // One node's counter far ahead of the others' clocks, as after many locks it alone granted:
    // only a lift keeps the fence of a majority without it above the fence it gave.
    let _: u64 = nodes.servers[1].query(&["INCRBY", &counter, "1000000000000"]);
    let lock = acquire(&nodes, &locker, &options(Some(0))).await;
    nodes
        .until_held_everywhere(&lock, "every node granted")
        .await;
    let _ = locker.release(&lock).await;
    nodes.until_free("after the lifted lock").await;
    let mut last = lock.fence;
    for paused in 0..nodes.servers.len() {
        nodes.servers[paused].pause();
        let next = acquire(&nodes, &locker, &options(Some(0))).await;
        let _ = locker.release(&next).await;
        nodes.servers[paused].resume();
        nodes.first().check(
            next.fence > last,
            format_args!(
                "node {paused} paused: fence {} not above {last}",
                next.fence
            ),
        );
        last = next.fence;
        nodes.until_free("after the paused node's release").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_lost_on_a_majority_is_not_handed_over_and_the_waiter_attempts() {
    let nodes = Nodes::start();
    let locker = nodes.locker();
    // Several times over: the waiter's attempt once raced the give-back of the failed hand-over
    // on the node that still held the old token, about one run in twenty.
    for round in 0..8 {
        let first = acquire(&nodes, &locker, &options(Some(0))).await;
        // A node may grant after the majority did: its SET must not count as the waiter's.
        nodes
            .until_held_everywhere(&first, &format!("round {round}: the first lock"))
            .await;
        nodes.reset_stats();
        let waiter = {
            let (nodes, locker) = (nodes.clone(), locker.clone());
            tokio::spawn(async move { acquire(&nodes, &locker, &options(Some(5_000))).await })
        };
        // Only a sleeping waiter is offered the lock: otherwise the release is a plain one.
        nodes.until_asleep().await;
        // The holder's lock is gone from two nodes (expired there, say).
        for server in &nodes.servers[..2] {
            let _: u64 = server.query(&["DEL", KEY]);
        }
        let started = Instant::now();
        nodes.first().check_eq(
            locker.release(&first).await,
            Ok(false),
            &format!("round {round}: release of a lock lost on a majority"),
        );
        let lock = waiter.await.expect("the waiter panicked");
        nodes.first().check(
            started.elapsed() < Duration::from_secs(1),
            format_args!("round {round}: the waiter took {:?}", started.elapsed()),
        );
        nodes.first().check(
            lock.fence > first.fence,
            format_args!(
                "round {round}: fence {} not above {}",
                lock.fence, first.fence
            ),
        );
        // The lock is the waiter's own attempt, made once the failed hand-over was given back:
        // its token on every node, nothing of the others.
        nodes
            .until_held_everywhere(&lock, &format!("round {round}: tokens on the nodes"))
            .await;
        nodes.first().check_eq(
            locker.release(&lock).await,
            Ok(true),
            &format!("round {round}: release of the waiter's lock"),
        );
        // The release returns once a majority answered: the next round starts from free nodes.
        nodes.until_free(&format!("round {round}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_that_lands_after_the_release_is_undone() {
    let nodes = Nodes::start();
    let locker = nodes.locker();
    // Several times over: the late grant overtook the release about one time in two.
    for round in 0..6 {
        // The third node stalls, and will need the scripts' source again (as after a restart):
        // the attempt there goes twice, and the release can reach it in between.
        for server in &nodes.servers {
            let _: String = server.query(&["SCRIPT", "FLUSH"]);
        }
        nodes.reset_stats();
        nodes.servers[2].pause();
        let lock = acquire(&nodes, &locker, &options(Some(0))).await;
        nodes.first().check_eq(
            locker.release(&lock).await,
            Ok(true),
            &format!("round {round}: release"),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        nodes.servers[2].resume();
        // Free is final only once the grant ran there, before the release or after it.
        let deadline = Instant::now() + Duration::from_secs(2);
        while nodes.servers[2].calls_of("set") == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        nodes
            .until_free(&format!("round {round}: after the release"))
            .await;
    }
}
