//! One Redis node reached through a reconnecting multiplexed redis-rs connection: connecting (TLS,
//! handshake), running script calls under the two timeouts, and resending what the protocol says
//! may go again. Every topology that talks to Redis nodes from the runtime builds on it.
//!
//! The timeouts mean the same as on the wire (`lib/wire.js`): `connect_timeout` bounds opening a
//! connection (TCP, TLS, AUTH and SELECT); `command_timeout` bounds each command from its sending
//! to its answer; a call made while the connection is still opening waits for it first, so no call
//! waits more than `connect_timeout + command_timeout` in all.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Value};

use super::connect::{answers_in_plain_text, client_for, connect_error, driver_error, redact};
use crate::config::NodeConfig;
use crate::error::{connect_timed_out, server_name, LockError, NOT_TLS};
use crate::protocol::replicas::Replicas;
use crate::protocol::resp;
use crate::protocol::script_call::{Naming, ScriptCall};
use crate::protocol::script_reply::Refusal;

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

enum ConnectionState {
    Idle,
    Connected(ConnectionManager),
    Closed,
}

pub struct NodeConnection {
    client: Client,
    /// `host:port`, as Redlock's votes name the node.
    label: String,
    /// How connection errors name the server (see [`server_name`]).
    name: String,
    /// With TLS, where to ask in plain text whether a Redis without TLS answers, when the
    /// handshake is slow to finish (see [`answers_in_plain_text`]).
    plain_address: Option<(String, u16)>,
    connect_timeout: Duration,
    command_timeout: Duration,
    /// redis-rs's own bound on each answer: `command_timeout`, except on a connection that
    /// waits for replicas, whose `WAIT` Redis holds on purpose (each call then has its own
    /// bound, see [`NodeConnection::run_then_wait`]).
    response_timeout: Option<Duration>,
    state: Mutex<ConnectionState>,
    /// Serializes connection set-up so a burst of first calls opens one connection.
    connecting: tokio::sync::Mutex<()>,
}

