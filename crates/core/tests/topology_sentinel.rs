//! Redis behind Sentinel (`Single::behind_sentinels`): the master found through the sentinels, a
//! failover followed without a call having to fail first (`+switch-master`), the wire's address
//! kept where the master is, and a lock that waited for a replica held across the promotion.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ironlock_core::topology::{for_target, Attempt, ReleaseListener};
use ironlock_core::LockKeys;
use ironlock_core::{AcquireOptions, Lifecycle, LockerConfig, Replicas};
use support::sentinel::RedisSentinel;
use support::ShowsLogs;

/// Long enough for a call to ride out a failover (about two to three seconds here).
const TIMEOUT: Duration = Duration::from_secs(5);
const TTL: Duration = Duration::from_secs(30);

struct Deaf;

impl ReleaseListener for Deaf {
    fn released(&self, _: &str, _: &str) {}
    fn resync(&self) {}
}

fn config(setup: &RedisSentinel) -> LockerConfig {
    LockerConfig {
        connect_timeout: TIMEOUT,
        command_timeout: TIMEOUT,
        ..LockerConfig::new(setup.target())
    }
}

fn address(setup: &RedisSentinel) -> Option<(String, u16)> {
    Some(("127.0.0.1".to_owned(), setup.master().port()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_follows_the_master_the_sentinels_announce_before_any_call_fails() {
    let mut setup = RedisSentinel::start(1);
    let listener: Arc<dyn ReleaseListener> = Arc::new(Deaf);
    let topology = for_target(&config(&setup), Arc::downgrade(&listener)).expect("valid target");
    setup.check_eq(
        topology.wire_address(),
        None,
        "unknown before the first call",
    );
    let keys = LockKeys::new("", ["found".to_owned()]);
    let token = "10c4ed00-0000-4000-8000-000000000001";
    let taken = topology
        .try_acquire(&keys, token, TTL, Replicas::NONE)
        .await;
    setup.check(
        matches!(taken, Ok(Attempt::Acquired { .. })),
        format_args!("{taken:?}"),
    );
    setup.check_eq(topology.wire_address(), address(&setup), "the master found");

    setup.fail_over();
    // No call was made: only the sentinels' announcement can have moved it.
    let moved = address(&setup);
    for _ in 0..100 {
        if topology.wire_address() == moved {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    setup.check_eq(topology.wire_address(), moved, "the master announced");
    topology.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_a_replica_acknowledged_is_held_on_the_promoted_master_and_the_same_locker_goes_on()
{
    let mut setup = RedisSentinel::start(2);
    let locker = Lifecycle::new(&config(&setup)).expect("valid target");
    let options = AcquireOptions {
        ttl: TTL,
        wait: None,
        cancel: None,
        replicas: Replicas {
            wanted: 1,
            timeout: Duration::from_secs(1),
        },
    };
    let lock = match locker
        .acquire(locker.keys(vec!["kept".into()]), &options)
        .await
    {
        Ok(lock) => lock,
        Err(error) => setup.fail(format_args!("acquire: {error:?}")),
    };

    let promoted = setup.fail_over().port();
    let stored: Option<String> = setup.master().query(&["GET", "kept"]);
    setup.check_eq(
        stored.as_deref(),
        Some(lock.token.as_str()),
        "the token on the new master",
    );
    let extended = locker.extend(&lock, TTL).await;
    setup.check(
        extended.is_ok(),
        format_args!("extend on {promoted}: {extended:?}"),
    );
    let at_once = AcquireOptions {
        wait: Some(Duration::ZERO),
        ..options.clone()
    };
    let other = locker
        .acquire(locker.keys(vec!["kept".into()]), &at_once)
        .await;
    setup.check(other.is_err(), format_args!("a second holder: {other:?}"));
    let released = locker.release(&lock).await;
    setup.check_eq(released, Ok(true), "release on the new master");
    let next = locker
        .acquire(locker.keys(vec!["kept".into()]), &options)
        .await;
    match next {
        Ok(next) => setup.check(next.fence > lock.fence, "the next fence is higher"),
        Err(error) => setup.fail(format_args!("acquire after the failover: {error:?}")),
    }
    locker.close();
}
