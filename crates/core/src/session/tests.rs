//! The session without sockets: a [`Locker`] over a memory topology, with a wire whose replies
//! the tests write by hand. The memory store plays the Redis the wire talks to, so what the wire
//! takes, the runtime's attempts see.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{Notify, Semaphore};

use super::*;
use crate::config::NodeConfig;
use crate::error::LockError;
use crate::protocol::keys::LockKeys;
use crate::protocol::token::TOKEN_MARK;
use crate::session::watchdog::Upkeep;
use crate::topology::{Attempt, BoxFuture, HandOver, Memory, ReleaseListener, Replicas, Topology};

/// Completions that finished on the runtime, in order.
#[derive(Default)]
struct Collected {
    completions: Mutex<VecDeque<Completion>>,
    arrived: Notify,
}

impl CompletionSink for Collected {
    fn push(&self, completion: Completion) {
        self.completions.lock().unwrap().push_back(completion);
        self.arrived.notify_one();
    }

    fn close(&self) {}
}

impl Collected {
    async fn next(&self) -> Completion {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(completion) = self.completions.lock().unwrap().pop_front() {
                    return completion;
                }
                self.arrived.notified().await;
            }
        })
        .await
        .expect("a completion within 5 s")
    }

    fn is_empty(&self) -> bool {
        self.completions.lock().unwrap().is_empty()
    }
}

struct NoListener;

impl ReleaseListener for NoListener {
    fn released(&self, _channel: &str, _token: &str) {}
    fn resync(&self) {}
}

/// Another process's hold on the memory store called `store`.
fn stranger(store: &str) -> Memory {
    Memory::new(Some(store), Weak::<NoListener>::new())
}

/// `keys` held for 30 s on the memory store `store` by a stranger, with the holder and its token.
async fn held_by_a_stranger(store: &str, keys: &LockKeys) -> (Memory, String) {
    let holder = stranger(store);
    let token = crate::protocol::token::new_token();
    holder
        .try_acquire(keys, &token, Duration::from_secs(30), Replicas::NONE)
        .await
        .unwrap();
    (holder, token)
}

/// A locker on the memory store `store`, its wire connected and ready.
fn locker(store: &str) -> (Locker, Arc<Collected>) {
    let sink = Arc::new(Collected::default());
    let store = store.to_owned();
    let locker = Locker::with_topology(
        move |listener| Ok(Arc::new(Memory::new(Some(&store), listener)) as Arc<dyn Topology>),
        Some(LockWire::new(&NodeConfig::default())),
        sink.clone(),
        Handle::current(),
    )
    .unwrap();
    assert!(
        !locker
            .wire_connected(0, ("127.0.0.1".into(), 6379))
            .is_empty(),
        "CLIENT SETNAME"
    );
    assert!(locker.wire_read(0, b"+OK\r\n").ready);
    (locker, sink)
}

/// Submits `requests`, returning the bytes for the one socket.
fn submit(locker: &Locker, requests: impl IntoIterator<Item = Request>) -> Vec<u8> {
    match locker.submit(requests) {
        ToWire::One(out) => out,
        other => panic!("one Redis has one socket, got {other:?}"),
    }
}

fn acquire(op: u32, name: &str, wait: Option<Duration>) -> Request {
    Request::Acquire {
        op,
        names: vec![name.to_owned()],
        ttl: Duration::from_secs(10),
        wait,
        cancellable: false,
        upkeep: None,
        replicas: Replicas::NONE,
    }
}

/// The tokens of the attempts in `out`, in order.
fn tokens(out: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(out);
    text.match_indices(TOKEN_MARK)
        .map(|(at, _)| text[at..at + 36].to_owned())
        .collect()
}

fn keys(name: &str) -> LockKeys {
    LockKeys::new("", [name.to_owned()])
}

/// What Redis does with an attempt the wire sent: the store takes `token`'s lock.
async fn redis_grants(store: &str, name: &str, token: &str) {
    let attempt = stranger(store)
        .try_acquire(&keys(name), token, Duration::from_secs(10), Replicas::NONE)
        .await
        .unwrap();
    assert!(matches!(attempt, Attempt::Acquired { .. }), "{attempt:?}");
}

/// Whether `token` holds `name` in the memory store called `store` (only its holder can extend it).
async fn store_holds(store: &str, name: &str, token: &str) -> bool {
    stranger(store)
        .extend(&keys(name), token, Duration::from_secs(10))
        .await
        .unwrap()
}

