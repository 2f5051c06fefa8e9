//! The queues without a topology: places, turns, offers and hand-over chains, by hand.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Arrival, FirstAttempt, Ticket, Turn, WaitQueues};
use crate::protocol::keys::LockKeys;
use crate::protocol::lock::HeldLock;
use crate::session::handover::{FENCE_BLOCK, MAX_LINKS};
use crate::topology::{ReleaseListener, Replicas};

const TTL: Duration = Duration::from_millis(500);

fn setup() -> (Arc<WaitQueues>, Arc<LockKeys>) {
    let keys = Arc::new(LockKeys::new("", ["k".to_owned()]));
    (Arc::new(WaitQueues::default()), keys)
}

fn lock(keys: &Arc<LockKeys>, token: &str, fence: u64) -> HeldLock {
    HeldLock {
        keys: keys.clone(),
        token: token.to_owned(),
        fence,
        ttl: TTL,
        expires_at: SystemTime::now(),
    }
}

/// Hands the lock of `token` to the offering head as the script would, `counter` being the
/// fencing counter in Redis; the new token and fence, or `None` for a normal release.
fn hand_over(
    queues: &Arc<WaitQueues>,
    keys: &Arc<LockKeys>,
    token: &str,
    counter: &mut u64,
) -> Option<(String, u64)> {
    let mut handing = queues.hand_over(&keys.channels[0], token)?;
    assert_eq!(handing.ttl(), TTL);
    let reserved = (handing.reserve() > 0).then(|| {
        *counter += handing.reserve();
        *counter
    });
    let new_token = format!("{token}+");
    let fence = handing
        .handed_to(&new_token, reserved)
        .expect("a fitting answer");
    handing.deliver(lock(keys, &new_token, fence));
    Some((new_token, fence))
}

/// The place of a request arriving on `channels`, which must be a first attempt.
fn attempting(queues: &Arc<WaitQueues>, channels: &[String]) -> FirstAttempt {
    match queues.arrive(channels) {
        Arrival::Attempt(first) => first,
        Arrival::Wait(_) => panic!("expected nobody ahead"),
    }
}

/// The place of a request arriving on `channels`, which must be behind someone.
fn behind(queues: &Arc<WaitQueues>, channels: &[String]) -> Ticket {
    match queues.arrive(channels) {
        Arrival::Wait(ticket) => ticket,
        Arrival::Attempt(_) => panic!("expected someone ahead"),
    }
}

#[tokio::test]
async fn a_first_attempt_keeps_its_place_ahead_of_requests_that_came_meanwhile() {
    let (queues, keys) = setup();
    let busy = attempting(&queues, &keys.channels);
    let next = behind(&queues, &keys.channels);
    assert!(!next.is_head(), "the attempt in flight is ahead");
    let head = busy.wait(&keys.channels);
    assert!(head.is_head());
    drop(head);
    assert!(next.is_head());
}

#[tokio::test]
async fn a_first_attempt_that_took_the_lock_leaves_the_next_awaiting_its_release() {
    let (queues, keys) = setup();
    let taken = attempting(&queues, &keys.channels);
    let next = behind(&queues, &keys.channels);
    taken.took_lock(TTL);
    assert!(next.is_head());
    assert!(matches!(next.turn(), Turn::AwaitRelease { bound, .. } if bound == TTL));

    // A failed attempt leaves its place too, and the next one attempts.
    let other = ["other".to_owned()];
    let failed = attempting(&queues, &other);
    let next = behind(&queues, &other);
    drop(failed);
    assert!(next.is_head());
    assert!(matches!(next.turn(), Turn::Attempt { .. }));
}

#[tokio::test]
async fn an_uncontended_attempt_leaves_nothing_behind() {
    let (queues, keys) = setup();
    attempting(&queues, &keys.channels).took_lock(TTL);
    assert!(!queues.has_waiters(&keys.channels));
    assert!(queues.is_idle());
    let head = attempting(&queues, &keys.channels).wait(&keys.channels);
    assert!(head.is_head(), "alone in a queue of its own");
    drop(head);
    assert!(queues.is_idle());
}

#[tokio::test]
async fn keys_named_in_another_order_share_one_queue() {
    let queues = Arc::new(WaitQueues::default());
    let forward = LockKeys::new("", ["a".to_owned(), "b".to_owned()]);
    let backward = LockKeys::new("", ["b".to_owned(), "a".to_owned()]);
    let first = queues.join(&forward.channels);
    let second = queues.join(&backward.channels);
    assert!(!second.is_head(), "behind the first");
    drop(first);
    assert!(second.is_head());
}

