//! One Redis server, reached through a reconnecting multiplexed connection.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisError, Script};

use super::subscriber::Subscriber;
use super::{Attempt, Backend, BoxFuture};
use crate::config::NodeConfig;
use crate::error::LockError;
use crate::keys::LockKeys;
use crate::scripts;
use crate::wait::ReleaseListener;

enum ConnectionState {
    Idle,
    Connected(ConnectionManager),
    Closed,
}

pub struct SingleBackend {
    client: Client,
    label: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    state: Mutex<ConnectionState>,
    subscriber: Arc<Subscriber>,
    /// Serializes connection set-up so a burst of first calls opens one connection.
    connecting: tokio::sync::Mutex<()>,
}

impl SingleBackend {
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
            client,
            label: node.label(),
            connect_timeout,
            command_timeout,
            state: Mutex::new(ConnectionState::Idle),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// `host:port` of the server, for errors.
    pub fn label(&self) -> &str {
        &self.label
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
            .set_response_timeout(Some(self.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let opened = tokio::time::timeout(
            self.connect_timeout,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| {
            self.failure(
                key,
                format!(
                    "connect timed out after {} ms",
                    self.connect_timeout.as_millis()
                ),
            )
        })?
        .map_err(|error| self.failure(key, error.to_string()))?;
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
        LockError::Connection {
            key: key.to_owned(),
            message: format!("{}: {message}", self.label),
        }
    }

    /// Runs one script with a hard deadline, whatever state the connection is in.
    async fn run<T: redis::FromRedisValue>(
        &self,
        key: &str,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, LockError> {
        let call = async {
            let mut connection = self.connection(key).await?;
            invocation
                .invoke_async(&mut connection)
                .await
                .map_err(|error| self.failure(key, error.to_string()))
        };
        match tokio::time::timeout(self.connect_timeout + self.command_timeout, call).await {
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
}

fn invocation<'a>(script: &'a Script, keys: &[String]) -> redis::ScriptInvocation<'a> {
    let mut invocation = script.prepare_invoke();
    for key in keys {
        invocation.key(key);
    }
    invocation
}

impl Backend for SingleBackend {
    fn try_acquire<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Attempt, LockError>> {
        Box::pin(async move {
            let mut call = invocation(&scripts::ACQUIRE, &keys.redis_keys);
            for counter in &keys.fence_keys {
                call.key(counter);
            }
            call.arg(token)
                .arg(ttl.as_millis() as u64)
                .arg(keys.redis_keys.len());
            let (taken, value): (i64, i64) = self.run(keys.first(), call).await?;
            Ok(if taken == 1 {
                Attempt::Acquired {
                    fence: value as u64,
                }
            } else {
                Attempt::Busy {
                    retry_after: (value >= 0).then(|| Duration::from_millis(value as u64)),
                }
            })
        })
    }

    fn release<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(async move {
            let mut call = invocation(&scripts::RELEASE, &keys.redis_keys);
            call.arg(token);
            for channel in &keys.channels {
                call.arg(channel);
            }
            let released: usize = self.run(keys.first(), call).await?;
            Ok(released == keys.redis_keys.len())
        })
    }

    fn extend<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(async move {
            let mut call = invocation(&scripts::EXTEND, &keys.redis_keys);
            call.arg(token).arg(ttl.as_millis() as u64);
            let extended: i64 = self.run(keys.first(), call).await?;
            Ok(extended == 1)
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
                .map_err(|message| self.failure(key, message))
        })
    }

    fn unwatch_releases(&self, channels: &[String]) {
        self.subscriber.unwatch(channels);
    }

    fn close(&self) {
        *self.state.lock().expect("connection state lock") = ConnectionState::Closed;
        self.subscriber.close();
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
