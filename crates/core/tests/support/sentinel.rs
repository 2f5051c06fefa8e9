//! A throwaway Redis Sentinel setup per test: a master and its replicas as [`RedisServer`]s, and
//! three sentinels that monitor it (quorum 2), ready once every sentinel knows the master, its
//! replicas and the other sentinels and every replica is in sync. Plus what the Sentinel tests do
//! to one: kill the master until the sentinels promote a replica, and start the killed master
//! again. Dropping it kills every server; a failed check prints every server's log.

use std::time::{Duration, Instant};

use ironlock_core::{NodeConfig, SentinelConfig, Target};

use super::{RedisServer, ShowsLogs};

/// The master's name among the sentinels.
pub const NAME: &str = "mymaster";
const SENTINELS: usize = 3;
const QUORUM: usize = 2;
/// Short, so a killed master is failed over within about two seconds.
const DOWN_AFTER_MS: u64 = 1000;
/// Short, so a failover that stalls (a split vote, a slow promotion) is tried again within seconds.
const FAILOVER_TIMEOUT_MS: u64 = 2000;
/// Sentinel's own periods, shortened (`SENTINEL DEBUG`): INFO every 100 ms instead of 10 s finds
/// the replicas at once, hellos every 200 ms instead of 2 s find the other sentinels, and a master
/// that comes back is made a replica after 4 hellos (0.8 s, not 8 s).
const SENTINEL_PERIODS: [&str; 6] = [
    "info-period",
    "100",
    "publish-period",
    "200",
    "ask-period",
    "100",
];
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

pub struct RedisSentinel {
    /// The master as started, then its replicas.
    servers: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
    /// Which of `servers` [`RedisSentinel::fail_over`] killed, the latest last.
    killed: Vec<usize>,
}

impl RedisSentinel {
    /// Starts a master with `replicas` replicas (1 or 2) and 3 sentinels that monitor it as
    /// [`NAME`], and returns once every sentinel knows them all and every replica is in sync.
    pub fn start(replicas: usize) -> Self {
        let master = RedisServer::start();
        let mut servers: Vec<RedisServer> = (0..replicas)
            .map(|_| RedisServer::start_replica_of(&master))
            .collect();
        servers.insert(0, master);
        let config = sentinel_config(servers[0].port());
        let setup = Self {
            sentinels: (0..SENTINELS)
                .map(|_| RedisServer::start_sentinel(&config))
                .collect(),
            servers,
            killed: Vec::new(),
        };
        for sentinel in &setup.sentinels {
            let mut command = vec!["SENTINEL", "DEBUG"];
            command.extend(SENTINEL_PERIODS);
            sentinel.query::<()>(&command);
        }
        setup.wait_until_ready();
        setup
    }

    /// The sentinels, as a target lists them.
    pub fn sentinels(&self) -> Vec<NodeConfig> {
        self.sentinels.iter().map(RedisServer::node).collect()
    }

    /// The master's name among the sentinels.
    pub fn name(&self) -> &str {
        NAME
    }

    /// A Sentinel target of these sentinels and this master, without a login.
    pub fn target(&self) -> Target {
        Target::Sentinel(SentinelConfig {
            sentinels: self.sentinels(),
            name: NAME.to_owned(),
            master: NodeConfig::default(),
        })
    }

    /// The server the sentinels name as the master now.
    pub fn master(&self) -> &RedisServer {
        let port = master_port_of(&self.sentinels[0])
            .unwrap_or_else(|| self.fail("the sentinels name no master"));
        self.by_port(port)
    }

    /// The replicas the sentinels list now, up and linked to the master.
    pub fn replicas(&self) -> Vec<&RedisServer> {
        listed_replicas(&self.sentinels[0])
            .into_iter()
            .filter(Replica::healthy)
            .map(|replica| self.by_port(replica.port))
            .collect()
    }

