//! One Redis node reached through a reconnecting multiplexed redis-rs connection: connecting (TLS,
//! handshake), running script calls under the two timeouts, and resending what the protocol says
//! may go again. Every topology that talks to Redis nodes from the runtime builds on it. The node
//! may also be whichever server the sentinels name master ([`Dial::Master`]): a connection then
//! checks it reached a master, and a call that meets a failover goes again on the new one.
//!
//! The timeouts mean the same as on the wire (`lib/wire.js`): `connect_timeout` bounds opening a
//! connection (TCP, TLS, AUTH and SELECT); `command_timeout` bounds each command from its sending
//! to its answer; a call made while the connection is still opening waits for it first, so no call
//! waits more than `connect_timeout + command_timeout` in all.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Value};
use tokio::time::Instant;

use super::connect::{answers_in_plain_text, connect_error, driver_error};
use super::dial::{Dial, Dialled};
use super::sentinel::Sentinels;
use super::slot::Slot;
use crate::config::NodeConfig;
use crate::error::{connect_timed_out, server_name, LockError, NOT_TLS};
use crate::protocol::replicas::Replicas;
use crate::protocol::resp;
use crate::protocol::script_call::{Naming, ScriptCall};
use crate::protocol::script_reply::Refusal;
use crate::topology::BoxFuture;

/// Whether a script call that failed because the connection dropped goes once more.
#[derive(Clone, Copy)]
pub enum Resend {
    /// Compare-the-token scripts (release, extend, lifts): a second run does no harm, and a
    /// release that fails only because a connection was killed would leave the lock until its TTL.
    OnDroppedConnection,
    /// An attempt may have taken its lock before the connection dropped: only its token can
    /// tell, so the caller gives it back instead.
    Never,
}

/// The pause before a call that met a failover goes again (ioredis's `retryDelayOnFailover`).
const FAILOVER_PAUSE: Duration = Duration::from_millis(100);

/// A call that failed, and whether the server it went to may no longer be the master.
struct Failure {
    error: LockError,
    /// The connection it failed on, to forget if the master may have moved.
    connection: Option<u64>,
    master_may_have_moved: bool,
}

pub struct NodeConnection {
    dial: Dial,
    /// `host:port`, as Redlock's votes name the node (behind Sentinel: the master's name).
    label: String,
    /// How connection errors name the server (see [`server_name`]).
    name: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    /// redis-rs's own bound on each answer: `command_timeout`, except on a connection that
    /// waits for replicas, whose `WAIT` Redis holds on purpose (each call then has its own
    /// bound, see [`NodeConnection::run_then_wait`]).
    response_timeout: Option<Duration>,
    slot: Slot<ConnectionManager>,
}

