//! A throwaway Redis Cluster per test: masters and their replicas as [`RedisServer`]s on free
//! loopback ports (each with its cluster bus port, +10000, free too), joined by `redis-cli
//! --cluster create`, ready once every node says `cluster_state:ok` and every replica is in sync.
//! Dropping it kills every node; a failed check prints every node's log.

use std::process::Command;
use std::time::{Duration, Instant};

use ironlock_core::protocol::keys::hash_slot;
use ironlock_core::NodeConfig;

use super::{free_port, RedisServer, ShowsLogs};

const REDIS_CLI: &str = "/usr/bin/redis-cli";
/// Short, so a killed master's replica takes over within about two seconds.
const NODE_TIMEOUT_MS: &str = "1000";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// Which of `nodes` were killed for good.
    killed: Vec<bool>,
}

/// A slot on its way from one master to another (see [`RedisCluster::begin_migration`]).
pub struct Migration {
    pub slot: u16,
    from: usize,
    to: usize,
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas` replicas each and returns once the cluster serves
    /// every slot.
    pub fn start(masters: usize, replicas: usize) -> Self {
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            NODE_TIMEOUT_MS,
        ];
        let count = masters * (1 + replicas);
        let cluster = Self {
            nodes: (0..count)
                .map(|_| RedisServer::start_with(&args, free_cluster_port))
                .collect(),
            killed: vec![false; count],
        };
        let output = Command::new(REDIS_CLI)
            .args(["--cluster", "create"])
            .args(cluster.nodes.iter().map(|node| address(node.port())))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        cluster.check(
            output.status.success(),
            format_args!(
                "redis-cli --cluster create failed: {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        );
        cluster.wait_until_ok();
        cluster
    }

    /// Every node, as seeds: a locker finds the rest itself.
    pub fn seeds(&self) -> Vec<NodeConfig> {
        self.live().map(RedisServer::node).collect()
    }

    /// The masters serving slots now.
    pub fn masters(&self) -> Vec<&RedisServer> {
        let mut ports: Vec<u16> = self
            .slot_owners()
            .into_iter()
            .map(|(_, _, port)| port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports.into_iter().map(|port| self.by_port(port)).collect()
    }

    /// The master that serves `key` now.
    pub fn master_of(&self, key: &str) -> &RedisServer {
        self.by_port(self.owner_port(hash_slot(key)))
    }

    /// A replica of `master`.
    pub fn replica_of(&self, master: &RedisServer) -> &RedisServer {
        let following = format!("master_port:{}", master.port());
        self.live()
            .find(|node| {
                let replication: String = node.query(&["INFO", "replication"]);
                replication.lines().any(|line| line.trim() == following)
            })
            .unwrap_or_else(|| self.fail(format_args!("no replica of {}", master.port())))
    }

    /// A key of the form `{prefix}…` for each master, served by it.
    pub fn key_on_each_master(&self, prefix: &str) -> Vec<String> {
        self.masters()
            .into_iter()
            .map(|master| {
                (0..)
                    .map(|i| format!("{prefix}:{i}"))
                    .find(|key| self.owner_port(hash_slot(key)) == master.port())
                    .expect("every master serves some slot")
            })
            .collect()
    }

    /// Kills the master of `key` (SIGKILL) and returns once one of its replicas serves its slots.
    pub fn fail_over(&mut self, key: &str) {
        let slot = hash_slot(key);
        let dead = self.owner_port(slot);
        let index = self.index_of(dead);
        self.nodes[index].stop();
        self.killed[index] = true;
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.try_owner_port(slot) == Some(dead) || self.try_owner_port(slot).is_none() {
            if Instant::now() >= deadline {
                self.fail(format_args!("no replica took over slot {slot} from {dead}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_until_ok();
    }

    /// Marks `slot` (a key's) as moving from its master to another: `IMPORTING` on the target,
    /// then `MIGRATING` on the source. Its keys stay where they are until [`Self::move_keys`].
    pub fn begin_migration(&self, key: &str) -> Migration {
        let slot = hash_slot(key);
        let from = self.index_of(self.owner_port(slot));
        let to = self
            .masters()
            .into_iter()
            .map(|master| self.index_of(master.port()))
            .find(|&index| index != from)
            .expect("another master");
        let slot_arg = slot.to_string();
        let (from_id, to_id) = (self.id(from), self.id(to));
        self.nodes[to].query::<()>(&["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &from_id]);
        self.nodes[from].query::<()>(&["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &to_id]);
        Migration { slot, from, to }
    }

    /// Moves every key of the migrating slot to its target (`MIGRATE`), as `redis-cli --cluster
    /// reshard` does.
    pub fn move_keys(&self, migration: &Migration) {
        let slot_arg = migration.slot.to_string();
        let source = &self.nodes[migration.from];
        loop {
            let keys: Vec<String> = source.query(&["CLUSTER", "GETKEYSINSLOT", &slot_arg, "100"]);
            if keys.is_empty() {
                return;
            }
            let port = self.nodes[migration.to].port().to_string();
            let mut command = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            command.extend(keys.iter().map(String::as_str));
            source.query::<()>(&command);
        }
    }

