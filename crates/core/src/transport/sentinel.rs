//! Redis Sentinel: where the master the sentinels name is now, and word when they move it.
//!
//! Finding the master is redis-rs's (`SentinelClient`: it asks the sentinels, skips a master they
//! think down, and checks with `ROLE` that the server it found calls itself master). What it
//! lacks for a lock is word of a failover the moment it happens: this watches `+switch-master` on
//! every sentinel, and remembers where the master was last seen, for the wire
//! ([`crate::topology::Topology::wire_address`]) to dial.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, RedisError, TlsMode};

use super::connect::{certificates, client_for, driver_error};
use crate::config::{NodeConfig, SentinelConfig};
use crate::error::connect_timed_out;

/// The sentinels' channel that announces a failover's new master.
const SWITCH_MASTER: &str = "+switch-master";
const RESUBSCRIBE_MIN_DELAY: Duration = Duration::from_millis(50);
const RESUBSCRIBE_MAX_DELAY: Duration = Duration::from_secs(2);

/// What to do once the sentinels moved the master (see [`Sentinels::on_switch`]).
pub type OnSwitch = Box<dyn Fn() + Send + Sync>;

pub struct Sentinels {
    finder: tokio::sync::Mutex<SentinelClient>,
    config: SentinelConfig,
    /// `sentinel[host:port, …]/name`: how errors name the master.
    label: String,
    connect_timeout: Duration,
    /// Where the master was last found or announced.
    current: Mutex<Option<(String, u16)>>,
    on_switch: OnceLock<OnSwitch>,
    /// The tasks that listen to each sentinel's `+switch-master`, started with the first lookup.
    watchers: Mutex<Watchers>,
}

#[derive(Default)]
struct Watchers {
    started: bool,
    closed: bool,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Sentinels {
    /// Connects lazily, on the first lookup. The error says why `config` cannot be used at all,
    /// without a password.
    pub fn new(config: &SentinelConfig, connect_timeout: Duration) -> Result<Arc<Self>, String> {
        Ok(Arc::new(Self {
            finder: tokio::sync::Mutex::new(
                finder(config).map_err(|error| redact(error.to_string(), config))?,
            ),
            config: config.clone(),
            label: config.label(),
            connect_timeout,
            current: Mutex::new(None),
            on_switch: OnceLock::new(),
            watchers: Mutex::default(),
        }))
    }

    /// `sentinel[host:port, …]/name`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs `on_switch` each time the sentinels announce a new master. Set once.
    pub fn on_switch(&self, on_switch: OnSwitch) {
        let _ = self.on_switch.set(on_switch);
    }

    /// The master as the sentinels name it now, checked to call itself master, within the
    /// connect timeout: the node to dial, with the master's credentials and TLS settings.
    pub async fn master(self: &Arc<Self>) -> Result<NodeConfig, String> {
        self.watch_switches();
        let lookup = async { self.finder.lock().await.async_get_client().await };
        let client = tokio::time::timeout(self.connect_timeout, lookup)
            .await
            .map_err(|_| {
                format!(
                    "no sentinel named the master: {}",
                    connect_timed_out(self.connect_timeout)
                )
            })?
            .map_err(|error| self.not_found(&error))?;
        let (host, port) = match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                (host.clone(), *port)
            }
            other => return Err(format!("the sentinels named a master at {other}")),
        };
        self.saw_master(&host, port);
        Ok(self.master_at(host, port))
    }

    /// Why no master was found, as users read it.
    fn not_found(&self, error: &RedisError) -> String {
        if error.kind() == redis::ErrorKind::MasterNameNotFoundBySentinel {
            return format!(
                "no sentinel names a master {:?} that is up and calls itself master (a failover may be under way)",
                self.config.name
            );
        }
        let message = redact(driver_error(error), &self.config);
        format!("no sentinel named the master: {message}")
    }

    /// Where the master was last found or announced, if anywhere yet.
    pub fn last_known(&self) -> Option<(String, u16)> {
        self.current.lock().expect("current master").clone()
    }

    /// Stops listening to the sentinels.
    pub fn close(&self) {
        let mut watchers = self.watchers.lock().expect("watchers");
        watchers.closed = true;
        for task in watchers.tasks.drain(..) {
            task.abort();
        }
    }

    fn master_at(&self, host: String, port: u16) -> NodeConfig {
        NodeConfig {
            host,
            port,
            ..self.config.master.clone()
        }
    }

    /// Records the master at `host:port`; `true` when it was last seen elsewhere.
    fn saw_master(&self, host: &str, port: u16) -> bool {
        let mut current = self.current.lock().expect("current master");
        let moved = current
            .as_ref()
            .is_some_and(|(seen_host, seen_port)| seen_host != host || *seen_port != port);
        *current = Some((host.to_owned(), port));
        moved
    }

    /// A `+switch-master` message: `<name> <old host> <old port> <new host> <new port>`.
    fn switched(&self, message: &str) {
        let words: Vec<&str> = message.split_whitespace().collect();
        let [name, _, _, host, port] = words[..] else {
            return;
        };
        let Ok(port) = port.parse() else {
            return;
        };
        // Every sentinel announces it: only the first word of a move acts.
        if name == self.config.name && self.saw_master(host, port) {
            if let Some(on_switch) = self.on_switch.get() {
                on_switch();
            }
        }
    }

    /// Starts listening to every sentinel's `+switch-master`, once.
    fn watch_switches(self: &Arc<Self>) {
        let mut watchers = self.watchers.lock().expect("watchers");
        if watchers.started || watchers.closed {
            return;
        }
        watchers.started = true;
        for sentinel in &self.config.sentinels {
            let Ok(client) = client_for(sentinel) else {
                continue;
            };
            let sentinels = Arc::downgrade(self);
            let timeout = self.connect_timeout;
            let task = tokio::spawn(async move {
                let mut delay = RESUBSCRIBE_MIN_DELAY;
                loop {
                    let subscribed = async {
                        let mut pubsub = client.get_async_pubsub().await?;
                        pubsub.subscribe(SWITCH_MASTER).await?;
                        Ok::<_, RedisError>(pubsub)
                    };
                    if let Ok(Ok(pubsub)) = tokio::time::timeout(timeout, subscribed).await {
                        delay = RESUBSCRIBE_MIN_DELAY;
                        let mut messages = pubsub.into_on_message();
                        while let Some(message) = messages.next().await {
                            let (Some(sentinels), Ok(text)) =
                                (sentinels.upgrade(), message.get_payload::<String>())
                            else {
                                continue;
                            };
                            sentinels.switched(&text);
                        }
                    }
                    if sentinels.strong_count() == 0 {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RESUBSCRIBE_MAX_DELAY);
                }
            });
            watchers.tasks.push(task.abort_handle());
        }
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for task in self.watchers.get_mut().expect("watchers").tasks.drain(..) {
            task.abort();
        }
    }
}