impl NodeConnection {
    /// Connects lazily, on the first call. The error says why `node` cannot be reached at all
    /// (an address redis-rs refuses), without its password.
    pub fn new(
        node: &NodeConfig,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Result<Self, String> {
        Ok(Self::dialling(
            Dial::node(node)?,
            node.label(),
            server_name(&node.label(), node.origin),
            connect_timeout,
            command_timeout,
        ))
    }

    /// A connection to whichever server the sentinels name master, found again after a
    /// failover; connects lazily, on the first call.
    pub fn to_master(
        sentinels: &Arc<Sentinels>,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Self {
        let label = sentinels.label().to_owned();
        Self::dialling(
            Dial::Master(sentinels.clone()),
            label.clone(),
            label,
            connect_timeout,
            command_timeout,
        )
    }

    fn dialling(
        dial: Dial,
        label: String,
        name: String,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Self {
        Self {
            dial,
            label,
            name,
            connect_timeout,
            command_timeout,
            response_timeout: Some(command_timeout),
            slot: Slot::default(),
        }
    }

    /// The same server's connection of its own for the writes that wait for replicas
    /// ([`Self::run_then_wait`]): `WAIT` blocks the connection it runs on until it answers,
    /// and counts what that connection wrote, so it never shares the connection other calls use.
    pub fn for_replicated_writes(&self) -> Self {
        Self {
            response_timeout: None,
            ..Self::dialling(
                self.dial.clone(),
                self.label.clone(),
                self.name.clone(),
                self.connect_timeout,
                self.command_timeout,
            )
        }
    }

    /// `host:port` of the node.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Where this connection goes, for a connection of another kind to the same server (pub/sub).
    pub fn dial(&self) -> &Dial {
        &self.dial
    }

    /// The longest a call may wait: connecting, then the command (behind Sentinel, a
    /// failover's retries included).
    pub fn call_timeout(&self) -> Duration {
        self.connect_timeout + self.command_timeout
    }

    /// A connection error of the lock `key` on this node.
    pub fn failure(&self, key: &str, message: &str) -> LockError {
        LockError::connection(key, &self.name, message)
    }

    /// The error of a script call for the lock of `names` that was refused with `refusal`.
    pub fn refused(&self, names: &[String], refusal: Refusal) -> LockError {
        LockError::refused(names, &self.name, refusal)
    }

    /// Runs one script call for the lock `key`, connecting first if needed (see the module's
    /// timeouts). A script Redis does not know goes again with its source, as the protocol says.
    /// Behind Sentinel, a call that met a failover goes again on the new master (the protocol's
    /// scripts allow it: an attempt finding its own token took the key).
    pub async fn run(
        &self,
        key: &str,
        call: &ScriptCall<'_>,
        resend: Resend,
    ) -> Result<resp::Reply, LockError> {
        // Behind Sentinel the call goes again on a new connection, to the master found anew.
        let resend = if self.dial.follows_failovers() {
            Resend::Never
        } else {
            resend
        };
        self.until_answered(key, Duration::ZERO, || async move {
            let (mut connection, number) = self.connection(key).await?;
            let mut answer = send(&mut connection, call, Naming::ByHash, resend).await;
            if let Ok(Value::ServerError(error)) = &answer {
                if let Some(naming) = Naming::ByHash.resend_after(error.code()) {
                    answer = send(&mut connection, call, naming, resend).await;
                }
            }
            // A refusal as redis-rs words it, as before the protocol read the replies.
            answer
                .and_then(Value::extract_error)
                .map(resp::Reply::from)
                .map_err(|error| self.command_failed(key, number, &error))
        })
        .await
    }

    /// Runs one script call for the lock `key` followed at once by `WAIT` for `replicas` on the
    /// same connection (a pipeline, one round trip), and answers the script's reply with how many
    /// replicas acknowledged everything this connection wrote, the call included. Not resent
    /// after a dropped connection (only attempts and hand-overs wait, and their token decides),
    /// except behind Sentinel, on the new master, as [`Self::run`] does. The call may take
    /// `replicas.timeout` longer than any other, the time `WAIT` may hold it.
    pub async fn run_then_wait(
        &self,
        key: &str,
        call: &ScriptCall<'_>,
        replicas: Replicas,
    ) -> Result<(resp::Reply, u32), LockError> {
        let (answers, acknowledged) = self.run_each_then_wait(key, &[call], replicas).await?;
        let answer = answers.into_iter().next().ok_or_else(|| {
            self.failure(
                key,
                "a script call and WAIT answered with fewer than two replies",
            )
        })?;
        let reply = answer.map_err(|error| self.call_error(key, &error))?;
        Ok((reply, acknowledged))
    }

    /// [`Self::run_then_wait`] for several calls in one pipeline with one `WAIT` behind them all:
    /// each call's reply, or the error Redis answered it with (a Redis Cluster's redirections
    /// among them, for the caller to follow), and how many replicas acknowledged them all. A
    /// call whose script Redis did not know goes again with its source, with `WAIT` again.
    pub async fn run_each_then_wait(
        &self,
        key: &str,
        calls: &[&ScriptCall<'_>],
        replicas: Replicas,
    ) -> Result<(Vec<Result<resp::Reply, RedisError>>, u32), LockError> {
        self.until_answered(key, replicas.timeout, || async move {
            let (mut connection, number) = self.connection(key).await?;
            let failed = |error: RedisError| self.command_failed(key, number, &error);
            let sent = send_each_then_wait(
                &mut connection,
                calls.iter().copied(),
                Naming::ByHash,
                replicas,
            );
            let (mut answers, mut waited) = sent.await.map_err(failed)?;
            let unknown: Vec<usize> = (0..answers.len())
                .filter(|&index| unknown_script(&answers[index]))
                .collect();
            if !unknown.is_empty() {
                let again = unknown.iter().map(|&index| calls[index]);
                let resent =
                    send_each_then_wait(&mut connection, again, Naming::WithSource, replicas);
                let (resent, resent_waited) = resent.await.map_err(failed)?;
                for (index, answer) in unknown.into_iter().zip(resent) {
                    answers[index] = answer;
                }
                // The later WAIT counts everything the connection wrote, the first calls included.
                waited = resent_waited;
            }
            let waited = waited
                .extract_error()
                .map(resp::Reply::from)
                .map_err(failed)?;
            let acknowledged = Replicas::acknowledged(&waited).ok_or_else(|| {
                Failure::final_(
                    self.failure(key, &format!("WAIT answered {waited:?}, not a count")),
                )
            })?;
            let mut replies = Vec::with_capacity(answers.len());
            for answer in answers {
                match answer.extract_error() {
                    Ok(reply) => replies.push(Ok(resp::Reply::from(reply))),
                    Err(error) => {
                        // Behind Sentinel, a call a demoted master refused goes again whole.
                        let failure = failed(error.clone());
                        if failure.master_may_have_moved && self.dial.follows_failovers() {
                            return Err(failure);
                        }
                        replies.push(Err(error));
                    }
                }
            }
            Ok((replies, acknowledged))
        })
        .await
    }

    /// The error of the lock `key` for a call that failed with `error`, as users read it.
    pub fn call_error(&self, key: &str, error: &RedisError) -> LockError {
        self.failure(key, &self.command_message(error))
    }

    /// Drops the connection: the next call opens another (behind Sentinel, to the master
    /// found anew).
    pub fn reconnect(&self) {
        self.slot.forget_current();
    }

    /// Later calls fail with [`LockError::Closed`]; the connection ends with its last user.
    pub fn close(&self) {
        self.slot.close();
    }

    /// Runs `once` until it answers, within the call's time and `extra`. Only behind Sentinel
    /// does a failure that a failover explains go again, on a new connection, after a pause.
    async fn until_answered<T, F, O>(
        &self,
        key: &str,
        extra: Duration,
        once: F,
    ) -> Result<T, LockError>
    where
        F: Fn() -> O,
        O: std::future::Future<Output = Result<T, Failure>>,
    {
        let deadline = Instant::now() + self.call_timeout() + extra;
        let mut last_failure = None;
        let attempts = async {
            loop {
                match once().await {
                    Err(failure)
                        if failure.master_may_have_moved
                            && self.dial.follows_failovers()
                            && Instant::now() + FAILOVER_PAUSE < deadline =>
                    {
                        if let Some(number) = failure.connection {
                            self.slot.forget(number);
                        }
                        last_failure = Some(failure.error);
                        tokio::time::sleep(FAILOVER_PAUSE).await;
                    }
                    outcome => return outcome.map_err(|failure| failure.error),
                }
            }
        };
        // A hard deadline whatever happens inside: resends share the call's time.
        tokio::time::timeout_at(deadline, attempts)
            .await
            .unwrap_or_else(|_| {
                Err(last_failure.unwrap_or_else(|| self.failure(key, &self.no_answer())))
            })
    }

    fn no_answer(&self) -> String {
        format!("no answer within {} ms", self.command_timeout.as_millis())
    }

    /// A failed command as users read it: a command that timed out says so as the wire does.
    fn command_message(&self, error: &RedisError) -> String {
        if error.is_timeout() {
            self.no_answer()
        } else {
            driver_error(error)
        }
    }

    /// A failed command of connection `number`, and whether a failover may explain it.
    fn command_failed(&self, key: &str, number: u64, error: &RedisError) -> Failure {
        Failure {
            error: self.call_error(key, error),
            connection: Some(number),
            // Not a timeout: the server may be alive but stalled, and the call's time is up.
            master_may_have_moved: !error.is_timeout()
                && (error.is_io_error()
                    || error.is_connection_dropped()
                    || error.is_connection_refusal()
                    || matches!(error.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))),
        }
    }

    /// The connection and its number, opened first if needed; behind Sentinel, checked to
    /// reach a master.
    async fn connection(&self, key: &str) -> Result<(ConnectionManager, u64), Failure> {
        self.slot
            .get_or_open(key, || self.open(key))
            .await
            .map_err(|error| Failure {
                master_may_have_moved: !matches!(error, LockError::Closed { .. }),
                error,
                connection: None,
            })
    }

    async fn open(&self, key: &str) -> Result<ConnectionManager, LockError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(self.response_timeout)
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connect = async {
            let dialled = self
                .dial
                .dial()
                .await
                .map_err(|message| self.failure(key, &message))?;
            let tls = dialled.tls;
            let mut opened = tokio::select! {
                opened = ConnectionManager::new_with_config(dialled.client.clone(), config) => {
                    opened.map_err(|error| self.failure(key, &connect_error(&error, tls)))?
                }
                () = answers_in_plain_text(dialled.plain_address()) => {
                    return Err(self.failure(key, NOT_TLS));
                }
            };
            if self.dial.follows_failovers() {
                check_master(&mut opened, &dialled)
                    .await
                    .map_err(|message| self.failure(key, &message))?;
            }
            Ok(opened)
        };
        // Boxed: finding the master nests futures deep enough that the topologies' own, which
        // nest this one, overflow rustc's limits.
        let connect: BoxFuture<'_, Result<ConnectionManager, LockError>> = Box::pin(connect);
        tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| self.failure(key, &connect_timed_out(self.connect_timeout)))?
    }
}

impl Failure {
    /// A failure no failover explains.
    fn final_(error: LockError) -> Self {
        Self {
            error,
            connection: None,
            master_may_have_moved: false,
        }
    }
}

/// Whether the server `connection` reached calls itself master: a master the sentinels just
/// named may already have been demoted, or be a restarted old master they have not yet told.
async fn check_master(connection: &mut ConnectionManager, dialled: &Dialled) -> Result<(), String> {
    let role: Value = redis::cmd("ROLE")
        .query_async(connection)
        .await
        .map_err(|error| driver_error(&error))?;
    let said = match &role {
        Value::Array(words) => match words.first() {
            Some(Value::BulkString(word)) => String::from_utf8_lossy(word).into_owned(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    if said == "master" {
        return Ok(());
    }
    let (host, port) = &dialled.address;
    Err(format!(
        "{host}:{port} is not the master (ROLE says {said:?})"
    ))
}

/// Sends `call` named `naming`-wise, once more on a new connection if `resend` says so.
async fn send(
    connection: &mut ConnectionManager,
    call: &ScriptCall<'_>,
    naming: Naming,
    resend: Resend,
) -> Result<Value, RedisError> {
    let mut command = redis::Cmd::new();
    for word in call.command(naming) {
        command.arg(word);
    }
    let mut answer = connection.send_packed_command(&command).await;
    if let (Resend::OnDroppedConnection, Err(error)) = (resend, &answer) {
        // The manager replaces a dropped connection; the call goes once more on the new one.
        if error.is_connection_dropped() {
            answer = connection.send_packed_command(&command).await;
        }
    }
    answer
}

/// Whether Redis answered a script call that it does not know the script (see [`Naming`]).
fn unknown_script(answer: &Value) -> bool {
    matches!(answer, Value::ServerError(error) if Naming::ByHash.resend_after(error.code()).is_some())
}

/// Sends `calls` named `naming`-wise and `WAIT` for `replicas` right behind them, in one
/// pipeline: each script's answer and `WAIT`'s.
async fn send_each_then_wait<'c>(
    connection: &mut ConnectionManager,
    calls: impl Iterator<Item = &'c ScriptCall<'c>>,
    naming: Naming,
    replicas: Replicas,
) -> Result<(Vec<Value>, Value), RedisError> {
    let mut pipeline = redis::pipe();
    let mut count = 0;
    for call in calls {
        let mut script = redis::Cmd::new();
        for word in call.command(naming) {
            script.arg(word);
        }
        pipeline.add_command(script);
        count += 1;
    }
    pipeline.cmd("WAIT").arg(&replicas.wait_args());
    let mut answers = connection
        .send_packed_commands(&pipeline, 0, count + 1)
        .await?;
    match answers.pop() {
        Some(waited) if answers.len() == count => Ok((answers, waited)),
        _ => Err(RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "script calls and WAIT answered with fewer replies than were sent",
        ))),
    }
}
