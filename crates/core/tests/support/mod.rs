//! A throwaway `redis-server` per test, in the style of redis-rs's `redis-test` crate.
//!
//! Every server listens on its own free port with its own temporary directory, so tests run in
//! parallel and never touch a Redis someone else uses. Failed checks print the server's log.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod cluster;
pub mod locker;
pub mod sentinel;

use std::fmt::{self, Debug};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ironlock_core::NodeConfig;

/// Servers whose logs a failed check prints, so that a failure says what Redis saw.
pub trait ShowsLogs {
    /// Every server's log, each under a line naming it.
    fn logs(&self) -> String;

    /// `assert!` that shows the logs when it fails.
    #[track_caller]
    fn check(&self, condition: bool, message: impl fmt::Display) {
        if !condition {
            self.fail(message);
        }
    }

    /// `assert_eq!` that shows the logs when it fails.
    #[track_caller]
    fn check_eq<T: PartialEq + Debug>(&self, actual: T, expected: T, what: &str) {
        if actual != expected {
            self.fail(format_args!(
                "{what}: expected {expected:?}, got {actual:?}"
            ));
        }
    }

    #[track_caller]
    fn fail(&self, message: impl fmt::Display) -> ! {
        panic!("{message}\n{}", self.logs())
    }
}

const REDIS_SERVER: &str = "/usr/bin/redis-server";
const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a new replica may take to be online on its master (a full sync of an empty one).
const REPLICA_LINK_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the helper's own round trips, so a check on a wedged server fails instead of hanging.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A sentinel's config file, in its directory.
const SENTINEL_CONFIG: &str = "sentinel.conf";

/// Tells apart the temporary directories of servers started by one test process.
static NEXT_SERVER: AtomicUsize = AtomicUsize::new(0);

pub struct RedisServer {
    process: Child,
    port: u16,
    dir: PathBuf,
    /// Arguments beyond the defaults (`spawn`), kept for a restart.
    extra_args: Vec<String>,
    /// Whether it runs as a Redis Sentinel, from `sentinel.conf` in its directory.
    sentinel: bool,
}

impl RedisServer {
    /// Starts a server on a free port and returns once it answers PING.
    pub fn start() -> Self {
        Self::start_with(&[], free_port)
    }

    /// Starts a server with `extra_args` on the port `port` finds, retrying with another port
    /// when the first is taken meanwhile.
    pub fn start_with(extra_args: &[&str], port: fn() -> u16) -> Self {
        Self::start_as(extra_args, port, None)
    }

    /// Starts a Redis Sentinel on a free port with `config` (`sentinel monitor …` lines) in its
    /// config file, which it rewrites with what it learns.
    pub fn start_sentinel(config: &str) -> Self {
        Self::start_as(&[], free_port, Some(config))
    }