    /// Kills the master (SIGKILL) and returns the new one once every sentinel names it and it
    /// answers `ROLE` master, and the setup is ready again (the other replicas follow it, in sync).
    pub fn fail_over(&mut self) -> &RedisServer {
        let dead = self.index_of(self.master().port());
        let dead_port = self.servers[dead].port();
        self.servers[dead].stop();
        self.killed.push(dead);
        self.until(|| {
            let named: Vec<Option<u16>> = self.sentinels.iter().map(master_port_of).collect();
            named
                .contains(&Some(dead_port))
                .then(|| format!("a sentinel still names {dead_port}: {named:?}"))
        });
        self.wait_until_ready();
        self.master()
    }

    /// Starts the master [`RedisSentinel::fail_over`] killed last on its port again, empty, and
    /// returns it once the sentinels made it a replica of the master and it is in sync.
    pub fn restart_old(&mut self) -> &RedisServer {
        let old = self
            .killed
            .pop()
            .unwrap_or_else(|| self.fail("no master was killed: call fail_over first"));
        self.servers[old].restart_empty();
        self.wait_until_ready();
        &self.servers[old]
    }

    fn live(&self) -> impl Iterator<Item = (usize, &RedisServer)> {
        self.servers
            .iter()
            .enumerate()
            .filter(|(index, _)| !self.killed.contains(index))
    }

    fn by_port(&self, port: u16) -> &RedisServer {
        &self.servers[self.index_of(port)]
    }

    fn index_of(&self, port: u16) -> usize {
        self.servers
            .iter()
            .position(|server| server.port() == port)
            .unwrap_or_else(|| self.fail(format_args!("no Redis of this setup on port {port}")))
    }

    fn wait_until_ready(&self) {
        self.until(|| self.not_ready().err());
    }

    /// Why the setup is not ready yet, if it is not: every sentinel names the same master, sees it up
    /// and knows the other sentinels and every live replica; the master answers `ROLE` master;
    /// every live replica follows it and acknowledges its writes.
    fn not_ready(&self) -> Result<(), String> {
        let named: Vec<Option<u16>> = self.sentinels.iter().map(master_port_of).collect();
        let Some(port) = named[0].filter(|port| named.iter().all(|each| *each == Some(*port)))
        else {
            return Err(format!("the sentinels name different masters: {named:?}"));
        };
        let master = self.by_port(port);
        if !answers_role_master(master) {
            return Err(format!(
                "{port}, named the master, does not answer ROLE master"
            ));
        }
        let replicas: Vec<&RedisServer> = self
            .live()
            .map(|(_, server)| server)
            .filter(|server| server.port() != port)
            .collect();
        for sentinel in &self.sentinels {
            let seen = fields(
                sentinel
                    .try_query(&["SENTINEL", "MASTER", NAME])
                    .map_err(|error| format!("SENTINEL MASTER on {}: {error}", sentinel.port()))?,
            );
            let flags = seen.get("flags").map_or("", String::as_str);
            if flags != "master" {
                return Err(format!(
                    "sentinel {} sees the master as {flags}",
                    sentinel.port()
                ));
            }
            let others = seen.get("num-other-sentinels").map_or("", String::as_str);
            if others != (SENTINELS - 1).to_string() {
                return Err(format!(
                    "sentinel {} knows {others} other sentinels",
                    sentinel.port()
                ));
            }
            let listed = listed_replicas(sentinel);
            if let Some(missing) = replicas.iter().find(|replica| {
                !listed
                    .iter()
                    .any(|each| each.port == replica.port() && each.healthy())
            }) {
                return Err(format!(
                    "sentinel {} does not list {} as a replica in sync",
                    sentinel.port(),
                    missing.port()
                ));
            }
        }
        let following = format!("master_port:{port}");
        for replica in &replicas {
            let replication: String = replica
                .try_query(&["INFO", "replication"])
                .map_err(|error| format!("INFO on {}: {error}", replica.port()))?;
            let follows = replication.lines().any(|line| line.trim() == following);
            if !follows || !replication.contains("master_link_status:up") {
                return Err(format!("{} does not follow {port} yet", replica.port()));
            }
        }
        let acknowledged = master.replicas_acknowledging_a_write(replicas.len());
        if !replicas.is_empty() && acknowledged < replicas.len() {
            return Err(format!(
                "{acknowledged} of {} replicas acknowledge {port}'s writes",
                replicas.len()
            ));
        }
        Ok(())
    }

