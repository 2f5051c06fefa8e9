//! The option objects JS hands to the native locker (already validated by `lib/target.js`), and
//! their conversion into the core's configuration.

use std::time::Duration;

use ironlock_core::config::TargetOrigin;
use ironlock_core::{LockerConfig, NodeConfig, Secret, SentinelConfig, Target, TlsConfig};
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

/// The master of a Sentinel target: its name among the sentinels and how to log in to it. Where it
/// is, the sentinels say.
#[napi(object)]
pub struct MasterOptions {
    /// The master's name in the sentinels' configuration (`sentinel monitor <name> …`).
    pub name: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: Option<u32>,
    pub tls: Option<TlsOptions>,
}

/// Everything a native locker needs to reach its servers.
#[napi(object)]
pub struct LockerOptions {
    /// `"single"`, `"redlock"`, `"cluster"` (the nodes are its seeds), `"sentinel"` (the nodes are
    /// the sentinels, `master` says which master of theirs), or `"memory"` (no nodes).
    pub mode: String,
    pub nodes: Vec<NodeOptions>,
    /// `"sentinel"` mode: the master the sentinels name.
    pub master: Option<MasterOptions>,
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
            "sentinel" => {
                let master = options.master.ok_or("a sentinel target needs its master")?;
                Target::Sentinel(SentinelConfig {
                    sentinels: nodes.collect(),
                    name: master.name,
                    master: NodeConfig {
                        username: master.username,
                        password: master.password.map(Secret::new),
                        db: master.db.map_or(NodeConfig::default().db, i64::from),
                        tls: master.tls.map(TlsConfig::from),
                        ..NodeConfig::default()
                    },
                })
            }
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
            tls: node.tls.map(TlsConfig::from),
            origin: node.origin.as_deref().map(|origin| match origin {
                "REDIS_URL" => TargetOrigin::Environment,
                "default" => TargetOrigin::Default,
                _ => TargetOrigin::Argument,
            }),
        }
    }
}

impl From<TlsOptions> for TlsConfig {
    fn from(tls: TlsOptions) -> Self {
        Self {
            ca: tls.ca.map(String::into_bytes),
            cert: tls.cert.map(String::into_bytes),
            key: tls.key.map(String::into_bytes),
            reject_unauthorized: tls.reject_unauthorized,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(port: u32) -> NodeOptions {
        NodeOptions {
            host: "10.0.0.1".into(),
            port,
            username: None,
            password: Some("sentinel-pw".into()),
            db: None,
            tls: None,
            origin: None,
        }
    }

    /// The sentinels are the nodes; the master's name and login come apart from them, so a
    /// sentinel's password never becomes the master's.
    #[test]
    fn sentinel_mode_names_the_master_and_keeps_its_login_apart() {
        let options = LockerOptions {
            mode: "sentinel".into(),
            nodes: vec![sentinel(26379), sentinel(26380)],
            master: Some(MasterOptions {
                name: "orders".into(),
                username: Some("app".into()),
                password: Some("master-pw".into()),
                db: Some(3),
                tls: None,
            }),
            store: None,
            key_prefix: None,
            connect_timeout: None,
            command_timeout: None,
            drift_factor: None,
        };
        let config = LockerConfig::try_from(options).expect("a valid sentinel target");
        let Target::Sentinel(target) = config.target else {
            panic!("not a sentinel target: {:?}", config.target);
        };
        assert_eq!(target.name, "orders");
        let ports: Vec<u16> = target.sentinels.iter().map(|node| node.port).collect();
        assert_eq!(ports, [26379, 26380]);
        assert_eq!(
            target.sentinels[0].password,
            Some(Secret::new("sentinel-pw"))
        );
        assert_eq!(target.master.username.as_deref(), Some("app"));
        assert_eq!(target.master.password, Some(Secret::new("master-pw")));
        assert_eq!(target.master.db, 3);
    }

    #[test]
    fn sentinel_mode_without_its_master_is_refused() {
        let options = LockerOptions {
            mode: "sentinel".into(),
            nodes: vec![sentinel(26379)],
            master: None,
            store: None,
            key_prefix: None,
            connect_timeout: None,
            command_timeout: None,
            drift_factor: None,
        };
        assert_eq!(
            LockerConfig::try_from(options).map(|_| ()),
            Err("a sentinel target needs its master".to_owned())
        );
    }
}
