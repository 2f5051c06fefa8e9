//! Where the locks live and how to reach them.

use std::fmt;
use std::time::Duration;

use crate::defaults;

/// A password that never shows in `Debug` output, logs or error messages.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it goes on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// TLS settings for one node; the default is TLS with the system's web roots, certificates
/// checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM bundle of trusted CAs, replacing the default roots.
    pub ca: Option<Vec<u8>>,
    /// PEM client certificate and key, for servers that ask for mutual TLS.
    pub cert: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
    /// `false` skips certificate and hostname checks (test setups only).
    pub reject_unauthorized: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca: None,
            cert: None,
            key: None,
            reject_unauthorized: true,
        }
    }
}

/// Where the address of a locker's one Redis came from: its connection errors say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetOrigin {
    /// Given to the locker.
    Argument,
    /// `REDIS_URL`, as no target was given.
    Environment,
    /// The built-in default, as neither a target nor `REDIS_URL` was given.
    Default,
}

/// One Redis server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub db: i64,
    pub tls: Option<TlsConfig>,
    /// `None` for a Redlock node, which its address alone names.
    pub origin: Option<TargetOrigin>,
}

impl NodeConfig {
    /// `host:port`, the only way a node is ever named in errors.
    pub fn label(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            host: defaults::HOST.into(),
            port: defaults::PORT,
            username: None,
            password: None,
            db: 0,
            tls: None,
            origin: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// One Redis: the `SET NX PX` replacement.
    Single(NodeConfig),
    /// Independent masters; a lock needs a majority of them.
    Redlock(Vec<NodeConfig>),
    /// One Redis Cluster, found through these seed nodes: each key lives on the master that owns
    /// its hash slot. Every node takes the first seed's credentials and TLS settings.
    Cluster(Vec<NodeConfig>),
    /// One Redis whose master the sentinels name: locks live on the master, which the locker
    /// finds through them and follows across failovers.
    Sentinel(SentinelConfig),
    /// `memory://`: an in-process store with the same semantics, excluding only within this
    /// process. `name` (`memory://<name>`) shares one store among every locker on that name;
    /// without it the locker has a store of its own.
    Memory { name: Option<String> },
}

/// Redis Sentinel: the sentinels to ask, the master's name among them, and how to reach the master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelConfig {
    /// The sentinels, each with its own credentials and TLS settings.
    pub sentinels: Vec<NodeConfig>,
    /// The master's name in the sentinels' configuration (`sentinel monitor <name> …`).
    pub name: String,
    /// The master's credentials, database and TLS settings. Its host and port are unused: the
    /// sentinels say where the master is.
    pub master: NodeConfig,
}

impl SentinelConfig {
    /// `sentinel[host:port, …]/name`, the only way errors name the master.
    pub fn label(&self) -> String {
        let sentinels: Vec<String> = self.sentinels.iter().map(NodeConfig::label).collect();
        format!("sentinel[{}]/{}", sentinels.join(", "), self.name)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LockerConfig {
    pub target: Target,
    /// Prepended to every key the locker writes.
    pub key_prefix: String,
    pub connect_timeout: Duration,
    /// Bound on every Redis round trip; a stalled server surfaces as an error after this.
    pub command_timeout: Duration,
    /// Share of the TTL taken off a lock's validity for clock drift (Redlock's `driftFactor`).
    pub drift_factor: f64,
}

impl LockerConfig {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            key_prefix: String::new(),
            connect_timeout: defaults::CONNECT_TIMEOUT,
            command_timeout: defaults::COMMAND_TIMEOUT,
            drift_factor: defaults::DRIFT_FACTOR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_password() {
        let node = NodeConfig {
            password: Some(Secret::new("hunter2")),
            ..NodeConfig::default()
        };
        let printed = format!("{node:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn labels_bracket_ipv6_hosts() {
        let v6 = NodeConfig {
            host: "::1".into(),
            port: 7000,
            ..NodeConfig::default()
        };
        assert_eq!(v6.label(), "[::1]:7000");
        assert_eq!(NodeConfig::default().label(), "127.0.0.1:6379");
    }
}
