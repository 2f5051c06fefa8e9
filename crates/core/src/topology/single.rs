//! One Redis server, reached through a reconnecting multiplexed connection.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{
    Client, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisConnectionInfo, RedisError, Value,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::subscriber::Subscriber;
use super::{handed_key, Attempt, BoxFuture, HandOver, ReleaseListener, Topology};
use crate::config::NodeConfig;
use crate::error::{
    connect_timed_out, server_name, LockError, MAYBE_ONLY_TLS, NOT_REDIS, NOT_TLS, REFUSED,
};
use crate::protocol::keys::{release_channel, LockKeys};
use crate::protocol::resp;
use crate::protocol::script_call::{Naming, ScriptCall};
use crate::protocol::script_reply::{self, Refusal};
use crate::protocol::scripts;
use crate::transport::batch::{self, Batch, Reply};

/// Whether a script call that failed because the connection dropped goes once more.
#[derive(Clone, Copy)]
enum Resend {
    /// Compare-the-token scripts (release, extend): a second run does no harm, and a release
    /// that fails only because a connection was killed would leave the lock until its TTL.
    OnDroppedConnection,
    /// An attempt may have taken its lock before the connection dropped: only its token can
    /// tell, so it is given back instead (see `Lifecycle::attempt`).
    Never,
}

enum ConnectionState {
    Idle,
    Connected(ConnectionManager),
    Closed,
}

pub struct Single {
    server: Arc<Server>,
    subscriber: Arc<Subscriber>,
}

/// The connection and the request batches; shared with the tasks that flush the batches.
struct Server {
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
    state: Mutex<ConnectionState>,
    /// Serializes connection set-up so a burst of first calls opens one connection.
    connecting: tokio::sync::Mutex<()>,
    acquires: Batch<OneKeyAcquire, Attempt>,
    releases: Batch<OneKeyRelease, bool>,
    lifts: Batch<FenceLift, ()>,
}

/// A fencing counter to raise to at least `fence`, waiting in [`Server::lifts`].
struct FenceLift {
    name: String,
    counter: String,
    fence: String,
}

/// A one-key lock to take, waiting in [`Server::acquires`].
struct OneKeyAcquire {
    /// The key as the caller named it, for errors.
    name: String,
    key: String,
    fence_key: String,
    token: String,
    /// The TTL in ms, rendered once: the call borrows it.
    ttl_arg: String,
}

/// A key to delete if it still holds `token`, waiting in [`Server::releases`].
struct OneKeyRelease {
    name: String,
    key: String,
    channel: String,
    token: String,
}

impl Single {
    pub fn new(
        node: &NodeConfig,
        connect_timeout: Duration,
        command_timeout: Duration,
        listener: Weak<dyn ReleaseListener>,
    ) -> Result<Self, String> {
        let client = client_for(node).map_err(|error| redact(&error, node))?;
        Ok(Self {
            subscriber: Subscriber::new(
                client.clone(),
                connect_timeout + command_timeout,
                listener,
            ),
            server: Arc::new(Server {
                client,
                label: node.label(),
                name: server_name(&node.label(), node.origin),
                plain_address: node.tls.as_ref().map(|_| (node.host.clone(), node.port)),
                connect_timeout,
                command_timeout,
                state: Mutex::new(ConnectionState::Idle),
                connecting: tokio::sync::Mutex::new(()),
                acquires: Batch::default(),
                releases: Batch::default(),
                lifts: Batch::default(),
            }),
        })
    }

    /// `host:port` of the server, for errors.
    pub fn label(&self) -> &str {
        &self.server.label
    }

    /// How many of `keys` are held, by anyone (see [`scripts::COUNT_HELD`]).
    pub async fn count_held(&self, keys: &LockKeys) -> Result<u64, LockError> {
        let mut call = ScriptCall::new(&scripts::COUNT_HELD, keys.redis_keys.len(), 0);
        for key in &keys.redis_keys {
            call.key(key);
        }
        let reply = self.server.run(keys.first(), &call, Resend::Never).await?;
        script_reply::count_held(reply).map_err(|refusal| self.server.refused(&keys.names, refusal))
    }

    /// Runs one script of Redlock's own (the topology builds the call and reads the reply),
    /// not resent.
    pub(super) async fn run_script(
        &self,
        key: &str,
        call: &ScriptCall<'_>,
    ) -> Result<resp::Reply, LockError> {
        self.server.run(key, call, Resend::Never).await
    }

    /// Raises the fencing counters of `keys` to at least `fence` (see [`scripts::LIFT_FENCES`]),
    /// in the background. Lifts asked for together travel as one script call, which leaves
    /// before anything asked for later.
    pub fn lift_fences(&self, keys: &LockKeys, fence: u64) {
        let fence = fence.to_string();
        for counter in &keys.fence_keys {
            let (_, first) = self.server.lifts.push(FenceLift {
                name: keys.first().to_owned(),
                counter: counter.clone(),
                fence: fence.clone(),
            });
            if first {
                tokio::spawn(self.server.clone().flush_lifts());
            }
        }
    }
}