    /// Polls `pending` (`None`: done, else why not) until done, or fails with its last reason.
    fn until(&self, pending: impl Fn() -> Option<String>) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let Some(reason) = pending() else { return };
            if Instant::now() >= deadline {
                self.fail(format_args!(
                    "Sentinel setup not ready after {READY_TIMEOUT:?}: {reason}"
                ));
            }
            std::thread::sleep(POLL);
        }
    }
}

fn sentinel_config(master_port: u16) -> String {
    [
        "sentinel resolve-hostnames no".to_owned(),
        format!("sentinel monitor {NAME} 127.0.0.1 {master_port} {QUORUM}"),
        format!("sentinel down-after-milliseconds {NAME} {DOWN_AFTER_MS}"),
        format!("sentinel failover-timeout {NAME} {FAILOVER_TIMEOUT_MS}"),
        format!("sentinel parallel-syncs {NAME} 2"),
    ]
    .join("\n")
        + "\n"
}

/// The port of the master `sentinel` names, if it answers.
fn master_port_of(sentinel: &RedisServer) -> Option<u16> {
    let address: Vec<String> = sentinel
        .try_query(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", NAME])
        .ok()?;
    address.get(1)?.parse().ok()
}

/// Whether `server` answers `ROLE` as a master: `["master", offset, replicas]`.
fn answers_role_master(server: &RedisServer) -> bool {
    matches!(
        server.try_query::<(String, i64, redis::Value)>(&["ROLE"]),
        Ok((role, _, _)) if role == "master"
    )
}

/// A replica as `SENTINEL REPLICAS` lists it.
struct Replica {
    port: u16,
    flags: String,
    master_link_status: String,
}

impl Replica {
    /// Up and linked to its master.
    fn healthy(&self) -> bool {
        self.flags == "slave" && self.master_link_status == "ok"
    }
}

fn listed_replicas(sentinel: &RedisServer) -> Vec<Replica> {
    let listed: Vec<Vec<String>> = sentinel
        .try_query(&["SENTINEL", "REPLICAS", NAME])
        .unwrap_or_default();
    listed
        .into_iter()
        .map(|flat| {
            let replica = fields(flat);
            let field = |name: &str| replica.get(name).cloned().unwrap_or_default();
            Replica {
                port: field("port").parse().unwrap_or_default(),
                flags: field("flags"),
                master_link_status: field("master-link-status"),
            }
        })
        .collect()
}

/// `[key, value, key, value, …]`, as `SENTINEL` answers, → a map.
fn fields(flat: Vec<String>) -> std::collections::HashMap<String, String> {
    let mut pairs = flat.into_iter();
    let mut map = std::collections::HashMap::new();
    while let (Some(key), Some(value)) = (pairs.next(), pairs.next()) {
        map.insert(key, value);
    }
    map
}

impl ShowsLogs for RedisSentinel {
    fn logs(&self) -> String {
        let servers = self.servers.iter().map(|server| ("redis-server", server));
        let sentinels = self
            .sentinels
            .iter()
            .map(|server| ("redis-sentinel", server));
        let logs: Vec<String> = servers
            .chain(sentinels)
            .map(|(kind, server)| {
                format!(
                    "--- {kind} log (port {}) ---\n{}",
                    server.port(),
                    server.log()
                )
            })
            .collect();
        logs.join("\n")
    }
}
