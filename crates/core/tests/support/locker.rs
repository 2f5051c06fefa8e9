//! A [`Lifecycle`] over one throwaway `redis-server`, and what the tests read back from Redis.

use std::time::Duration;

use ironlock_core::{
    AcquireOptions, HeldLock, Lifecycle, LockError, LockerConfig, Replicas, Target,
};

use super::{RedisServer, ShowsLogs};

/// Short enough that failure tests finish fast, long enough for a loaded CI machine.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);

pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(1_000);

/// Added to every upper time bound: the tests check behaviour, not the scheduler's latency.
pub const SLACK: Duration = Duration::from_millis(1_000);

pub fn config(server: &RedisServer) -> LockerConfig {
    LockerConfig {
        connect_timeout: CONNECT_TIMEOUT,
        command_timeout: COMMAND_TIMEOUT,
        ..LockerConfig::new(Target::Single(server.node()))
    }
}

pub fn locker(server: &RedisServer) -> Lifecycle {
    Lifecycle::new(&config(server)).expect("valid config")
}

pub fn names(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|&key| key.to_owned()).collect()
}

pub fn options(ttl_ms: u64, wait_ms: Option<u64>) -> AcquireOptions {
    AcquireOptions {
        ttl: Duration::from_millis(ttl_ms),
        wait: wait_ms.map(Duration::from_millis),
        cancel: None,
        replicas: Replicas::NONE,
    }
}

/// Fails the test (with the server log) unless the lock was taken.
pub async fn acquire(
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

/// Fails the test unless the lock was refused with an error.
pub async fn refused(
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

pub fn stored_token(server: &RedisServer, key: &str) -> Option<String> {
    server.query(&["GET", key])
}

pub fn exists(server: &RedisServer, key: &str) -> bool {
    server.query::<i64>(&["EXISTS", key]) == 1
}

pub fn pttl(server: &RedisServer, key: &str) -> i64 {
    server.query(&["PTTL", key])
}