    fn start_as(extra_args: &[&str], port: fn() -> u16, sentinel_config: Option<&str>) -> Self {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(extra_args, port(), sentinel_config) {
                Ok(server) => return server,
                // Usually another process took the port between probing and binding it.
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "redis-server did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    fn try_start(
        extra_args: &[&str],
        port: u16,
        sentinel_config: Option<&str>,
    ) -> Result<Self, String> {
        let extra_args: Vec<String> = extra_args.iter().map(|arg| (*arg).to_owned()).collect();
        let dir = std::env::temp_dir().join(format!(
            "ironlock-core-test-{}-{}",
            std::process::id(),
            NEXT_SERVER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|error| format!("create {dir:?}: {error}"))?;
        if let Some(config) = sentinel_config {
            std::fs::write(dir.join(SENTINEL_CONFIG), config)
                .map_err(|error| format!("write {SENTINEL_CONFIG} in {dir:?}: {error}"))?;
        }
        let sentinel = sentinel_config.is_some();
        let process = spawn(port, &dir, &extra_args, sentinel)?;
        // From here on, Drop kills the process and removes the directory on every early return.
        let mut server = Self {
            process,
            port,
            dir,
            extra_args,
            sentinel,
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    /// Starts a server that replicates `master` and returns once a write on the master reached it
    /// (`WAIT`): from then on `WAIT` counts it at once. Its `master_link_status:up`, and even
    /// `state=online` on the master, come earlier: Redis 7 streams writes to a new replica only
    /// after its first acknowledgement, which it sends once a second.
    pub fn start_replica_of(master: &RedisServer) -> Self {
        // Redis 7 delays a diskless full sync by 5 s by default.
        master.query::<()>(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
        let replica = Self::start();
        replica.query::<()>(&["REPLICAOF", "127.0.0.1", &master.port.to_string()]);
        let online = format!("port={},state=online", replica.port);
        let deadline = Instant::now() + REPLICA_LINK_TIMEOUT;
        loop {
            let info: String = master.query(&["INFO", "replication"]);
            if info.contains(&online) && master.write_reaches_a_replica() {
                return replica;
            }
            if Instant::now() >= deadline {
                replica.fail(format_args!(
                    "not online on the master (port {}) within {REPLICA_LINK_TIMEOUT:?}:\n{info}",
                    master.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Makes a replica a master of its own (`REPLICAOF NO ONE`), as a failover promotes one.
    pub fn promote(&self) {
        self.query::<()>(&["REPLICAOF", "NO", "ONE"]);
    }

    /// Kills the server and starts it again on the same port, empty: what a crash of a Redis
    /// without persistence does to its data.
    pub fn restart_empty(&mut self) {
        self.stop();
        self.process = spawn(self.port, &self.dir, &self.extra_args, self.sentinel)
            .unwrap_or_else(|error| panic!("restart on port {}: {error}", self.port));
        if let Err(error) = self.wait_until_ready() {
            panic!("restart on port {}: {error}", self.port);
        }
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.process.try_wait() {
                return Err(format!(
                    "redis-server on port {} exited with {status}; log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            if answers_ping(self.port) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server on port {} gave no PONG within {READY_TIMEOUT:?}; log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // A PONG from another test's server on the same port would let two tests share a server.
        let info: String = self
            .try_query(&["INFO", "server"])
            .map_err(|error| format!("INFO on port {}: {error}", self.port))?;
        let expected = format!("process_id:{}", self.process.id());
        if info.lines().any(|line| line.trim() == expected) {
            Ok(())
        } else {
            Err(format!("port {} is served by another process", self.port))
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn node(&self) -> NodeConfig {
        NodeConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            ..NodeConfig::default()
        }
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log"))
            .unwrap_or_else(|error| format!("(no log: {error})"))
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the server for good; the port then refuses connections. The log stays readable.
    pub fn stop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.process.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed: {status}");
    }

    /// Runs one command on a fresh connection, panicking with the server log on failure.
    #[track_caller]
    pub fn query<T: redis::FromRedisValue>(&self, command: &[&str]) -> T {
        self.try_query(command)
            .unwrap_or_else(|error| self.fail(format_args!("{command:?} failed: {error}")))
    }

    fn try_query<T: redis::FromRedisValue>(&self, command: &[&str]) -> redis::RedisResult<T> {
        let (name, args) = command.split_first().expect("a command name");
        redis::cmd(name).arg(args).query(&mut self.connection()?)
    }

    /// [`RedisServer::query`] on a Redis Cluster replica, which answers a keyed read only on a
    /// connection that said `READONLY` first (else it redirects to its master).
    #[track_caller]
    pub fn query_replica<T: redis::FromRedisValue>(&self, command: &[&str]) -> T {
        let (name, args) = command.split_first().expect("a command name");
        let answer = self.connection().and_then(|mut connection| {
            redis::cmd("READONLY").exec(&mut connection)?;
            redis::cmd(name).arg(args).query(&mut connection)
        });
        answer.unwrap_or_else(|error| self.fail(format_args!("{command:?} failed: {error}")))
    }

    /// Whether a write (set, then deleted) reaches a replica within a second.
    fn write_reaches_a_replica(&self) -> bool {
        self.replicas_acknowledging_a_write(1) >= 1
    }

    /// How many replicas, of the `wanted`, acknowledge a write (set, then deleted) within a
    /// second: `WAIT` counts the writes of its own connection, so all three go on one.
    fn replicas_acknowledging_a_write(&self, wanted: usize) -> usize {
        const PROBE: &str = "ironlock-test:replica-probe";
        let acknowledged = self.connection().and_then(|mut connection| {
            redis::pipe()
                .cmd("SET")
                .arg(PROBE)
                .arg(1)
                .ignore()
                .cmd("DEL")
                .arg(PROBE)
                .ignore()
                .cmd("WAIT")
                .arg(wanted)
                .arg(1000)
                .query::<(usize,)>(&mut connection)
        });
        acknowledged.map_or(0, |(count,)| count)
    }

    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        let connection = client.get_connection_with_timeout(QUERY_TIMEOUT)?;
        connection.set_read_timeout(Some(QUERY_TIMEOUT))?;
        connection.set_write_timeout(Some(QUERY_TIMEOUT))?;
        Ok(connection)
    }

    /// Per command (`evalsha`, `set`, `client|setinfo`, …): how many times Redis ran it since it
    /// started or its stats were reset, commands run inside scripts included.
    pub fn command_calls(&self) -> Vec<(String, u64)> {
        let stats: String = self.query(&["INFO", "commandstats"]);
        stats
            .lines()
            .filter_map(|line| line.strip_prefix("cmdstat_"))
            .filter_map(|line| {
                let (name, rest) = line.split_once(":calls=")?;
                let count = rest.split(',').next()?.parse().ok()?;
                Some((name.to_owned(), count))
            })
            .collect()
    }

    /// Calls of one command, as [`RedisServer::command_calls`] counts them.
    pub fn calls_of(&self, command: &str) -> u64 {
        self.command_calls()
            .into_iter()
            .find(|(name, _)| name == command)
            .map_or(0, |(_, count)| count)
    }

    /// Every command Redis ran since it started or [`RedisServer::reset_stats`], counting those
    /// run inside scripts, except this helper's own `INFO` and `CONFIG RESETSTAT`.
    pub fn calls(&self) -> u64 {
        self.command_calls()
            .into_iter()
            .filter(|(name, _)| !matches!(name.as_str(), "info" | "config|resetstat"))
            .map(|(_, count)| count)
            .sum()
    }

    /// Zeroes the command statistics (`CONFIG RESETSTAT`).
    pub fn reset_stats(&self) {
        self.query::<()>(&["CONFIG", "RESETSTAT"]);
    }
}

impl ShowsLogs for RedisServer {
    fn logs(&self) -> String {
        format!(
            "--- redis-server log (port {}) ---\n{}",
            self.port,
            self.log()
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL also ends a paused server, so a failed test never leaves one behind.
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(
    port: u16,
    dir: &std::path::Path,
    extra_args: &[String],
    sentinel: bool,
) -> Result<Child, String> {
    let mut command = Command::new(REDIS_SERVER);
    if sentinel {
        // A sentinel needs a config file of its own, given first.
        command.arg(dir.join(SENTINEL_CONFIG)).arg("--sentinel");
    }
    command
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("spawn {REDIS_SERVER}: {error}"))
}

/// A port nothing listened on a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let timeout = Some(Duration::from_millis(500));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