fn acquired_id(completion: &Completion, op: u32) -> u32 {
    match completion {
        Completion {
            op: got,
            outcome: Outcome::Acquired { id, .. },
        } if *got == op => *id,
        other => panic!("expected op {op} acquired, got {other:?}"),
    }
}

#[tokio::test]
async fn a_free_one_key_lock_is_taken_and_released_on_the_wire() {
    let (locker, sink) = locker("session-wire-cycle");
    let out = submit(&locker, [acquire(1, "a", Some(Duration::from_secs(1)))]);
    assert_eq!(tokens(&out).len(), 1, "the attempt went on the wire");
    let output = locker.wire_read(0, b"*2\r\n:1\r\n:7\r\n");
    let [acquired] = &output.completions[..] else {
        panic!("{:?}", output.completions);
    };
    let id = acquired_id(acquired, 1);
    assert!(matches!(
        acquired.outcome,
        Outcome::Acquired { fence: 7, .. }
    ));

    let out = submit(&locker, [Request::Release { op: 2, id }]);
    assert!(
        !out.is_empty(),
        "nobody waits: the release goes on the wire"
    );
    let output = locker.wire_read(0, b"*1\r\n:1\r\n");
    assert!(matches!(
        output.completions[..],
        [Completion {
            op: 2,
            outcome: Outcome::Released { released: true }
        }]
    ));
    assert!(sink.is_empty(), "nothing ran on the runtime");
}

#[tokio::test]
async fn an_acquire_that_waits_for_replicas_never_goes_on_the_wire() {
    let (locker, sink) = locker("session-replicated-off-the-wire");
    let mut replicated = acquire(1, "a", Some(Duration::from_secs(1)));
    if let Request::Acquire { replicas, .. } = &mut replicated {
        // memory:// grants it as is: it has no replicas to wait for.
        *replicas = Replicas {
            wanted: 1,
            timeout: Duration::from_millis(100),
        };
    }
    let out = submit(&locker, [replicated]);
    assert!(
        out.is_empty(),
        "WAIT would block the wire's socket: {}",
        String::from_utf8_lossy(&out)
    );
    acquired_id(&sink.next().await, 1);
    let out = submit(&locker, [acquire(2, "b", Some(Duration::from_secs(1)))]);
    assert_eq!(
        tokens(&out).len(),
        1,
        "without replicas, on the wire as before"
    );
}

#[tokio::test]
async fn a_request_behind_a_wire_attempt_queues_and_the_release_hands_it_the_lock_off_the_wire() {
    let store = "session-queue-behind-wire";
    let (locker, sink) = locker(store);
    let wait = Some(Duration::from_secs(5));
    let out = submit(&locker, [acquire(1, "a", wait), acquire(2, "a", wait)]);
    let sent = tokens(&out);
    assert_eq!(
        sent.len(),
        1,
        "the second request queues instead of attempting"
    );
    redis_grants(store, "a", &sent[0]).await;
    let output = locker.wire_read(0, b"*2\r\n:1\r\n:1\r\n");
    let id = acquired_id(&output.completions[0], 1);
    // The runtime starts the second request: it joins the local queue and, as its head, offers
    // to take the lock over.
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Someone waits here now: the release goes through the runtime, which hands the lock over.
    let out = submit(&locker, [Request::Release { op: 3, id }]);
    assert!(
        out.is_empty(),
        "not on the wire: {}",
        String::from_utf8_lossy(&out)
    );
    let mut seen = [sink.next().await, sink.next().await];
    seen.sort_by_key(|completion| completion.op);
    assert!(matches!(
        seen[1],
        Completion {
            op: 3,
            outcome: Outcome::Released { released: true }
        }
    ));
    acquired_id(&seen[0], 2);
    let Outcome::Acquired { token, fence, .. } = &seen[0].outcome else {
        unreachable!("acquired, as checked above");
    };
    // The store counted 1 for the holder; the hand-over reserved a block above it.
    assert_eq!(*fence, 2);
    assert!(store_holds(store, "a", token).await, "the waiter holds it");
    assert!(!store_holds(store, "a", &sent[0]).await);
}

