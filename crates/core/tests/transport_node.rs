//! The runtime's connection to one Redis node, against a real `redis-server`: connecting, script
//! calls Redis forgot, resends after a killed connection, and what each timeout bounds.

mod support;

use std::time::Duration;

use ironlock_core::protocol::resp::Reply;
use ironlock_core::protocol::script_call::ScriptCall;
use ironlock_core::protocol::scripts;
use ironlock_core::transport::node::{NodeConnection, Resend};
use ironlock_core::LockError;
use support::RedisServer;
use support::ShowsLogs;
use tokio::time::Instant;

/// Added to every upper time bound: the tests check behaviour, not the scheduler's latency.
const SLACK: Duration = Duration::from_millis(1_000);

fn connection(server: &RedisServer, connect: Duration, command: Duration) -> NodeConnection {
    NodeConnection::new(&server.node(), connect, command).expect("valid node")
}

/// How many of `keys` are held, asked with a read-only script.
async fn count_held(
    connection: &NodeConnection,
    keys: &[&str],
    resend: Resend,
) -> Result<Reply, LockError> {
    let mut call = ScriptCall::new(&scripts::COUNT_HELD, keys.len(), 0);
    for key in keys {
        call.key(key);
    }
    connection.run(keys[0], &call, resend).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_call_connects_and_runs_again_after_redis_forgot_its_script() {
    let server = RedisServer::start();
    let connection = connection(&server, SLACK, SLACK);
    let _: String = server.query(&["SET", "held", "someone"]);

    let first = count_held(&connection, &["held", "free"], Resend::Never).await;
    server.check_eq(first, Ok(Reply::Int(1)), "count on a fresh server");
    let _: String = server.query(&["SCRIPT", "FLUSH"]);
    let again = count_held(&connection, &["held", "free"], Resend::Never).await;
    server.check_eq(again, Ok(Reply::Int(1)), "count after SCRIPT FLUSH");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_may_go_again_survives_a_killed_connection() {
    let server = RedisServer::start();
    let connection = connection(&server, SLACK, SLACK);
    let warm_up = count_held(&connection, &["k"], Resend::OnDroppedConnection).await;
    server.check_eq(warm_up, Ok(Reply::Int(0)), "warm-up");

    let killed: i64 = server.query(&["CLIENT", "KILL", "TYPE", "normal"]);
    server.check(killed >= 1, "the connection was killed");
    let after = count_held(&connection, &["k"], Resend::OnDroppedConnection).await;
    server.check_eq(after, Ok(Reply::Int(0)), "the call after the kill");
}

/// A stalled Redis fails a command after `commandTimeout`, worded as the wire words it, however
/// long connecting may take: the connection was open already.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_node_fails_a_command_after_the_command_timeout() {
    let server = RedisServer::start();
    let (connect, command) = (Duration::from_millis(8_000), Duration::from_millis(300));
    let connection = connection(&server, connect, command);
    count_held(&connection, &["k"], Resend::Never)
        .await
        .expect("warm-up");

    server.pause();
    let started = Instant::now();
    let error = count_held(&connection, &["k"], Resend::OnDroppedConnection).await;
    let waited = started.elapsed();
    server.resume();

    server.check(
        waited >= command.mul_f64(0.9) && waited < command + SLACK,
        format_args!("a stalled node failed after {waited:?}"),
    );
    match error {
        Err(LockError::Connection { key, message }) => {
            server.check_eq(key.as_str(), "k", "error key");
            server.check(
                message.ends_with("no answer within 300 ms"),
                format_args!("message: {message}"),
            );
        }
        other => server.fail(format_args!("expected a connection error, got {other:?}")),
    }
    let recovered = count_held(&connection, &["k"], Resend::Never).await;
    server.check_eq(recovered, Ok(Reply::Int(0)), "after the node woke");
}

/// A call made before the connection is open waits for it first: at most `connectTimeout`, then
/// fails saying that no connection came, well before `connectTimeout + commandTimeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stalled_before_the_first_connect_fails_after_the_connect_timeout() {
    let server = RedisServer::start();
    let (connect, command) = (Duration::from_millis(300), Duration::from_millis(8_000));
    let connection = connection(&server, connect, command);

    server.pause();
    let started = Instant::now();
    let error = count_held(&connection, &["k"], Resend::Never).await;
    let waited = started.elapsed();
    server.resume();

    server.check(
        waited >= connect.mul_f64(0.9) && waited < connect + SLACK,
        format_args!("a stalled node failed after {waited:?}"),
    );
    match error {
        Err(LockError::Connection { message, .. }) => server.check(
            message.contains("no connection within 300 ms"),
            format_args!("message: {message}"),
        ),
        other => server.fail(format_args!("expected a connection error, got {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_refuses_calls() {
    let server = RedisServer::start();
    let connection = connection(&server, SLACK, SLACK);
    count_held(&connection, &["k"], Resend::Never)
        .await
        .expect("warm-up");
    connection.close();
    let error = count_held(&connection, &["k"], Resend::Never).await;
    server.check_eq(
        error,
        Err(LockError::Closed { key: "k".into() }),
        "a call after close",
    );
}