#[tokio::test]
async fn only_heads_woken_by_another_process_spread_their_attempts() {
    let (queues, keys) = setup();
    let head = queues.join(&keys.channels);
    let spread = Duration::from_millis(3);

    // Another process's release, on the channel: a random pause within the spread.
    queues.released(&keys.channels[0], "theirs");
    assert!(head.pause_after_release(spread) < spread);
    // Our own release, announced on the channel before the release call returned: no pause.
    queues.releasing(&keys.channels, "ours");
    queues.released(&keys.channels[0], "ours");
    assert_eq!(head.pause_after_release(spread), Duration::ZERO);
    // Many of our own in a row: the head steps back once, for the whole spread.
    for round in 1..MAX_LINKS {
        queues.released_here(&keys.channels, &format!("ours {round}"));
    }
    assert_eq!(head.pause_after_release(spread), spread);
    queues.released_here(&keys.channels, "ours again");
    assert_eq!(head.pause_after_release(spread), Duration::ZERO);
}

#[tokio::test]
async fn only_an_offering_head_is_handed_the_lock() {
    let (queues, keys) = setup();
    let mut counter = 1;
    assert!(
        hand_over(&queues, &keys, "t", &mut counter).is_none(),
        "no queue"
    );
    let head = queues.join(&keys.channels);
    let behind = queues.join(&keys.channels);
    assert!(
        hand_over(&queues, &keys, "t", &mut counter).is_none(),
        "no offer"
    );

    let handed = head.offer(TTL, Replicas::NONE);
    let (token, fence) = hand_over(&queues, &keys, "t", &mut counter).expect("handed over");
    assert!(!head.withdraw_offer(), "the offer was taken");
    let lock = handed.await.expect("delivered").into_lock();
    assert_eq!((lock.token.as_str(), lock.fence), (token.as_str(), fence));
    assert_eq!((fence, counter), (2, 1 + FENCE_BLOCK));
    head.took_lock(TTL);

    // The next head's turn: wait for the release of the lock just handed over.
    assert!(matches!(behind.turn(), Turn::AwaitRelease { bound, .. } if bound == TTL));
    let _withdrawn = behind.offer(TTL, Replicas::NONE);
    assert!(behind.withdraw_offer());
    assert!(
        hand_over(&queues, &keys, &token, &mut counter).is_none(),
        "withdrawn"
    );
}

#[tokio::test]
async fn a_failed_hand_over_tells_the_head_to_attempt() {
    let (queues, keys) = setup();
    let head = queues.join(&keys.channels);
    let handed = head.offer(TTL, Replicas::NONE);
    let handing = queues.hand_over(&keys.channels[0], "t").expect("an offer");
    // The key no longer held "t": the hand-over is dropped undelivered.
    drop(handing);
    assert!(handed.await.is_err(), "the head learns it must attempt");
    assert!(matches!(head.turn(), Turn::Attempt { pause: false, .. }));
}

#[tokio::test]
async fn a_departed_head_takes_its_offer_along() {
    let (queues, keys) = setup();
    let head = queues.join(&keys.channels);
    let _behind = queues.join(&keys.channels);
    let handed = head.offer(TTL, Replicas::NONE);
    drop(head);
    drop(handed);
    assert!(queues.hand_over(&keys.channels[0], "t").is_none());
}

#[tokio::test]
async fn a_chain_ends_after_its_links_and_the_head_pauses() {
    let (queues, keys) = setup();
    let mut counter = 7;
    let mut token = "first".to_owned();
    let mut fences = Vec::new();
    let mut head = queues.join(&keys.channels);
    loop {
        // Someone always waits behind: the queue, and its chain, stay.
        let behind = queues.join(&keys.channels);
        let handed = head.offer(TTL, Replicas::NONE);
        match hand_over(&queues, &keys, &token, &mut counter) {
            Some((next, fence)) => {
                let lock = handed.await.expect("delivered").into_lock();
                assert_eq!(lock.fence, fence);
                fences.push(fence);
                token = next;
                head.took_lock(TTL);
                head = behind;
            }
            None => {
                // The releaser releases normally and announces it; the head then pauses
                // before it attempts, so other processes get a turn.
                queues.released_here(&keys.channels, &token);
                assert!(head.withdraw_offer());
                assert!(matches!(head.turn(), Turn::Attempt { pause: true, .. }));
                assert!(matches!(head.turn(), Turn::Attempt { pause: false, .. }));
                break;
            }
        }
    }
    assert_eq!(fences, (8..8 + u64::from(MAX_LINKS)).collect::<Vec<_>>());
    assert_eq!(counter, 7 + FENCE_BLOCK);
}
