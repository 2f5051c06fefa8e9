//! The session without sockets: a [`Locker`] over a memory topology, with a wire whose replies
//! the tests write by hand. The memory store plays the Redis the wire talks to, so what the wire
//! takes, the runtime's attempts see.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;

use super::*;
use crate::config::NodeConfig;
use crate::error::LockError;
use crate::protocol::keys::LockKeys;
use crate::protocol::token::TOKEN_MARK;
use crate::session::handover::FENCE_BLOCK;
use crate::session::watchdog::Upkeep;
use crate::topology::{Attempt, HandOver, Memory, ReleaseListener, Topology};

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

/// A locker on the memory store `store`, its wire connected and ready.
fn locker(store: &str) -> (Locker, Arc<Collected>) {
    let sink = Arc::new(Collected::default());
    let store = store.to_owned();
    let locker = Locker::with_topology(
        move |listener| Ok(Arc::new(Memory::new(Some(&store), listener)) as Arc<dyn Topology>),
        Some(LockWire::new(&NodeConfig::default(), 0.01)),
        sink.clone(),
        Handle::current(),
    )
    .unwrap();
    assert!(!locker.wire_connected().is_empty(), "CLIENT SETNAME");
    assert!(locker.wire_read(b"+OK\r\n").ready);
    (locker, sink)
}