impl NodeConnection {
    /// Connects lazily, on the first call. The error says why `node` cannot be reached at all
    /// (an address redis-rs refuses), without its password.
    pub fn new(
        node: &NodeConfig,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Result<Self, String> {
        Ok(Self {
            client: client_for(node).map_err(|error| redact(&error, node))?,
            label: node.label(),
            name: server_name(&node.label(), node.origin),
            plain_address: node.tls.as_ref().map(|_| (node.host.clone(), node.port)),
            connect_timeout,
            command_timeout,
            response_timeout: Some(command_timeout),
            state: Mutex::new(ConnectionState::Idle),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// A connection of its own for the writes that wait for replicas ([`Self::run_then_wait`]):
    /// `WAIT` blocks the connection it runs on until it answers, and counts what that
    /// connection wrote, so it never shares the connection other calls use.
    pub fn for_replicated_writes(
        node: &NodeConfig,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Result<Self, String> {
        Ok(Self {
            response_timeout: None,
            ..Self::new(node, connect_timeout, command_timeout)?
        })
    }

    /// `host:port` of the node.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The client, for a connection of another kind to the same node (pub/sub).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The longest a call may wait: connecting, then the command.
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
    pub async fn run(
        &self,
        key: &str,
        call: &ScriptCall<'_>,
        resend: Resend,
    ) -> Result<resp::Reply, LockError> {
        let run = async {
            let mut connection = self.connection(key).await?;
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
                .map_err(|error| self.failure(key, &self.command_error(&error)))
        };
        // A hard deadline whatever happens inside: resends share the call's time.
        tokio::time::timeout(self.call_timeout(), run)
            .await
            .unwrap_or_else(|_| Err(self.failure(key, &self.no_answer())))
    }

    /// Runs one script call for the lock `key` followed at once by `WAIT` for `replicas` on the
    /// same connection (a pipeline, one round trip), and answers the script's reply with how many
    /// replicas acknowledged everything this connection wrote, the call included. Not resent
    /// after a dropped connection: only attempts and hand-overs wait, and their token decides.
    /// The call may take `replicas.timeout` longer than any other, the time `WAIT` may hold it.
    pub async fn run_then_wait(
        &self,
        key: &str,
        call: &ScriptCall<'_>,
        replicas: Replicas,
    ) -> Result<(resp::Reply, u32), LockError> {
        let run = async {
            let mut connection = self.connection(key).await?;
            let mut answers = send_then_wait(&mut connection, call, Naming::ByHash, replicas).await;
            if let Ok((Value::ServerError(error), _)) = &answers {
                if let Some(naming) = Naming::ByHash.resend_after(error.code()) {
                    answers = send_then_wait(&mut connection, call, naming, replicas).await;
                }
            }
            let (script, waited) =
                answers.map_err(|error| self.failure(key, &self.command_error(&error)))?;
            let reply = script
                .extract_error()
                .map(resp::Reply::from)
                .map_err(|error| self.failure(key, &self.command_error(&error)))?;
            let waited = waited
                .extract_error()
                .map(resp::Reply::from)
                .map_err(|error| self.failure(key, &self.command_error(&error)))?;
            let acknowledged = Replicas::acknowledged(&waited).ok_or_else(|| {
                self.failure(key, &format!("WAIT answered {waited:?}, not a count"))
            })?;
            Ok((reply, acknowledged))
        };
        tokio::time::timeout(self.call_timeout() + replicas.timeout, run)
            .await
            .unwrap_or_else(|_| Err(self.failure(key, &self.no_answer())))
    }

    /// Later calls fail with [`LockError::Closed`]; the connection ends with its last user.
    pub fn close(&self) {
        *self.state.lock().expect("connection state lock") = ConnectionState::Closed;
    }

    fn no_answer(&self) -> String {
        format!("no answer within {} ms", self.command_timeout.as_millis())
    }

    /// A failed command as users read it: a command that timed out says so as the wire does.
    fn command_error(&self, error: &RedisError) -> String {
        if error.is_timeout() {
            self.no_answer()
        } else {
            driver_error(error)
        }
    }

    async fn connection(&self, key: &str) -> Result<ConnectionManager, LockError> {
        if let Some(connection) = self.current(key)? {
            return Ok(connection);
        }
        let _guard = self.connecting.lock().await;
        if let Some(connection) = self.current(key)? {
            return Ok(connection);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(self.response_timeout)
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let tls = self.plain_address.is_some();
        let connect = async {
            tokio::select! {
                opened = ConnectionManager::new_with_config(self.client.clone(), config) => {
                    opened.map_err(|error| self.failure(key, &connect_error(&error, tls)))
                }
                () = answers_in_plain_text(self.plain_address.as_ref()) => {
                    Err(self.failure(key, NOT_TLS))
                }
            }
        };
        let opened = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| self.failure(key, &connect_timed_out(self.connect_timeout)))??;
        let mut state = self.state.lock().expect("connection state lock");
        match &*state {
            ConnectionState::Closed => Err(LockError::Closed {
                key: key.to_owned(),
            }),
            _ => {
                *state = ConnectionState::Connected(opened.clone());
                Ok(opened)
            }
        }
    }

    fn current(&self, key: &str) -> Result<Option<ConnectionManager>, LockError> {
        match &*self.state.lock().expect("connection state lock") {
            ConnectionState::Idle => Ok(None),
            ConnectionState::Connected(connection) => Ok(Some(connection.clone())),
            ConnectionState::Closed => Err(LockError::Closed {
                key: key.to_owned(),
            }),
        }
    }
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

/// Sends `call` named `naming`-wise and `WAIT` for `replicas` right behind it, in one pipeline:
/// the script's answer and `WAIT`'s.
async fn send_then_wait(
    connection: &mut ConnectionManager,
    call: &ScriptCall<'_>,
    naming: Naming,
    replicas: Replicas,
) -> Result<(Value, Value), RedisError> {
    let mut script = redis::Cmd::new();
    for word in call.command(naming) {
        script.arg(word);
    }
    let mut pipeline = redis::pipe();
    pipeline
        .add_command(script)
        .cmd("WAIT")
        .arg(&replicas.wait_args());
    let mut answers = connection
        .send_packed_commands(&pipeline, 0, 2)
        .await?
        .into_iter();
    match (answers.next(), answers.next()) {
        (Some(script), Some(waited)) => Ok((script, waited)),
        _ => Err(RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "a script call and WAIT answered with fewer than two replies",
        ))),
    }
}
