//! The option objects JS hands to the native locker (already validated by `lib/target.js`), and
//! their conversion into the core's configuration.

use std::time::Duration;

use ironlock_core::config::TargetOrigin;
use ironlock_core::{LockerConfig, NodeConfig, Secret, Target, TlsConfig};
use napi_derive::napi;

/// TLS settings for one node.
#[napi(object)]
pub struct TlsOptions {
    /// PEM bundle of trusted CAs; replaces the default web roots.
    pub ca: Option<String>,
    /// PEM client certificate, for mutual TLS.
    pub cert: Option<String>,
    /// PEM client key, for mutual TLS.
    pub key: Option<String>,
    /// `false` skips certificate checks (`lib/target.js` decides the default).
    pub reject_unauthorized: bool,
}

/// One Redis server.
#[napi(object)]
pub struct NodeOptions {
    pub host: String,
    pub port: u32,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: Option<u32>,
    pub tls: Option<TlsOptions>,
    /// A single target's: `"argument"`, `"REDIS_URL"` or `"default"` (see `lib/target.js`).
    pub origin: Option<String>,
}

/// Everything a native locker needs to reach its servers.
#[napi(object)]
pub struct LockerOptions {
    /// `"single"`, `"redlock"`, `"cluster"` (the nodes are its seeds), or `"memory"` (no nodes).
    pub mode: String,
    pub nodes: Vec<NodeOptions>,
    /// `"memory"` mode: the name of a store shared by every locker on it (`memory://<name>`);
    /// absent or empty, the locker gets a store of its own.
    pub store: Option<String>,
    pub key_prefix: Option<String>,
    /// Milliseconds.
    pub connect_timeout: Option<f64>,
    /// Milliseconds.
    pub command_timeout: Option<f64>,
    pub drift_factor: Option<f64>,
}

impl TryFrom<LockerOptions> for LockerConfig {
    type Error = String;

    fn try_from(options: LockerOptions) -> Result<Self, String> {
        let mut nodes = options.nodes.into_iter().map(NodeConfig::from);
        let target = match options.mode.as_str() {
            "single" => Target::Single(nodes.next().ok_or("a single target needs one node")?),
            "redlock" => Target::Redlock(nodes.collect()),
            "cluster" => Target::Cluster(nodes.collect()),
            "memory" => Target::Memory {
                name: options.store.filter(|name| !name.is_empty()),
            },
            other => return Err(format!("unknown target mode {other:?}")),
        };
        let mut config = LockerConfig::new(target);
        if let Some(prefix) = options.key_prefix {
            config.key_prefix = prefix;
        }
        if let Some(ms) = options.connect_timeout {
            config.connect_timeout = whole_millis(ms);
        }
        if let Some(ms) = options.command_timeout {
            config.command_timeout = whole_millis(ms);
        }
        if let Some(factor) = options.drift_factor {
            config.drift_factor = factor;
        }
        Ok(config)
    }
}

/// `ms` rounded up: a fraction of a millisecond must not become no time at all.
fn whole_millis(ms: f64) -> Duration {
    Duration::from_millis(ms.max(0.0).ceil() as u64)
}

impl From<NodeOptions> for NodeConfig {
    fn from(node: NodeOptions) -> Self {
        Self {
            host: node.host,
            port: node.port as u16,
            username: node.username,
            password: node.password.map(Secret::new),
            db: node.db.map_or(NodeConfig::default().db, i64::from),
            tls: node.tls.map(|tls| TlsConfig {
                ca: tls.ca.map(String::into_bytes),
                cert: tls.cert.map(String::into_bytes),
                key: tls.key.map(String::into_bytes),
                reject_unauthorized: tls.reject_unauthorized,
            }),
            origin: node.origin.as_deref().map(|origin| match origin {
                "REDIS_URL" => TargetOrigin::Environment,
                "default" => TargetOrigin::Default,
                _ => TargetOrigin::Argument,
            }),
        }
    }
}