impl Server {
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
            .set_response_timeout(Some(self.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let tls = self.plain_address.is_some();
        let connect = async {
            tokio::select! {
                opened = ConnectionManager::new_with_config(self.client.clone(), config) => {
                    opened.map_err(|error| self.failure(key, connect_error(&error, tls)))
                }
                () = answers_in_plain_text(self.plain_address.as_ref()) => {
                    Err(self.failure(key, NOT_TLS.to_owned()))
                }
            }
        };
        let opened = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| self.failure(key, connect_timed_out(self.connect_timeout)))??;
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

    fn failure(&self, key: &str, message: String) -> LockError {
        LockError::connection(key, &self.name, &message)
    }

    /// The error of a script call for the lock of `names` that was refused with `refusal`.
    fn refused(&self, names: &[String], refusal: Refusal) -> LockError {
        LockError::refused(names, &self.name, refusal)
    }

    /// Runs one script call with a hard deadline, whatever state the connection is in. A script
    /// Redis does not know goes again with its source, as the protocol says.
    async fn run(
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
                .map_err(|error| self.failure(key, driver_error(&error)))
        };
        match tokio::time::timeout(self.connect_timeout + self.command_timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(self.failure(
                key,
                format!(
                    "no answer within {} ms",
                    (self.connect_timeout + self.command_timeout).as_millis()
                ),
            )),
        }
    }

    /// Queues a one-key acquire; its batch leaves once the tasks runnable now have queued theirs.
    async fn acquire_one(self: &Arc<Self>, item: OneKeyAcquire) -> Result<Attempt, LockError> {
        let name = item.name.clone();
        let (answer, first) = self.acquires.push(item);
        if first {
            tokio::spawn(self.clone().flush_acquires());
        }
        batch::answer(answer, &name).await
    }

    async fn release_one(self: &Arc<Self>, item: OneKeyRelease) -> Result<bool, LockError> {
        let name = item.name.clone();
        let (answer, first) = self.releases.push(item);
        if first {
            tokio::spawn(self.clone().flush_releases());
        }
        batch::answer(answer, &name).await
    }

    async fn flush_acquires(self: Arc<Self>) {
        let chunks = self.acquires.take();
        join_all(chunks.into_iter().map(|chunk| self.acquire_chunk(chunk))).await;
    }

    async fn flush_releases(self: Arc<Self>) {
        let chunks = self.releases.take();
        join_all(chunks.into_iter().map(|chunk| self.release_chunk(chunk))).await;
    }

    /// Nobody waits for a lift's answer: a failed one leaves a counter as it was.
    async fn flush_lifts(self: Arc<Self>) {
        let chunks = self.lifts.take();
        let server = &self;
        join_all(chunks.into_iter().map(|chunk| async move {
            let mut call = ScriptCall::new(&scripts::LIFT_FENCES, chunk.len(), chunk.len());
            for (lift, _) in &chunk {
                call.key(&lift.counter);
            }
            for (lift, _) in &chunk {
                call.arg(&lift.fence);
            }
            let _ = server
                .run(&chunk[0].0.name, &call, Resend::OnDroppedConnection)
                .await;
        }))
        .await;
    }

    async fn acquire_chunk(self: &Arc<Self>, chunk: Vec<(OneKeyAcquire, Reply<Attempt>)>) {
        let mut call = ScriptCall::new(&scripts::ACQUIRE_EACH, 2 * chunk.len(), 2 * chunk.len());
        for (item, _) in &chunk {
            call.key(&item.key).key(&item.fence_key);
        }
        for (item, _) in &chunk {
            call.arg(&item.token).arg(&item.ttl_arg);
        }
        let name = &chunk[0].0.name;
        let mut outcomes = self
            .run(name, &call, Resend::Never)
            .await
            .and_then(|reply| {
                script_reply::acquire_each(reply, chunk.len())
                    .map_err(|refusal| self.refused(std::slice::from_ref(name), refusal))
            });
        for (item, reply) in chunk {
            let outcome = match &mut outcomes {
                Ok(outcomes) => outcomes
                    .next()
                    .expect("one outcome per lock")
                    .map_err(|refusal| self.refused(std::slice::from_ref(&item.name), refusal)),
                Err(error) => Err(error.for_key(&item.name)),
            };
            if let Err(Ok(Attempt::Acquired { .. }) | Err(_)) = reply.send(outcome) {
                // Its caller gave up while the lock was being taken: give back whatever the
                // attempt may have set (a failed one may have, before Redis refused the rest).
                let server = self.clone();
                tokio::spawn(async move {
                    let _ = server
                        .release_one(OneKeyRelease {
                            channel: release_channel(&item.key),
                            name: item.name,
                            key: item.key,
                            token: item.token,
                        })
                        .await;
                });
            }
        }
    }