fn acquire(op: u32, name: &str, wait: Option<Duration>) -> Request {
    Request::Acquire {
        op,
        names: vec![name.to_owned()],
        ttl: Duration::from_secs(10),
        wait,
        cancellable: false,
        upkeep: None,
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
        .try_acquire(&keys(name), token, Duration::from_secs(10))
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
    let out = locker.submit([acquire(1, "a", Some(Duration::from_secs(1)))]);
    assert_eq!(tokens(&out).len(), 1, "the attempt went on the wire");
    let output = locker.wire_read(b"*2\r\n:1\r\n:7\r\n");
    let [acquired] = &output.completions[..] else {
        panic!("{:?}", output.completions);
    };
    let id = acquired_id(acquired, 1);
    assert!(matches!(
        acquired.outcome,
        Outcome::Acquired { fence: 7, .. }
    ));

    let out = locker.submit([Request::Release { op: 2, id }]);
    assert!(
        !out.is_empty(),
        "nobody waits: the release goes on the wire"
    );
    let output = locker.wire_read(b"*1\r\n:1\r\n");
    assert!(matches!(
        output.completions[..],
        [Completion {
            op: 2,
            outcome: Outcome::Released { released: true }
        }]
    ));
    assert!(sink.is_empty(), "nothing ran on the runtime");
}

/// Takes the lock `name` for a holder on the wire, with a second request queued behind it that
/// sleeps as the queue's head, offering to take the lock over; gives the holder's lock id and
/// token.
async fn held_with_a_sleeping_waiter(
    locker: &Locker,
    store: &str,
    name: &str,
    wait: Duration,
) -> (u32, String) {
    let out = locker.submit([acquire(1, name, Some(wait)), acquire(2, name, Some(wait))]);
    let sent = tokens(&out);
    assert_eq!(
        sent.len(),
        1,
        "the second request queues instead of attempting"
    );
    redis_grants(store, name, &sent[0]).await;
    let id = acquired_id(&locker.wire_read(b"*2\r\n:1\r\n:1\r\n").completions[0], 1);
    // The runtime starts the second request: it joins the local queue and, as its head, offers
    // to take the lock over.
    tokio::time::sleep(Duration::from_millis(20)).await;
    (id, sent[0].clone())
}

/// What Redis does with the hand-over the wire sent in `out`: the store switches the key from
/// the old token to the new one and reserves a block of fences. Gives the new token and the
/// script's answer.
async fn redis_hands_over(store: &str, name: &str, out: &[u8]) -> (String, Vec<u8>) {
    let sent = tokens(out);
    let [old, new] = &sent[..] else {
        panic!("expected a hand-over, got {}", String::from_utf8_lossy(out));
    };
    let outcome = stranger(store)
        .hand_over(
            &keys(name),
            old,
            1,
            new,
            Duration::from_secs(10),
            FENCE_BLOCK,
        )
        .await
        .unwrap();
    let HandOver::Done {
        reserved: Some(last),
    } = outcome
    else {
        panic!("expected the lock handed over, got {outcome:?}");
    };
    (new.clone(), format!("*2\r\n:1\r\n:{last}\r\n").into_bytes())
}

#[tokio::test]
async fn a_release_hands_the_lock_to_the_sleeping_waiter_on_the_wire_and_completes_both() {
    let store = "session-hand-over-on-wire";
    let (locker, sink) = locker(store);
    let (id, holder) =
        held_with_a_sleeping_waiter(&locker, store, "a", Duration::from_secs(5)).await;

    let out = locker.submit([Request::Release { op: 3, id }]);
    let (token, answer) = redis_hands_over(store, "a", &out).await;
    let output = locker.wire_read(&answer);
    let [release, handed] = &output.completions[..] else {
        panic!(
            "expected the release and the acquire, got {:?}",
            output.completions
        );
    };
    assert!(matches!(
        release,
        Completion {
            op: 3,
            outcome: Outcome::Released { released: true }
        }
    ));
    let Completion {
        op: 2,
        outcome:
            Outcome::Acquired {
                id: handed_id,
                token: handed_token,
                fence,
                ..
            },
    } = handed
    else {
        panic!("expected op 2 acquired, got {handed:?}");
    };
    // The store counted 1 for the holder; the hand-over reserved a block above it.
    assert_eq!((handed_token, *fence), (&token, 2));
    assert!(store_holds(store, "a", &token).await, "the waiter holds it");
    assert!(!store_holds(store, "a", &holder).await);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(sink.is_empty(), "nothing completed on the runtime");

    // Nobody waits any more: the next release is a plain one, on the wire.
    let out = locker.submit([Request::Release {
        op: 4,
        id: *handed_id,
    }]);
    assert_eq!(tokens(&out), [token]);
    assert!(matches!(
        locker.wire_read(b"*1\r\n:1\r\n").completions[..],
        [Completion {
            op: 4,
            outcome: Outcome::Released { released: true }
        }]
    ));
}

#[tokio::test]
async fn a_waiter_whose_wait_ran_out_during_the_hand_over_gets_nothing_and_the_lock_goes_back() {
    let store = "session-hand-over-too-late";
    let (locker, sink) = locker(store);
    let (id, _) =
        held_with_a_sleeping_waiter(&locker, store, "a", Duration::from_millis(200)).await;

    let out = locker.submit([Request::Release { op: 3, id }]);
    let (token, answer) = redis_hands_over(store, "a", &out).await;
    // The answer is late: the waiter's wait runs out first, and it completes busy.
    assert!(matches!(
        sink.next().await,
        Completion {
            op: 2,
            outcome: Outcome::Busy { .. }
        }
    ));
    let output = locker.wire_read(&answer);
    assert!(matches!(
        output.completions[..],
        [Completion {
            op: 3,
            outcome: Outcome::Released { released: true }
        }]
    ));
    // The lock handed to nobody is released in the background.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!store_holds(store, "a", &token).await);
    assert!(sink.is_empty());
}

#[tokio::test]
async fn a_hand_over_cut_off_by_a_closed_socket_is_given_back_and_the_release_runs_again() {
    let store = "session-hand-over-socket-closed";
    let (locker, sink) = locker(store);
    let (id, _) = held_with_a_sleeping_waiter(&locker, store, "a", Duration::from_secs(5)).await;

    let out = locker.submit([Request::Release { op: 3, id }]);
    // The script ran before the socket closed: the new token holds the key, unanswered.
    let (token, _) = redis_hands_over(store, "a", &out).await;
    assert!(locker
        .wire_failed("connection reset", true)
        .completions
        .is_empty());
    // The new token is given back; the release runs again on the runtime and finds the old
    // lock gone; the waiter, told its hand-over failed, attempts and takes the lock.
    let mut seen = [sink.next().await, sink.next().await];
    seen.sort_by_key(|completion| completion.op);
    acquired_id(&seen[0], 2);
    assert!(matches!(
        seen[1],
        Completion {
            op: 3,
            outcome: Outcome::Released { released: false }
        }
    ));
    let Outcome::Acquired { token: taken, .. } = &seen[0].outcome else {
        unreachable!("acquired, as checked above");
    };
    assert_ne!(taken, &token);
    assert!(store_holds(store, "a", taken).await);
}

#[tokio::test]
async fn a_busy_wire_attempt_queues_until_the_holder_releases() {
    let store = "session-busy-on-wire";
    let (locker, sink) = locker(store);
    let holder = stranger(store);
    let token = crate::protocol::token::new_token();
    holder
        .try_acquire(&keys("a"), &token, Duration::from_secs(30))
        .await
        .unwrap();

    locker.submit([acquire(1, "a", Some(Duration::from_secs(5)))]);
    let output = locker.wire_read(b"*2\r\n:0\r\n:30000\r\n");
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
    locker.submit([acquire(1, "a", Some(Duration::ZERO))]);
    let output = locker.wire_read(b"*2\r\n:2\r\n:1500\r\n");
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
    let out = locker.submit([acquire(1, "a", Some(Duration::from_secs(5)))]);
    // The attempt reached Redis and took the lock before the socket closed.
    redis_grants(store, "a", &tokens(&out)[0]).await;
    let output = locker.wire_failed("connection reset", true);
    assert!(output.completions.is_empty() && !output.ready);
    // Given back, then attempted again on the runtime: the lock is taken, by a new token.
    acquired_id(&sink.next().await, 1);
}

#[tokio::test]
async fn a_timed_out_wire_fails_what_it_carried_and_closing_fails_it_as_closed() {
    let (locker, _sink) = locker("session-wire-fails");
    locker.submit([acquire(1, "a", Some(Duration::from_secs(5)))]);
    let output = locker.wire_failed("no answer within 5000 ms", false);
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

    assert!(locker.wire_read(b"+OK\r\n").completions.is_empty());
    locker.wire_connected();
    locker.wire_read(b"+OK\r\n");
    locker.submit([acquire(2, "b", Some(Duration::from_secs(5)))]);
    let output = locker.wire_closed();
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
    let out = locker.submit([Request::Acquire {
        op: 1,
        names: vec!["a".into()],
        ttl: Duration::from_millis(200),
        wait: None,
        cancellable: false,
        upkeep: Some(Upkeep::WatchOnly),
    }]);
    redis_grants(store, "a", &tokens(&out)[0]).await;
    let id = acquired_id(&locker.wire_read(b"*2\r\n:1\r\n:1\r\n").completions[0], 1);
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
        .try_acquire(&keys("a"), &token, Duration::from_secs(30))
        .await
        .unwrap();
    let mut request = acquire(1, "a", None);
    if let Request::Acquire { cancellable, .. } = &mut request {
        *cancellable = true;
    }
    locker.submit([request]);
    locker.wire_read(b"*2\r\n:0\r\n:30000\r\n");
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

#[tokio::test]
async fn releasing_an_unknown_lock_reports_it_was_not_ours() {
    let (locker, sink) = locker("session-unknown-release");
    assert!(locker
        .submit([Request::Release { op: 1, id: 99 }])
        .is_empty());
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
        .try_acquire(&keys("a"), "stranger", Duration::from_secs(30))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    locker.submit([acquire(1, "a", Some(Duration::from_millis(100)))]);
    assert!(locker
        .wire_read(b"*2\r\n:0\r\n:30000\r\n")
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
    let out = locker.submit([acquire(1, "a", None)]);
    let token = tokens(&out)[0].clone();
    redis_grants(store, "a", &token).await;
    let id = acquired_id(&locker.wire_read(b"*2\r\n:1\r\n:1\r\n").completions[0], 1);

    locker.submit([Request::Extend {
        op: 2,
        id,
        ttl: Some(Duration::from_secs(60)),
    }]);
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
    locker.submit([Request::Extend {
        op: 3,
        id,
        ttl: None,
    }]);
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