#[tokio::test]
async fn a_busy_wire_attempt_queues_until_the_holder_releases() {
    let store = "session-busy-on-wire";
    let (locker, sink) = locker(store);
    let (holder, token) = held_by_a_stranger(store, &keys("a")).await;

    submit(&locker, [acquire(1, "a", Some(Duration::from_secs(5)))]);
    let output = locker.wire_read(0, b"*2\r\n:0\r\n:30000\r\n");
    assert!(
        output.completions.is_empty(),
        "busy: it waits on the runtime"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(sink.is_empty(), "still held");

    assert!(holder.release(&keys("a"), &token).await.unwrap());
    acquired_id(&sink.next().await, 1);
}

#[tokio::test]
async fn an_attempt_that_may_not_wait_completes_busy_from_the_wire() {
    let (locker, sink) = locker("session-try-busy");
    submit(&locker, [acquire(1, "a", Some(Duration::ZERO))]);
    let output = locker.wire_read(0, b"*2\r\n:2\r\n:1500\r\n");
    assert!(matches!(
        output.completions[..],
        [Completion {
            op: 1,
            outcome: Outcome::Busy {
                retry_after: Some(after)
            }
        }] if after == Duration::from_millis(1500)
    ));
    assert!(sink.is_empty());
}

#[tokio::test]
async fn what_a_closed_socket_carried_runs_again_on_the_runtime_after_a_give_back() {
    let store = "session-socket-closed";
    let (locker, sink) = locker(store);
    let out = submit(&locker, [acquire(1, "a", Some(Duration::from_secs(5)))]);
    // The attempt reached Redis and took the lock before the socket closed.
    redis_grants(store, "a", &tokens(&out)[0]).await;
    let output = locker.wire_failed(0, "connection reset", true);
    assert!(output.completions.is_empty() && !output.ready);
    // Given back, then attempted again on the runtime: the lock is taken, by a new token.
    acquired_id(&sink.next().await, 1);
}

#[tokio::test]
async fn a_timed_out_wire_fails_what_it_carried_and_closing_fails_it_as_closed() {
    let (locker, _sink) = locker("session-wire-fails");
    submit(&locker, [acquire(1, "a", Some(Duration::from_secs(5)))]);
    let output = locker.wire_failed(0, "no answer within 5000 ms", false);
    assert!(matches!(
        &output.completions[..],
        [Completion {
            op: 1,
            outcome: Outcome::Failed {
                error: LockError::Connection { message, .. },
                ..
            }
        }] if message.contains("no answer within 5000 ms")
    ));

    assert!(locker.wire_read(0, b"+OK\r\n").completions.is_empty());
    locker.wire_connected(0, ("127.0.0.1".into(), 6379));
    locker.wire_read(0, b"+OK\r\n");
    submit(&locker, [acquire(2, "b", Some(Duration::from_secs(5)))]);
    let output = locker.wire_closed(0);
    assert!(matches!(
        output.completions[..],
        [Completion {
            op: 2,
            outcome: Outcome::Failed {
                error: LockError::Closed { .. },
                ..
            }
        }]
    ));
}

#[tokio::test]
async fn a_lock_taken_on_the_wire_is_watched_and_its_loss_reported() {
    let store = "session-wire-watchdog";
    let (locker, sink) = locker(store);
    let out = submit(
        &locker,
        [Request::Acquire {
            op: 1,
            names: vec!["a".into()],
            ttl: Duration::from_millis(200),
            wait: None,
            cancellable: false,
            upkeep: Some(Upkeep::WatchOnly),
            replicas: Replicas::NONE,
        }],
    );
    redis_grants(store, "a", &tokens(&out)[0]).await;
    let id = acquired_id(
        &locker.wire_read(0, b"*2\r\n:1\r\n:1\r\n").completions[0],
        1,
    );
    match sink.next().await {
        Completion {
            op: 0,
            outcome: Outcome::Lost { id: lost, .. },
        } => assert_eq!(lost, id),
        other => panic!("expected the loss of lock {id}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cancelled_wait_ends_aborted() {
    let store = "session-cancel";
    let (locker, sink) = locker(store);
    let token = crate::protocol::token::new_token();
    stranger(store)
        .try_acquire(&keys("a"), &token, Duration::from_secs(30), Replicas::NONE)
        .await
        .unwrap();
    let mut request = acquire(1, "a", None);
    if let Request::Acquire { cancellable, .. } = &mut request {
        *cancellable = true;
    }
    submit(&locker, [request]);
    locker.wire_read(0, b"*2\r\n:0\r\n:30000\r\n");
    tokio::time::sleep(Duration::from_millis(20)).await;
    locker.cancel(1);
    assert!(matches!(
        sink.next().await,
        Completion {
            op: 1,
            outcome: Outcome::Failed {
                error: LockError::Aborted { .. },
                ..
            }
        }
    ));
}

fn cancellable(mut request: Request) -> Request {
    if let Request::Acquire { cancellable, .. } = &mut request {
        *cancellable = true;
    }
    request
}

/// Waits up to a second for the token of `name` in `store` to be given back.
async fn given_back(store: &str, name: &str, token: &str) -> bool {
    for _ in 0..100 {
        if !store_holds(store, name, token).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn a_wire_attempt_cancelled_on_its_way_is_given_back_by_the_core() {
    let store = "session-cancel-on-the-wire";
    let (locker, sink) = locker(store);
    let out = submit(
        &locker,
        [cancellable(acquire(1, "a", Some(Duration::from_secs(5))))],
    );
    let token = tokens(&out)[0].clone();
    redis_grants(store, "a", &token).await;
    locker.cancel(1);
    let output = locker.wire_read(0, b"*2\r\n:1\r\n:1\r\n");
    assert!(
        matches!(
            output.completions[..],
            [Completion {
                op: 1,
                outcome: Outcome::Failed {
                    error: LockError::Aborted { .. },
                    ..
                }
            }]
        ),
        "not reported as taken: {:?}",
        output.completions
    );
    assert!(given_back(store, "a", &token).await, "still held");
    assert!(sink.is_empty());
}

#[tokio::test]
async fn a_lock_granted_before_a_cancel_arrived_is_given_back_by_the_core() {
    let store = "session-cancel-after-grant";
    let (locker, sink) = locker(store);
    // Two keys: the runtime's connection, whose completion reaches the caller later.
    let request = Request::Acquire {
        op: 1,
        names: vec!["a".to_owned(), "b".to_owned()],
        ttl: Duration::from_secs(10),
        wait: Some(Duration::from_secs(5)),
        cancellable: true,
        upkeep: None,
        replicas: Replicas::NONE,
    };
    assert!(submit(&locker, [request]).is_empty());
    let (token, id) = match sink.next().await {
        Completion {
            op: 1,
            outcome: Outcome::Acquired { id, token, .. },
        } => (token, id),
        other => panic!("expected op 1 acquired, got {other:?}"),
    };
    // The caller cancels before it has read that completion.
    locker.cancel(1);
    assert!(given_back(store, "a", &token).await, "a still held");
    assert!(!store_holds(store, "b", &token).await, "b still held");
    assert!(matches!(
        sink.next().await,
        Completion {
            op: 0,
            outcome: Outcome::Released { released: true }
        }
    ));
    // Released once: a release the caller asks for later finds it gone.
    submit(&locker, [Request::Release { op: 2, id }]);
    assert!(matches!(
        sink.next().await,
        Completion {
            op: 2,
            outcome: Outcome::Released { released: false }
        }
    ));
}

#[tokio::test]
async fn a_cancel_after_the_lock_was_released_gives_nothing_back() {
    let store = "session-cancel-after-read";
    let (locker, _sink) = locker(store);
    let out = submit(
        &locker,
        [cancellable(acquire(1, "a", Some(Duration::from_secs(5))))],
    );
    let token = tokens(&out)[0].clone();
    redis_grants(store, "a", &token).await;
    let output = locker.wire_read(0, b"*2\r\n:1\r\n:1\r\n");
    let id = acquired_id(&output.completions[0], 1);
    // The lock was released and op 1 is over: a stray cancel of it must not touch a lock.
    submit(&locker, [Request::Release { op: 2, id }]);
    assert!(stranger(store).release(&keys("a"), &token).await.unwrap());
    locker.wire_read(0, b"*1\r\n:1\r\n");
    redis_grants(store, "a", "someone else").await;
    locker.cancel(1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(store_holds(store, "a", "someone else").await);
}

#[tokio::test]
async fn releasing_an_unknown_lock_reports_it_was_not_ours() {
    let (locker, sink) = locker("session-unknown-release");
    assert!(submit(&locker, [Request::Release { op: 1, id: 99 }]).is_empty());
    assert!(matches!(
        sink.next().await,
        Completion {
            op: 1,
            outcome: Outcome::Released { released: false }
        }
    ));
}

#[tokio::test]
async fn a_wait_runs_out_busy_with_the_holders_remaining_ttl() {
    let store = "session-wait-runs-out";
    let (locker, sink) = locker(store);
    stranger(store)
        .try_acquire(
            &keys("a"),
            "stranger",
            Duration::from_secs(30),
            Replicas::NONE,
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    submit(&locker, [acquire(1, "a", Some(Duration::from_millis(100)))]);
    assert!(locker
        .wire_read(0, b"*2\r\n:0\r\n:30000\r\n")
        .completions
        .is_empty());
    match sink.next().await {
        Completion {
            op: 1,
            outcome: Outcome::Busy {
                retry_after: Some(after),
            },
        } => assert!(after > Duration::from_secs(29), "{after:?}"),
        other => panic!("expected op 1 busy, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn a_lock_taken_on_the_wire_is_extended_until_someone_else_holds_it() {
    let store = "session-extend";
    let (locker, sink) = locker(store);
    let out = submit(&locker, [acquire(1, "a", None)]);
    let token = tokens(&out)[0].clone();
    redis_grants(store, "a", &token).await;
    let id = acquired_id(
        &locker.wire_read(0, b"*2\r\n:1\r\n:1\r\n").completions[0],
        1,
    );

    submit(
        &locker,
        [Request::Extend {
            op: 2,
            id,
            ttl: Some(Duration::from_secs(60)),
            key: "a".to_owned(),
        }],
    );
    assert!(matches!(
        sink.next().await,
        Completion {
            op: 2,
            outcome: Outcome::Extended { .. }
        }
    ));

    // Lost: another process released it by its token and took it.
    let other = stranger(store);
    assert!(other.release(&keys("a"), &token).await.unwrap());
    redis_grants(store, "a", "someone else").await;
    submit(
        &locker,
        [Request::Extend {
            op: 3,
            id,
            ttl: None,
            key: "a".to_owned(),
        }],
    );
    assert!(matches!(
        sink.next().await,
        Completion {
            op: 3,
            outcome: Outcome::Failed {
                error: LockError::Lost { .. },
                ..
            }
        }
    ));
}

/// A lock taken on the wire of `locker`, watched as `upkeep` says; its token and id.
async fn held_on_wire(
    locker: &Locker,
    store: &str,
    ttl: Duration,
    upkeep: Upkeep,
) -> (String, u32) {
    let out = submit(
        locker,
        [Request::Acquire {
            op: 1,
            names: vec!["a".into()],
            ttl,
            wait: None,
            cancellable: false,
            upkeep: Some(upkeep),
            replicas: Replicas::NONE,
        }],
    );
    let token = tokens(&out)[0].clone();
    redis_grants(store, "a", &token).await;
    let id = acquired_id(
        &locker.wire_read(0, b"*2\r\n:1\r\n:1\r\n").completions[0],
        1,
    );
    (token, id)
}

#[tokio::test]
async fn a_lock_let_lapse_is_no_longer_extended_and_once_lost_is_left_to_expire() {
    let store = "session-let-lapse";
    let (locker, sink) = locker(store);
    let (token, id) =
        held_on_wire(&locker, store, Duration::from_millis(300), Upkeep::Extend).await;
    assert!(
        submit(&locker, [Request::LetLapse { id }]).is_empty(),
        "nothing to send"
    );
    // Still extended, it would never be reported lost.
    match sink.next().await {
        Completion {
            op: 0,
            outcome: Outcome::Lost { id: lost, .. },
        } => assert_eq!(lost, id),
        other => panic!("expected the loss of lock {id}, got {other:?}"),
    }
    // Redis may keep the key a little past the reported loss: here it keeps it for good.
    if !store_holds(store, "a", &token).await {
        redis_grants(store, "a", &token).await;
    }
    let out = submit(&locker, [Request::Release { op: 2, id }]);
    assert!(out.is_empty(), "a lapsed lock's release is not sent");
    assert!(matches!(
        sink.next().await,
        Completion {
            op: 2,
            outcome: Outcome::Released { released: false }
        }
    ));
    assert!(
        store_holds(store, "a", &token).await,
        "not deleted: it lapses"
    );
}

#[tokio::test]
async fn a_lock_let_lapse_and_released_before_its_lease_ends_is_released() {
    let store = "session-let-lapse-released";
    let (locker, sink) = locker(store);
    let (_, id) = held_on_wire(&locker, store, Duration::from_secs(10), Upkeep::Extend).await;
    submit(&locker, [Request::LetLapse { id }]);
    let out = submit(&locker, [Request::Release { op: 2, id }]);
    assert!(!out.is_empty(), "the release goes on the wire");
    assert!(matches!(
        locker.wire_read(0, b"*1\r\n:1\r\n").completions[..],
        [Completion {
            op: 2,
            outcome: Outcome::Released { released: true }
        }]
    ));
    assert!(sink.is_empty());
}

/// Serves the acquires `ops` started on `locker` one at a time, releasing each lock as soon as it
/// comes: the ops in the order they got the lock.
async fn served_in_turn(locker: &Locker, sink: &Collected, ops: usize) -> Vec<u32> {
    let mut served = Vec::new();
    while served.len() < ops {
        match sink.next().await {
            Completion {
                op,
                outcome: Outcome::Acquired { id, .. },
            } => {
                served.push(op);
                submit(locker, [Request::Release { op: 100 + op, id }]);
            }
            Completion {
                outcome: Outcome::Released { released: true },
                ..
            } => {}
            other => panic!("expected an acquire or a release, got {other:?}"),
        }
    }
    served
}

#[tokio::test]
async fn requests_behind_a_busy_wire_attempt_are_served_in_arrival_order() {
    let store = "session-arrival-order-wire";
    let (locker, sink) = locker(store);
    let (holder, token) = held_by_a_stranger(store, &keys("a")).await;

    let wait = Some(Duration::from_secs(5));
    let out = submit(&locker, (1..=4).map(|op| acquire(op, "a", wait)));
    assert_eq!(tokens(&out).len(), 1, "only the first request attempts");
    // The others reach the runtime while the first attempt is still on the wire.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(locker
        .wire_read(0, b"*2\r\n:0\r\n:30000\r\n")
        .completions
        .is_empty());

    assert!(holder.release(&keys("a"), &token).await.unwrap());
    assert_eq!(served_in_turn(&locker, &sink, 4).await, [1, 2, 3, 4]);
}

#[tokio::test]
async fn a_request_keeps_the_place_it_arrived_at_until_the_runtime_starts_it() {
    let store = "session-arrival-order-submit";
    let sink = Arc::new(Collected::default());
    let store_name = store.to_owned();
    let locker = Locker::with_topology(
        move |listener| Ok(Arc::new(Memory::new(Some(&store_name), listener)) as Arc<dyn Topology>),
        Some(LockWire::new(&NodeConfig::default())),
        sink.clone(),
        Handle::current(),
    )
    .unwrap();
    let (holder, token) = held_by_a_stranger(store, &keys("a")).await;

    // The wire is not open yet: the first request goes to the runtime, which has not started it
    // when the wire opens and the second request arrives.
    let wait = Some(Duration::from_secs(5));
    assert!(submit(&locker, [acquire(1, "a", wait)]).is_empty());
    locker.wire_connected(0, ("127.0.0.1".into(), 6379));
    assert!(locker.wire_read(0, b"+OK\r\n").ready);
    let out = submit(&locker, [acquire(2, "a", wait)]);
    assert!(
        out.is_empty(),
        "the first request is ahead: the second queues"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;

    assert!(holder.release(&keys("a"), &token).await.unwrap());
    assert_eq!(served_in_turn(&locker, &sink, 2).await, [1, 2]);
}

#[tokio::test]
async fn an_attempt_the_closed_socket_carried_keeps_its_place() {
    let store = "session-arrival-order-socket-closed";
    let (locker, sink) = locker(store);
    let (holder, token) = held_by_a_stranger(store, &keys("a")).await;

    let wait = Some(Duration::from_secs(5));
    let out = submit(&locker, (1..=3).map(|op| acquire(op, "a", wait)));
    assert_eq!(tokens(&out).len(), 1, "only the first request attempts");
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The socket closes before the answer: the attempt runs again on the runtime.
    assert!(locker
        .wire_failed(0, "connection reset", true)
        .completions
        .is_empty());
    tokio::time::sleep(Duration::from_millis(20)).await;

    assert!(holder.release(&keys("a"), &token).await.unwrap());
    assert_eq!(served_in_turn(&locker, &sink, 3).await, [1, 2, 3]);
}

/// A memory store whose attempts wait for a permit: the test decides how long one is in flight.
struct Gated {
    store: Memory,
    permits: Arc<Semaphore>,
}

impl Topology for Gated {
    fn try_acquire<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
        replicas: Replicas,
    ) -> BoxFuture<'a, Result<Attempt, LockError>> {
        Box::pin(async move {
            self.permits.acquire().await.unwrap().forget();
            self.store.try_acquire(keys, token, ttl, replicas).await
        })
    }

    fn release<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        self.store.release(keys, token)
    }

    fn extend<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        self.store.extend(keys, token, ttl)
    }

    fn hand_over<'a>(
        &'a self,
        keys: &'a LockKeys,
        old_token: &'a str,
        old_fence: u64,
        new_token: &'a str,
        ttl: Duration,
        reserve: u64,
        replicas: Replicas,
    ) -> BoxFuture<'a, Result<HandOver, LockError>> {
        self.store.hand_over(
            keys, old_token, old_fence, new_token, ttl, reserve, replicas,
        )
    }

    fn watch_releases<'a>(
        &'a self,
        channels: &'a [String],
    ) -> BoxFuture<'a, Result<(), LockError>> {
        self.store.watch_releases(channels)
    }

    fn unwatch_releases(&self, channels: &[String]) {
        self.store.unwatch_releases(channels);
    }

    fn close(&self) {
        self.store.close();
    }
}

#[tokio::test]
async fn requests_behind_a_busy_attempt_on_the_runtime_are_served_in_arrival_order() {
    let store = "session-arrival-order-runtime";
    let sink = Arc::new(Collected::default());
    let permits = Arc::new(Semaphore::new(0));
    let gated = permits.clone();
    let locker = Locker::with_topology(
        move |listener| {
            let store = Memory::new(Some(store), listener);
            Ok(Arc::new(Gated {
                store,
                permits: gated,
            }) as Arc<dyn Topology>)
        },
        None,
        sink.clone(),
        Handle::current(),
    )
    .unwrap();
    // A lock on several keys, which waits on the runtime on every topology.
    let names = vec!["a".to_owned(), "b".to_owned()];
    let both = LockKeys::new("", names.clone());
    let (holder, token) = held_by_a_stranger(store, &both).await;
    let request = |op| Request::Acquire {
        op,
        names: names.clone(),
        ttl: Duration::from_secs(10),
        wait: Some(Duration::from_secs(5)),
        cancellable: false,
        upkeep: None,
        replicas: Replicas::NONE,
    };

    submit(&locker, [request(1)]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The first attempt waits for its permit: the others arrive while it is in flight.
    submit(&locker, (2..=4).map(request));
    tokio::time::sleep(Duration::from_millis(20)).await;
    permits.add_permits(Semaphore::MAX_PERMITS / 2);
    tokio::time::sleep(Duration::from_millis(20)).await;

    assert!(holder.release(&both, &token).await.unwrap());
    assert_eq!(served_in_turn(&locker, &sink, 4).await, [1, 2, 3, 4]);
}

#[tokio::test]
async fn an_operation_that_panics_fails_as_an_internal_error_naming_its_key() {
    let sink = Arc::new(Collected::default());
    let permits = Arc::new(Semaphore::new(0));
    // A closed semaphore makes the gated attempt panic, as a bug in ironlock would.
    permits.close();
    let gated = permits.clone();
    let locker = Locker::with_topology(
        move |listener| {
            let store = Memory::new(Some("session-panicking-attempt"), listener);
            Ok(Arc::new(Gated {
                store,
                permits: gated,
            }) as Arc<dyn Topology>)
        },
        None,
        sink.clone(),
        Handle::current(),
    )
    .unwrap();
    submit(&locker, [acquire(1, "a", Some(Duration::from_secs(5)))]);
    match sink.next().await {
        Completion {
            op: 1,
            outcome:
                Outcome::Failed {
                    error: error @ LockError::Internal { .. },
                    ..
                },
        } => {
            assert_eq!((error.code(), error.key()), ("EINTERNAL", "a"));
        }
        other => panic!("expected op 1 failed as internal, got {other:?}"),
    }
}