    async fn release_chunk(&self, chunk: Vec<(OneKeyRelease, Reply<bool>)>) {
        let mut call = ScriptCall::new(&scripts::RELEASE_EACH, chunk.len(), 2 * chunk.len());
        for (item, _) in &chunk {
            call.key(&item.key);
        }
        for (item, _) in &chunk {
            call.arg(&item.token).arg(&item.channel);
        }
        let name = &chunk[0].0.name;
        let mut outcomes = self
            .run(name, &call, Resend::OnDroppedConnection)
            .await
            .and_then(|reply| {
                script_reply::release_each(reply, chunk.len())
                    .map_err(|refusal| self.refused(std::slice::from_ref(name), refusal))
            });
        for (item, reply) in chunk {
            let outcome = match &mut outcomes {
                Ok(outcomes) => outcomes
                    .next()
                    .expect("one outcome per key")
                    .map_err(|refusal| self.refused(std::slice::from_ref(&item.name), refusal)),
                Err(error) => Err(error.for_key(&item.name)),
            };
            let _ = reply.send(outcome);
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

impl Topology for Single {
    fn try_acquire<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Attempt, LockError>> {
        Box::pin(async move {
            let ttl_arg = ttl.as_millis().to_string();
            if let ([key], [fence_key]) = (&keys.redis_keys[..], &keys.fence_keys[..]) {
                return self
                    .server
                    .acquire_one(OneKeyAcquire {
                        name: keys.first().to_owned(),
                        key: key.clone(),
                        fence_key: fence_key.clone(),
                        token: token.to_owned(),
                        ttl_arg,
                    })
                    .await;
            }
            let lock_keys = keys.redis_keys.len().to_string();
            let all_keys = keys.redis_keys.len() + keys.fence_keys.len();
            let mut call = ScriptCall::new(&scripts::ACQUIRE_ALL, all_keys, 3);
            for key in keys.redis_keys.iter().chain(&keys.fence_keys) {
                call.key(key);
            }
            call.arg(token).arg(&ttl_arg).arg(&lock_keys);
            let reply = self.server.run(keys.first(), &call, Resend::Never).await?;
            script_reply::acquire_all(reply)
                .map_err(|refusal| self.server.refused(&keys.names, refusal))
        })
    }

    /// Each key goes as its own release; every one must have been ours.
    fn release<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(async move {
            let releases = keys
                .redis_keys
                .iter()
                .zip(&keys.channels)
                .map(|(key, channel)| {
                    self.server.release_one(OneKeyRelease {
                        name: keys.first().to_owned(),
                        key: key.clone(),
                        channel: channel.clone(),
                        token: token.to_owned(),
                    })
                });
            let mut all_ours = true;
            for (released, name) in join_all(releases).await.into_iter().zip(&keys.names) {
                all_ours &= released.map_err(|error| match error {
                    // Each key went as a lock of its own, named by the first: name this one.
                    LockError::KeyType { found, .. } => LockError::KeyType {
                        key: name.clone(),
                        found,
                    },
                    other => other,
                })?;
            }
            Ok(all_ours)
        })
    }

    fn extend<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(async move {
            let ttl_arg = ttl.as_millis().to_string();
            let mut call = ScriptCall::new(&scripts::EXTEND, keys.redis_keys.len(), 2);
            for key in &keys.redis_keys {
                call.key(key);
            }
            call.arg(token).arg(&ttl_arg);
            let reply = self
                .server
                .run(keys.first(), &call, Resend::OnDroppedConnection)
                .await?;
            script_reply::extend(reply).map_err(|refusal| self.server.refused(&keys.names, refusal))
        })
    }

    fn hand_over<'a>(
        &'a self,
        keys: &'a LockKeys,
        old_token: &'a str,
        _old_fence: u64,
        new_token: &'a str,
        ttl: Duration,
        reserve: u64,
    ) -> BoxFuture<'a, Result<HandOver, LockError>> {
        Box::pin(async move {
            let (key, fence_key) = handed_key(keys)?;
            let (ttl_arg, reserve_arg) = (ttl.as_millis().to_string(), reserve.to_string());
            let mut call = ScriptCall::new(&scripts::HAND_OVER, 2, 4);
            call.key(key)
                .key(fence_key)
                .arg(old_token)
                .arg(new_token)
                .arg(&ttl_arg)
                .arg(&reserve_arg);
            // Not resent: a hand-over that ran gave the lock a new token; `Lifecycle::hand_over`
            // gives it back when the call fails.
            let reply = self.server.run(keys.first(), &call, Resend::Never).await?;
            script_reply::hand_over(reply, reserve)
                .map_err(|refusal| self.server.refused(&keys.names, refusal))
        })
    }

    fn watch_releases<'a>(
        &'a self,
        channels: &'a [String],
    ) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            let key = channels.first().map_or("", String::as_str);
            self.subscriber
                .watch(channels)
                .await
                .map_err(|message| self.server.failure(key, message))
        })
    }

    fn unwatch_releases(&self, channels: &[String]) {
        self.subscriber.unwatch(channels);
    }

    fn close(&self) {
        *self.server.state.lock().expect("connection state lock") = ConnectionState::Closed;
        self.subscriber.close();
    }
}