    /// Gives the slot to its target on every master (`SETSLOT … NODE`), ending the migration.
    pub fn finish_migration(&self, migration: &Migration) {
        let slot_arg = migration.slot.to_string();
        let to_id = self.id(migration.to);
        for index in [migration.to, migration.from] {
            self.nodes[index].query::<()>(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id]);
        }
        for master in self.masters() {
            master.query::<()>(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id]);
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.live().any(|node| {
            owner_in(&cluster_nodes(node), migration.slot) != Some(self.nodes[migration.to].port())
        }) {
            if Instant::now() >= deadline {
                self.fail(format_args!(
                    "slot {} never settled on its target",
                    migration.slot
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port of the master that serves `migration`'s slot after it.
    pub fn target_of(&self, migration: &Migration) -> &RedisServer {
        &self.nodes[migration.to]
    }

    /// The port of the master that served `migration`'s slot before it.
    pub fn source_of(&self, migration: &Migration) -> &RedisServer {
        &self.nodes[migration.from]
    }

    fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes
            .iter()
            .zip(&self.killed)
            .filter(|(_, killed)| !**killed)
            .map(|(node, _)| node)
    }

    /// Waits until every live node says `cluster_state:ok` and knows every slot's master, and
    /// every live replica is in sync with its master.
    fn wait_until_ok(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let pending: Vec<String> = self.live().filter_map(not_ready).collect();
            if pending.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(format_args!("cluster not ready: {}", pending.join("; ")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `(first slot, last slot, master port)` of every slot range, as a live node sees them.
    fn slot_owners(&self) -> Vec<(u16, u16, u16)> {
        let node = self.live().next().expect("a live node");
        master_ranges(&cluster_nodes(node))
    }

    fn try_owner_port(&self, slot: u16) -> Option<u16> {
        self.live()
            .find_map(|node| node.try_query::<String>(&["CLUSTER", "NODES"]).ok())
            .and_then(|nodes| owner_in(&nodes, slot))
    }

    fn owner_port(&self, slot: u16) -> u16 {
        self.try_owner_port(slot)
            .unwrap_or_else(|| self.fail(format_args!("no master serves slot {slot}")))
    }

    fn by_port(&self, port: u16) -> &RedisServer {
        &self.nodes[self.index_of(port)]
    }

    fn index_of(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|node| node.port() == port)
            .unwrap_or_else(|| self.fail(format_args!("no node on port {port}")))
    }

    fn id(&self, index: usize) -> String {
        self.nodes[index].query(&["CLUSTER", "MYID"])
    }
}

/// Why `node` is not ready yet, or `None` when it is.
fn not_ready(node: &RedisServer) -> Option<String> {
    let info: String = node.try_query(&["CLUSTER", "INFO"]).ok()?;
    if !info.contains("cluster_state:ok") {
        return Some(format!("{}: cluster_state not ok", node.port()));
    }
    let replication: String = node.try_query(&["INFO", "replication"]).ok()?;
    if replication.contains("role:slave") && !replication.contains("master_link_status:up") {
        return Some(format!("{}: replica not in sync", node.port()));
    }
    let nodes = cluster_nodes(node);
    let covered: u32 = master_ranges(&nodes)
        .iter()
        .map(|(first, last, _)| u32::from(last - first) + 1)
        .sum();
    (covered != 16384).then(|| format!("{}: knows masters of {covered} slots", node.port()))
}

fn cluster_nodes(node: &RedisServer) -> String {
    node.try_query(&["CLUSTER", "NODES"]).unwrap_or_default()
}

/// `(first, last, port)` of each slot range a healthy master serves, read from `CLUSTER NODES`.
fn master_ranges(nodes: &str) -> Vec<(u16, u16, u16)> {
    let mut ranges = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 || !fields[2].contains("master") || fields[2].contains("fail") {
            continue;
        }
        let Some(port) = fields[1]
            .split('@')
            .next()
            .and_then(|address| address.rsplit(':').next())
            .and_then(|port| port.parse().ok())
        else {
            continue;
        };
        // Slots being imported or migrated show as `[slot-<-id]`: not served by this line's node.
        for range in fields[8..].iter().filter(|range| !range.starts_with('[')) {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(first), Ok(last)) = (first.parse(), last.parse()) {
                ranges.push((first, last, port));
            }
        }
    }
    ranges
}

fn owner_in(nodes: &str, slot: u16) -> Option<u16> {
    master_ranges(nodes)
        .into_iter()
        .find(|(first, last, _)| (*first..=*last).contains(&slot))
        .map(|(_, _, port)| port)
}

fn address(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 65535 - 10000 && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok()
        {
            return port;
        }
    }
}

impl ShowsLogs for RedisCluster {
    fn logs(&self) -> String {
        let logs: Vec<String> = self
            .nodes
            .iter()
            .map(|node| {
                format!(
                    "--- redis-server log (port {}) ---\n{}",
                    node.port(),
                    node.log()
                )
            })
            .collect();
        logs.join("\n")
    }
}
