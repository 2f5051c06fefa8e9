//! One Redis itself, against a real `redis-server` started fresh for every test: what its script
//! calls write and answer, batching, scripts Redis forgot, connection errors and timeouts.

mod support;

use std::time::Duration;

use ironlock_core::protocol::keys::hash_slot;
use ironlock_core::{HeldLock, Lifecycle, LockError, LockerConfig};
use support::locker::{
    acquire, config, exists, locker, names, options, pttl, refused, stored_token, COMMAND_TIMEOUT,
    CONNECT_TIMEOUT, SLACK,
};
use support::RedisServer;
use support::ShowsLogs;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_stores_a_plain_set_nx_px_key() {
    let server = RedisServer::start();
    let locker = locker(&server);

    let lock = acquire(&server, &locker, &["order:1"], &options(10_000, Some(0))).await;

    server.check_eq(lock.key(), "order:1", "lock key");
    server.check_eq(
        stored_token(&server, "order:1"),
        Some(lock.token.clone()),
        "value of the lock key",
    );
    server.check_eq(
        server.query::<String>(&["TYPE", "order:1"]),
        "string".to_owned(),
        "type of the lock key",
    );
    let left = pttl(&server, "order:1");
    server.check(
        left > 0 && left <= 10_000,
        format_args!("PTTL {left} should be in (0, 10000]"),
    );
    server.check(lock.fence >= 1, format_args!("fence {}", lock.fence));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_is_true_once_then_false() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let lock = acquire(&server, &locker, &["job"], &options(10_000, Some(0))).await;

    server.check_eq(locker.release(&lock).await, Ok(true), "first release");
    server.check(!exists(&server, "job"), "released key still exists");
    server.check_eq(locker.release(&lock).await, Ok(false), "second release");

    // A stale holder must not delete the lock of whoever took the key next.
    let next = acquire(&server, &locker, &["job"], &options(10_000, Some(0))).await;
    server.check_eq(locker.release(&lock).await, Ok(false), "stale release");
    server.check_eq(
        stored_token(&server, "job"),
        Some(next.token),
        "the new holder's token",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_lock_fails_at_once_with_retry_after_when_wait_is_zero() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let holder = acquire(&server, &locker, &["report"], &options(10_000, Some(0))).await;

    let started = Instant::now();
    let error = refused(&server, &locker, &["report"], &options(5_000, Some(0))).await;

    server.check(
        started.elapsed() < SLACK,
        format_args!("wait = 0 took {:?}", started.elapsed()),
    );
    match &error {
        LockError::Busy {
            key,
            retry_after: Some(after),
        } => {
            server.check_eq(key.as_str(), "report", "busy key");
            server.check(
                *after > Duration::from_millis(5_000) && *after <= Duration::from_millis(10_000),
                format_args!("retry_after {after:?} should be the holder's TTL left"),
            );
        }
        other => server.fail(format_args!(
            "expected Busy with retry_after, got {other:?}"
        )),
    }
    server.check_eq(error.code(), "ELOCKBUSY", "error code");
    server.check_eq(
        stored_token(&server, "report"),
        Some(holder.token),
        "holder's token",
    );

    // A key set without TTL by someone else has no known end.
    server.query::<()>(&["SET", "forever", "someone-else"]);
    let error = refused(&server, &locker, &["forever"], &options(5_000, Some(0))).await;
    server.check_eq(
        error,
        LockError::Busy {
            key: "forever".into(),
            retry_after: None,
        },
        "busy without TTL",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_lock_is_all_or_nothing() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let short = acquire(&server, &locker, &["a"], &options(5_000, Some(0))).await;
    let long = acquire(&server, &locker, &["b"], &options(20_000, Some(0))).await;

    let error = refused(
        &server,
        &locker,
        &["c", "a", "b"],
        &options(10_000, Some(0)),
    )
    .await;
    match &error {
        LockError::Busy {
            key,
            retry_after: Some(after),
        } => {
            server.check_eq(key.as_str(), "c", "busy names the first key");
            server.check(
                *after > Duration::from_millis(15_000),
                format_args!("retry_after {after:?} should be the longest TTL left"),
            );
        }
        other => server.fail(format_args!("expected Busy, got {other:?}")),
    }
    server.check(
        !exists(&server, "c"),
        "a refused multi-key lock set a free key",
    );
    server.check_eq(
        stored_token(&server, "a"),
        Some(short.token.clone()),
        "a's holder",
    );

    server.check_eq(locker.release(&short).await, Ok(true), "release a");
    server.check_eq(locker.release(&long).await, Ok(true), "release b");
    let all = acquire(
        &server,
        &locker,
        &["c", "a", "b", "a"],
        &options(10_000, Some(0)),
    )
    .await;
    server.check_eq(all.keys.names.clone(), names(&["c", "a", "b"]), "names");
    for key in ["a", "b", "c"] {
        server.check_eq(stored_token(&server, key), Some(all.token.clone()), key);
        let left = pttl(&server, key);
        server.check(
            left > 0 && left <= 10_000,
            format_args!("PTTL of {key}: {left}"),
        );
    }
    refused(&server, &locker, &["b"], &options(10_000, Some(0))).await;

    server.check_eq(locker.release(&all).await, Ok(true), "release all");
    for key in ["a", "b", "c"] {
        server.check(!exists(&server, key), format_args!("{key} still exists"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefix_applies_to_every_key_written() {
    let server = RedisServer::start();
    let locker = Lifecycle::new(&LockerConfig {
        key_prefix: "app:".into(),
        ..config(&server)
    })
    .expect("valid config");

    let lock = acquire(&server, &locker, &["job"], &options(10_000, Some(0))).await;

    server.check_eq(lock.key(), "job", "the key as the caller named it");
    server.check_eq(
        stored_token(&server, "app:job"),
        Some(lock.token.clone()),
        "prefixed key",
    );
    server.check(!exists(&server, "job"), "unprefixed key was written");
    let mut written: Vec<String> = server.query(&["KEYS", "*"]);
    written.sort();
    server.check(
        written.len() == 2,
        format_args!("expected the lock and one counter, got {written:?}"),
    );
    server.check(
        written.iter().all(|key| key.starts_with("app:")),
        format_args!("every key carries the prefix: {written:?}"),
    );
    server.check(
        written
            .iter()
            .any(|key| key.starts_with("app:ironlock:fence:")),
        format_args!("fence counter under the prefix: {written:?}"),
    );
    server.check_eq(locker.release(&lock).await, Ok(true), "release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_redis_forgot_go_again_with_their_source() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let forget = || server.query::<()>(&["SCRIPT", "FLUSH"]);

    forget();
    let one = acquire(&server, &locker, &["forgot:one"], &options(10_000, Some(0))).await;
    forget();
    let both = acquire(
        &server,
        &locker,
        &["forgot:a", "forgot:b"],
        &options(10_000, Some(0)),
    )
    .await;
    forget();
    if let Err(error) = locker.extend(&both, Duration::from_millis(20_000)).await {
        server.fail(format_args!("extend: {error:?}"));
    }
    forget();
    server.check_eq(locker.release(&one).await, Ok(true), "release of one key");
    server.check_eq(locker.release(&both).await, Ok(true), "release of two keys");

    server.check(
        !exists(&server, "forgot:one") && !exists(&server, "forgot:a"),
        "released keys still exist",
    );
    // Each call Redis did not know went once more, as EVAL with its source.
    server.check_eq(server.calls_of("eval"), 4, "EVAL calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_renews_the_ttl_until_someone_else_takes_the_lock() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let lock = acquire(&server, &locker, &["lease"], &options(1_000, Some(0))).await;

    let extended = match locker.extend(&lock, Duration::from_millis(20_000)).await {
        Ok(extended) => extended,
        Err(error) => server.fail(format_args!("extend: {error:?}")),
    };
    server.check_eq(extended.ttl, Duration::from_millis(20_000), "new ttl");
    server.check_eq(extended.token.clone(), lock.token.clone(), "same token");
    server.check(
        extended.expires_at > lock.expires_at,
        "validity moves forward",
    );
    let left = pttl(&server, "lease");
    server.check(
        left > 10_000 && left <= 20_000,
        format_args!("PTTL after extend: {left}"),
    );

    // As if the lease expired and another client took the key.
    server.query::<()>(&["DEL", "lease"]);
    let thief = acquire(&server, &locker, &["lease"], &options(5_000, Some(0))).await;

    let error = locker
        .extend(&extended, Duration::from_millis(20_000))
        .await;
    server.check_eq(
        error.map(|lock| lock.token),
        Err(LockError::Lost {
            key: "lease".into(),
        }),
        "extend of a taken lock",
    );
    server.check_eq(
        stored_token(&server, "lease"),
        Some(thief.token),
        "thief's token",
    );
    let left = pttl(&server, "lease");
    server.check(
        left > 0 && left <= 5_000,
        format_args!("a failed extend changed the thief's TTL: {left}"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_is_a_connection_error() {
    let mut server = RedisServer::start();
    let connected = locker(&server);
    acquire(&server, &connected, &["warm-up"], &options(10_000, Some(0))).await;
    server.stop();
    let never_connected = locker(&server);
    let bound = CONNECT_TIMEOUT + COMMAND_TIMEOUT + SLACK;

    for (which, locker) in [
        ("connected", &connected),
        ("never connected", &never_connected),
    ] {
        let started = Instant::now();
        let error = refused(&server, locker, &["job"], &options(10_000, Some(10_000))).await;
        server.check(
            started.elapsed() < bound,
            format_args!("{which}: took {:?}", started.elapsed()),
        );
        match &error {
            LockError::Connection { key, message } => {
                server.check_eq(key.as_str(), "job", "error key");
                server.check(
                    message.contains(&format!("127.0.0.1:{}", server.port())),
                    format_args!("{which}: message names the node: {message}"),
                );
            }
            other => server.fail(format_args!("{which}: expected Connection, got {other:?}")),
        }
        server.check_eq(error.code(), "ECONNECTION", "error code");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_server_times_out_then_recovers() {
    let server = RedisServer::start();
    let command_timeout = Duration::from_millis(500);
    let locker = Lifecycle::new(&LockerConfig {
        command_timeout,
        ..config(&server)
    })
    .expect("valid config");
    // Connects and loads the acquire and release scripts.
    let warm_up = acquire(&server, &locker, &["warm-up"], &options(10_000, Some(0))).await;
    locker.release(&warm_up).await.expect("release warm-up");

    server.pause();
    let started = Instant::now();
    let error = refused(&server, &locker, &["job"], &options(30_000, Some(0))).await;
    let waited = started.elapsed();
    server.resume();

    server.check(
        waited >= command_timeout.mul_f64(0.9) && waited < command_timeout + SLACK,
        format_args!("a paused server failed after {waited:?}"),
    );
    server.check(
        matches!(&error, LockError::Connection { key, .. } if key == "job"),
        format_args!("expected Connection, got {error:?}"),
    );

    // The timed-out SET still ran once the server woke; the core must have undone it, or the
    // key would stay locked for its whole 30 s TTL.
    let started = Instant::now();
    let lock = acquire(&server, &locker, &["job"], &options(10_000, Some(5_000))).await;
    server.check(
        started.elapsed() < SLACK,
        format_args!("recovery took {:?}", started.elapsed()),
    );
    server.check_eq(
        stored_token(&server, "job"),
        Some(lock.token.clone()),
        "token after recovery",
    );
    server.check_eq(
        locker.release(&lock).await,
        Ok(true),
        "release after recovery",
    );
}

/// `commandTimeout` bounds a command on an open connection, whatever `connectTimeout` is, and a
/// timed-out command says so in the wire's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_fails_a_release_after_the_command_timeout_alone() {
    let server = RedisServer::start();
    let command_timeout = Duration::from_millis(300);
    let locker = Lifecycle::new(&LockerConfig {
        connect_timeout: Duration::from_millis(8_000),
        command_timeout,
        ..config(&server)
    })
    .expect("valid config");
    let lock = acquire(&server, &locker, &["job"], &options(30_000, Some(0))).await;

    server.pause();
    let started = Instant::now();
    let released = locker.release(&lock).await;
    let waited = started.elapsed();
    server.resume();

    server.check(
        waited >= command_timeout.mul_f64(0.9) && waited < command_timeout + SLACK,
        format_args!("a stalled server failed the release after {waited:?}"),
    );
    match released {
        Err(LockError::Connection { key, message }) => {
            server.check_eq(key.as_str(), "job", "error key");
            server.check(
                message.ends_with("no answer within 300 ms"),
                format_args!("message: {message}"),
            );
        }
        other => server.fail(format_args!("expected a connection error, got {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_server_before_the_first_connect_is_a_connection_error() {
    let server = RedisServer::start();
    let locker = locker(&server);

    server.pause();
    let started = Instant::now();
    let error = refused(&server, &locker, &["job"], &options(10_000, Some(0))).await;
    let waited = started.elapsed();
    server.resume();

    server.check(
        waited < CONNECT_TIMEOUT + COMMAND_TIMEOUT + SLACK,
        format_args!("a paused server failed after {waited:?}"),
    );
    server.check(
        matches!(&error, LockError::Connection { key, .. } if key == "job"),
        format_args!("expected Connection, got {error:?}"),
    );
    let lock = acquire(&server, &locker, &["job"], &options(10_000, Some(5_000))).await;
    server.check_eq(
        locker.release(&lock).await,
        Ok(true),
        "release after recovery",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_locker_refuses_new_work() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let lock = acquire(&server, &locker, &["job"], &options(10_000, Some(0))).await;

    locker.close();

    let error = refused(&server, &locker, &["other"], &options(10_000, Some(0))).await;
    server.check_eq(
        error,
        LockError::Closed {
            key: "other".into(),
        },
        "acquire after close",
    );
    server.check_eq(
        locker.release(&lock).await,
        Err(LockError::Closed { key: "job".into() }),
        "release after close",
    );
}

fn script_calls(server: &RedisServer) -> u64 {
    server.calls_of("evalsha") + server.calls_of("eval")
}

// One thread: every acquire of the burst is queued before the flush task gets to run.
#[tokio::test]
async fn one_key_locks_asked_together_travel_as_one_script_call() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let keys: Vec<String> = (0..50).map(|n| format!("burst:{n}")).collect();
    // Loads the script, so the burst below runs on EVALSHA alone.
    let warm = acquire(&server, &locker, &["warm"], &options(10_000, Some(0))).await;
    server.check_eq(locker.release(&warm).await, Ok(true), "warm-up release");
    let before = script_calls(&server);

    let acquires = keys.iter().map(|key| {
        let options = options(10_000, Some(0));
        let keys = locker.keys(vec![key.clone()]);
        let locker = &locker;
        async move { locker.acquire(keys, &options).await }
    });
    let locks: Vec<HeldLock> = futures_util::future::join_all(acquires)
        .await
        .into_iter()
        .map(|lock| lock.unwrap_or_else(|error| server.fail(format_args!("{error:?}"))))
        .collect();
    server.check_eq(
        script_calls(&server) - before,
        1,
        "script calls for 50 acquires",
    );
    for (lock, key) in locks.iter().zip(&keys) {
        server.check_eq(stored_token(&server, key), Some(lock.token.clone()), key);
    }

    let releases = futures_util::future::join_all(locks.iter().map(|lock| locker.release(lock)));
    server.check(
        releases.await.iter().all(|released| released == &Ok(true)),
        "every release was ours",
    );
    server.check_eq(
        script_calls(&server) - before,
        2,
        "script calls for 50 releases more",
    );
    server.check(
        keys.iter().all(|key| !exists(&server, key)),
        "a key is left",
    );
}

#[tokio::test]
async fn a_command_redis_refuses_fails_only_its_own_lock() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let (broken, sound) = ("broken", "sound");
    server.check(
        hash_slot(broken) != hash_slot(sound),
        "the two keys need fence counters of their own",
    );
    // A fencing counter that INCR cannot count: Redis refuses that lock's INCR mid-script.
    let counter = ironlock_core::protocol::keys::fence_key("", broken);
    server.query::<()>(&["SET", &counter, "not a number"]);

    let options = options(10_000, Some(0));
    let (failed, taken) = tokio::join!(
        locker.acquire(locker.keys(names(&[broken])), &options),
        locker.acquire(locker.keys(names(&[sound])), &options),
    );
    match failed {
        Err(LockError::Connection { key, message }) => {
            server.check_eq(key.as_str(), broken, "key of the error");
            server.check(
                message.contains("not an integer"),
                format_args!("message {message:?} should give Redis's reason"),
            );
        }
        other => server.fail(format_args!("expected a connection error, got {other:?}")),
    }
    let taken = taken.unwrap_or_else(|error| server.fail(format_args!("{error:?}")));
    server.check_eq(
        stored_token(&server, sound),
        Some(taken.token),
        "the sound lock",
    );
    // The SET before the refused INCR is undone by token.
    let deadline = Instant::now() + SLACK;
    while exists(&server, broken) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.check(
        !exists(&server, broken),
        "the half-taken lock was left behind",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_and_extend_go_once_more_when_the_connection_was_killed() {
    let server = RedisServer::start();
    let locker = locker(&server);
    for key in ["extended", "released"] {
        // Connected: the kill below finds the connection open.
        acquire(
            &server,
            &locker,
            &[&format!("{key}:warm-up")],
            &options(1_000, Some(0)),
        )
        .await;
        let lock = acquire(&server, &locker, &[key], &options(10_000, Some(0))).await;
        let killed: i64 = server.query(&["CLIENT", "KILL", "TYPE", "normal"]);
        server.check(killed >= 1, "the locker's connection was killed");
        if key == "extended" {
            let extended = locker.extend(&lock, Duration::from_millis(20_000)).await;
            server.check(extended.is_ok(), format_args!("extend: {extended:?}"));
            server.check(pttl(&server, key) > 10_000, "the TTL was extended");
        } else {
            let released = locker.release(&lock).await;
            server.check_eq(released, Ok(true), "release");
            server.check(
                !exists(&server, key),
                "the lock is gone, not left to expire",
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_fails_at_once_naming_the_key_and_the_type() {
    let server = RedisServer::start();
    let locker = locker(&server);
    let _: i64 = server.query(&["HSET", "cart", "item", "1"]);
    let _: i64 = server.query(&["RPUSH", "queue", "job"]);
    let other_type = |key: &str, found: &str| LockError::KeyType {
        key: key.to_owned(),
        found: found.to_owned(),
    };

    let started = Instant::now();
    let one = refused(&server, &locker, &["cart"], &options(10_000, Some(10_000))).await;
    server.check_eq(one, other_type("cart", "hash"), "one key, with a wait");
    let both = refused(&server, &locker, &["free", "queue"], &options(10_000, None)).await;
    server.check_eq(
        both,
        other_type("queue", "list"),
        "the key of a multi-key lock",
    );
    server.check(started.elapsed() < SLACK, "a wait was waited out");
    server.check(!exists(&server, "free"), "a multi-key lock set a key");

    let held = acquire(&server, &locker, &["order", "job"], &options(10_000, None)).await;
    let _: i64 = server.query(&["DEL", "job"]);
    let _: i64 = server.query(&["SADD", "job", "member"]);
    let extended = locker.extend(&held, Duration::from_millis(10_000)).await;
    server.check_eq(
        extended.map(|_| ()),
        Err(other_type("job", "set")),
        "extend",
    );
    server.check_eq(
        locker.release(&held).await,
        Err(other_type("job", "set")),
        "release",
    );
}