/// redis-rs's master finder for `config`: the sentinels with their credentials and TLS, the
/// master's for the `ROLE` check.
fn finder(config: &SentinelConfig) -> Result<SentinelClient, RedisError> {
    let first = config
        .sentinels
        .first()
        .ok_or_else(|| RedisError::from((redis::ErrorKind::InvalidClientConfig, "no sentinels")))?;
    let addresses = config.sentinels.iter().map(|sentinel| match &sentinel.tls {
        None => ConnectionAddr::Tcp(sentinel.host.clone(), sentinel.port),
        Some(tls) => ConnectionAddr::TcpTls {
            host: sentinel.host.clone(),
            port: sentinel.port,
            insecure: !tls.reject_unauthorized,
            tls_params: None,
        },
    });
    let mut builder =
        SentinelClientBuilder::new(addresses, &config.name, SentinelServerType::Master)?;
    if let Some(username) = &first.username {
        builder = builder.set_client_to_sentinel_username(username);
    }
    if let Some(password) = &first.password {
        builder = builder.set_client_to_sentinel_password(password.expose());
    }
    if let Some(certificates) = first.tls.as_ref().and_then(certificates) {
        builder = builder.set_client_to_sentinel_certificates(certificates);
    }
    let master = &config.master;
    builder = builder.set_client_to_redis_db(master.db);
    if let Some(username) = &master.username {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = &master.password {
        builder = builder.set_client_to_redis_password(password.expose());
    }
    if let Some(tls) = &master.tls {
        builder = builder.set_client_to_redis_tls_mode(if tls.reject_unauthorized {
            TlsMode::Secure
        } else {
            TlsMode::Insecure
        });
        if let Some(certificates) = certificates(tls) {
            builder = builder.set_client_to_redis_certificates(certificates);
        }
    }
    builder.build()
}

/// `text` with every password of `config` blanked, should a driver ever echo one.
fn redact(mut text: String, config: &SentinelConfig) -> String {
    for node in config.sentinels.iter().chain([&config.master]) {
        if let Some(password) = node.password.as_ref().filter(|p| !p.expose().is_empty()) {
            text = text.replace(password.expose(), "***");
        }
    }
    text
}
