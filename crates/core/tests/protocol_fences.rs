//! How the scripts draw fencing tokens, against a real `redis-server`: a counter behind the
//! server's clock takes the clock, one ahead of it counts on, locks of one slot in one call (which
//! read the clock once) still get fences in order, and a counter that holds no number is refused
//! as before.

mod support;

use ironlock_core::protocol::scripts;
use redis::Value;
use support::RedisServer;
use support::ShowsLogs;

const COUNTER: &str = "ironlock:fence:{a}";
/// A token of the length and mark of ironlock's own.
const TOKEN: &str = "10c4ed00-0000-4000-8000-000000000000";
/// Ahead of the microsecond clock until the year 2096, and exact in a Lua number.
const FAR_AHEAD: u64 = 4_000_000_000_000_000;

/// The server's clock in microseconds.
fn server_clock(server: &RedisServer) -> u64 {
    let (seconds, micros): (u64, u64) = server.query(&["TIME"]);
    seconds * 1_000_000 + micros
}

/// Runs ACQUIRE_EACH for `locks` (lock key, counter) in one call: two values per lock.
fn acquire_each(server: &RedisServer, locks: &[(&str, &str)]) -> Vec<Value> {
    let count = (2 * locks.len()).to_string();
    let mut command = vec!["EVAL", scripts::ACQUIRE_EACH.source(), &count];
    command.extend(locks.iter().flat_map(|(key, counter)| [*key, *counter]));
    command.extend(locks.iter().flat_map(|_| [TOKEN, "10000"]));
    server.query(&command)
}

/// The fences of `locks` taken in one call, failing unless every lock was taken.
fn fences(server: &RedisServer, locks: &[(&str, &str)]) -> Vec<u64> {
    let reply = acquire_each(server, locks);
    reply
        .chunks(2)
        .map(|pair| match pair {
            [Value::Int(1), Value::Int(fence)] => *fence as u64,
            _ => server.fail(format_args!("not taken: {reply:?}")),
        })
        .collect()
}

fn counter(server: &RedisServer) -> u64 {
    server.query(&["GET", COUNTER])
}

#[test]
fn a_counter_behind_the_clock_takes_the_clock() {
    let server = RedisServer::start();
    let _: () = server.query(&["SET", COUNTER, "5"]);
    let before = server_clock(&server);
    let [fence] = fences(&server, &[("{a}one", COUNTER)])[..] else {
        unreachable!("one lock, one fence")
    };
    let after = server_clock(&server);
    server.check(
        (before..=after).contains(&fence),
        format_args!("fence {fence} outside the clock's {before}..={after}"),
    );
    server.check_eq(counter(&server), fence, "the counter");
}

#[test]
fn a_counter_ahead_of_the_clock_counts_on() {
    let server = RedisServer::start();
    let ahead = FAR_AHEAD.to_string();
    let _: () = server.query(&["SET", COUNTER, &ahead]);
    let taken = fences(&server, &[("{a}one", COUNTER)]);
    server.check_eq(taken, vec![FAR_AHEAD + 1], "the fence");

    // A hand-over chain's block counts on too: 64 tokens above the last.
    let _: () = server.query(&["SET", "{a}one", TOKEN]);
    let block: Vec<u64> = server.query(&[
        "EVAL",
        scripts::HAND_OVER.source(),
        "2",
        "{a}one",
        COUNTER,
        TOKEN,
        "10c4ed00-0000-4000-8000-000000000001",
        "10000",
        "64",
    ]);
    server.check_eq(block, vec![1, FAR_AHEAD + 65], "the hand-over's block");
    server.check_eq(counter(&server), FAR_AHEAD + 65, "the counter");
}

#[test]
fn locks_of_one_slot_in_one_call_get_fences_in_order() {
    let server = RedisServer::start();
    let before = server_clock(&server);
    let taken = fences(
        &server,
        &[
            ("{a}one", COUNTER),
            ("{a}two", COUNTER),
            ("{b}three", "ironlock:fence:{b}"),
            ("{a}four", COUNTER),
        ],
    );
    // The call read the clock once: the slot's later locks count on from its first.
    server.check(taken[0] >= before, format_args!("{taken:?} from {before}"));
    server.check_eq(
        vec![taken[1], taken[3]],
        vec![taken[0] + 1, taken[0] + 2],
        "fences of slot {a}",
    );
    server.check(taken[2] >= before, format_args!("{taken:?} from {before}"));
    server.check_eq(counter(&server), taken[0] + 2, "the counter");
}

#[test]
fn a_counter_that_holds_no_number_is_refused_and_kept() {
    let server = RedisServer::start();
    let _: () = server.query(&["SET", COUNTER, "not a number"]);
    let reply = acquire_each(
        &server,
        &[("{a}one", COUNTER), ("{b}two", "ironlock:fence:{b}")],
    );
    match &reply[..] {
        [Value::Int(-1), Value::BulkString(message), Value::Int(1), Value::Int(_)] => {
            let message = String::from_utf8_lossy(message);
            server.check(
                message.contains("not an integer"),
                format_args!("the refusal: {message}"),
            );
        }
        _ => server.fail(format_args!("unexpected reply {reply:?}")),
    }
    let kept: String = server.query(&["GET", COUNTER]);
    server.check_eq(kept.as_str(), "not a number", "the counter");
}