/// How long a TLS handshake may take before a plain-text question asks whether the server is a
/// Redis without TLS: far longer than a handshake takes, far shorter than the connect timeout
/// (10 s by default) that would otherwise be all a user hears.
const PLAIN_TEXT_PROBE_AFTER: Duration = Duration::from_millis(500);

/// Resolves once the server at `address` answers a plain-text PING as Redis does (`+PONG`, or an
/// error such as `-NOAUTH`), asked after [`PLAIN_TEXT_PROBE_AFTER`]; never for a TLS server, which
/// refuses plain text, nor without an address. A plain Redis often just waits for the rest of a
/// TLS greeting, which it reads as the start of a command, so only asking tells it apart.
async fn answers_in_plain_text(address: Option<&(String, u16)>) {
    if let Some((host, port)) = address {
        tokio::time::sleep(PLAIN_TEXT_PROBE_AFTER).await;
        if let Ok(mut socket) = tokio::net::TcpStream::connect((host.as_str(), *port)).await {
            let mut first = [0u8; 1];
            let answered = socket.write_all(b"PING\r\n").await.is_ok()
                && socket.read_exact(&mut first).await.is_ok();
            if answered && matches!(first[0], b'+' | b'-') {
                return;
            }
        }
    }
    std::future::pending().await
}

/// The driver's `error` while connecting, as users read it: with what to check when the reason
/// is known (nothing listens, TLS on one side only).
fn connect_error(error: &RedisError, tls: bool) -> String {
    if error.is_connection_refusal() {
        REFUSED.to_owned()
    } else if tls && is_plain_text_record(error) {
        NOT_TLS.to_owned()
    } else if !tls && error.is_connection_dropped() {
        MAYBE_ONLY_TLS.to_owned()
    } else {
        driver_error(error)
    }
}

/// The I/O error under `error`, which redis-rs keeps behind an `Arc`.
fn io_error(error: &RedisError) -> Option<&std::io::Error> {
    std::error::Error::source(error)?
        .downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()?
        .downcast_ref::<std::io::Error>()
}

/// Whether the TLS layer met bytes that are no TLS record: the server answered in plain text
/// (a Redis without TLS answers the greeting with `-ERR` once it reads a line end in it).
fn is_plain_text_record(error: &RedisError) -> bool {
    io_error(error)
        .and_then(std::io::Error::get_ref)
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| matches!(tls, rustls::Error::InvalidMessage(_)))
}

/// The driver's `error` as users read it: its parse error would show the bytes it choked on.
pub(super) fn driver_error(error: &RedisError) -> String {
    if error.kind() == ErrorKind::Parse {
        NOT_REDIS.to_owned()
    } else {
        error.to_string()
    }
}

fn client_for(node: &NodeConfig) -> Result<Client, RedisError> {
    if node.tls.is_some() {
        // Once per process; an `Err` only says another provider is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let mut redis = RedisConnectionInfo::default().set_db(node.db);
    if let Some(username) = &node.username {
        redis = redis.set_username(username);
    }
    if let Some(password) = &node.password {
        redis = redis.set_password(password.expose());
    }
    let addr = match &node.tls {
        None => ConnectionAddr::Tcp(node.host.clone(), node.port),
        Some(tls) => ConnectionAddr::TcpTls {
            host: node.host.clone(),
            port: node.port,
            insecure: !tls.reject_unauthorized,
            tls_params: None,
        },
    };
    let info = addr.into_connection_info()?.set_redis_settings(redis);
    match &node.tls {
        Some(tls) if tls.ca.is_some() || tls.cert.is_some() => Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: match (&tls.cert, &tls.key) {
                    (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
                    _ => None,
                },
                root_cert: tls.ca.clone(),
            },
        ),
        _ => Client::open(info),
    }
}

/// An error text with the node's password blanked, should a driver ever echo it.
fn redact(error: &RedisError, node: &NodeConfig) -> String {
    let text = error.to_string();
    match &node.password {
        Some(password) if !password.expose().is_empty() => text.replace(password.expose(), "***"),
        _ => text,
    }
}
