//! The Sentinel harness itself (`support/sentinel.rs`): one setup of a master, 2 replicas and 3
//! sentinels, walked through what the Sentinel tests do with it: ready, a failover, the old master
//! back as a replica.

mod support;

use ironlock_core::{SentinelConfig, Target};
use support::sentinel::{RedisSentinel, NAME};
use support::ShowsLogs;

#[test]
fn starts_fails_over_and_takes_the_old_master_back_as_a_replica() {
    let mut setup = RedisSentinel::start(2);
    let first = setup.master().port();
    let mut replicas: Vec<u16> = setup
        .replicas()
        .iter()
        .map(|replica| replica.port())
        .collect();
    replicas.sort_unstable();
    setup.check_eq(replicas.len(), 2, "replicas listed by the sentinels");
    setup.check(!replicas.contains(&first), "the master is no replica");
    let Target::Sentinel(SentinelConfig {
        sentinels, name, ..
    }) = setup.target()
    else {
        setup.fail("not a Sentinel target");
    };
    setup.check_eq(name.as_str(), NAME, "the target's master name");
    setup.check_eq(sentinels.len(), 3, "sentinels in the target");
    setup.check(
        sentinels
            .iter()
            .all(|sentinel| ![6379, 26379].contains(&sentinel.port)),
        "never the developer's own Redis or Sentinel ports",
    );
    setup.master().query::<()>(&["SET", "before", "1"]);

    let promoted = setup.fail_over().port();
    setup.check(replicas.contains(&promoted), "a replica was promoted");
    setup.check_eq(
        setup.master().port(),
        promoted,
        "the master after the failover",
    );
    let role: (String, i64, redis::Value) = setup.master().query(&["ROLE"]);
    setup.check_eq(role.0.as_str(), "master", "the promoted replica's ROLE");
    let value: Option<String> = setup.master().query(&["GET", "before"]);
    setup.check_eq(value.as_deref(), Some("1"), "a write from before the kill");
    setup.check_eq(setup.replicas().len(), 1, "replicas left in sync");

    let old = setup.restart_old().port();
    setup.check_eq(old, first, "the restarted master's port");
    setup.check_eq(
        setup.master().port(),
        promoted,
        "the master after the restart",
    );
    let rejoined: Vec<u16> = setup
        .replicas()
        .iter()
        .map(|replica| replica.port())
        .collect();
    setup.check(
        rejoined.contains(&first),
        format_args!("the old master is a replica again: {rejoined:?}"),
    );
}
