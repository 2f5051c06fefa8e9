//! The watchdog against one real `redis-server`: it keeps a held lock alive, reports its loss
//! before the lease can end (also when Redis stops answering), and follows extensions.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ironlock_core::{HeldLock, Lifecycle, LockError, Upkeep, Watchdog};
use support::locker::{acquire, exists, locker, options, pttl, stored_token, SLACK};
use support::RedisServer;
use support::ShowsLogs;

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
