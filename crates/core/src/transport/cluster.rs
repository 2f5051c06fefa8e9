//! One Redis Cluster reached through redis-rs's async cluster connection, which keeps the slot map,
//! follows MOVED and ASK, refreshes the map when the topology changes and reconnects to nodes.
//! What this adds is what a lock needs on top, as [`super::node`] does for one node: the two
//! timeouts with their one meaning, a call routed to the master of its keys' slot, `EVAL` once
//! after a `NOSCRIPT` (on that same master: a promoted replica has no scripts cached), and a call
//! that meets a failover (the slot's master gone, the cluster down until a replica takes over)
//! going again until its time is up rather than failing at once.

use std::future::Future;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection as SlotRoutedConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{PushInfo, RedisError, RetryMethod, Value};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::connect::{certificates, connect_error, connection_info, driver_error, redact};
use super::slot::Slot;
use super::slot_map::SlotMaster;
use crate::config::NodeConfig;
use crate::error::{connect_timed_out, LockError};
use crate::protocol::resp;
use crate::protocol::script_call::{Naming, ScriptCall};
use crate::protocol::script_reply::Refusal;

/// The pause before a call that met a failover goes again: ioredis's `retryDelayOnFailover`.
const FAILOVER_PAUSE: Duration = Duration::from_millis(100);

pub struct ClusterConnection {
    client: ClusterClient,
    /// `cluster[host:port, …]`: how errors name the cluster, by its seeds.
    name: String,
    tls: bool,
    connect_timeout: Duration,
    command_timeout: Duration,
    slot: Slot<SlotRoutedConnection>,
}

impl ClusterConnection {
    /// Connects lazily, on the first call. The error says why `seeds` cannot be used at all (an
    /// address redis-rs refuses), without a password.
    pub fn new(
        seeds: &[NodeConfig],
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Result<Self, String> {
        Ok(Self {
            client: cluster_client(seeds, connect_timeout, command_timeout, None)?,
            name: cluster_name(seeds),
            tls: seeds.iter().any(|seed| seed.tls.is_some()),
            connect_timeout,
            command_timeout,
            slot: Slot::default(),
        })
    }

    /// How errors name the cluster.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The longest a call may wait: connecting, then the command, a failover's retries included.
    pub fn call_timeout(&self) -> Duration {
        self.connect_timeout + self.command_timeout
    }

    /// A connection error of the lock `key` on this cluster.
    pub fn failure(&self, key: &str, message: &str) -> LockError {
        LockError::connection(key, &self.name, message)
    }

    /// The error of a script call for the lock of `names` that was refused with `refusal`.
    pub fn refused(&self, names: &[String], refusal: Refusal) -> LockError {
        LockError::refused(names, &self.name, refusal)
    }

    /// Runs one script call for the lock `key` on the master of hash slot `slot` (every key of
    /// the call must be in it), connecting first if needed. Every call may reach Redis twice:
    /// redis-rs sends a command again after a dropped connection, which the protocol's scripts
    /// allow (an attempt finding its own token took the key).
    pub async fn run(
        &self,
        key: &str,
        slot: u16,
        call: &ScriptCall<'_>,
    ) -> Result<resp::Reply, LockError> {
        self.ride_out(key, |mut connection| async move {
            send_by_hash(&mut connection, slot, call).await
        })
        .await
    }

    /// Which master serves each slot now, as the cluster says (`CLUSTER SLOTS`), for the lock
    /// `key` that needs to know.
    pub async fn slot_masters(&self, key: &str) -> Result<Vec<SlotMaster>, LockError> {
        let reply = self
            .ride_out(key, |mut connection| async move {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
                let mut command = redis::cmd("CLUSTER");
                command.arg("SLOTS");
                connection.route_command(command, routing).await
            })
            .await?;
        SlotMaster::read_all(reply)
            .ok_or_else(|| self.failure(key, "CLUSTER SLOTS answered what is no slot map"))
    }

    /// Sends what `send` sends on the connection (connecting first if needed) until it is
    /// answered, or fails for good, or the call's time is up: a call that meets a failover goes
    /// again after a pause.
    async fn ride_out<F, Sent>(&self, key: &str, send: F) -> Result<resp::Reply, LockError>
    where
        F: Fn(SlotRoutedConnection) -> Sent,
        Sent: Future<Output = Result<Value, RedisError>>,
    {
        let deadline = Instant::now() + self.call_timeout();
        let mut last_failure = None;
        let run = async {
            let (connection, _) = self.slot.get_or_open(key, || self.open(key)).await?;
            loop {
                let answer = send(connection.clone()).await;
                match answer {
                    Err(error)
                        if rides_out(&error) && Instant::now() + FAILOVER_PAUSE < deadline =>
                    {
                        last_failure = Some(self.command_error(&error));
                        tokio::time::sleep(FAILOVER_PAUSE).await;
                    }
                    answer => {
                        // A refusal as redis-rs words it, as on one node.
                        return answer
                            .and_then(Value::extract_error)
                            .map(resp::Reply::from)
                            .map_err(|error| self.failure(key, &self.command_error(&error)));
                    }
                }
            }
        };
        let outcome = tokio::time::timeout_at(deadline, run).await;
        outcome.unwrap_or_else(|_| {
            let message = last_failure.unwrap_or_else(|| self.no_answer());
            Err(self.failure(key, &message))
        })
    }

    /// Later calls fail with [`LockError::Closed`]; the connection ends with its last user.
    pub fn close(&self) {
        self.slot.close();
    }

    fn no_answer(&self) -> String {
        format!("no answer within {} ms", self.command_timeout.as_millis())
    }

    fn command_error(&self, error: &RedisError) -> String {
        if error.is_timeout() {
            self.no_answer()
        } else {
            driver_error(error)
        }
    }

    async fn open(&self, key: &str) -> Result<SlotRoutedConnection, LockError> {
        tokio::time::timeout(self.connect_timeout, self.client.get_async_connection())
            .await
            .map_err(|_| self.failure(key, &connect_timed_out(self.connect_timeout)))?
            .map_err(|error| self.failure(key, &connect_error(&error, self.tls)))
    }
}

/// The redis-rs client for the cluster `seeds` lead to, with ironlock's timeouts; `pushes`, when
/// given, receives what the nodes push (RESP3), as the sharded subscriber needs.
pub fn cluster_client(
    seeds: &[NodeConfig],
    connect_timeout: Duration,
    command_timeout: Duration,
    pushes: Option<UnboundedSender<PushInfo>>,
) -> Result<ClusterClient, String> {
    let first = seeds.first().ok_or("a cluster needs at least one seed")?;
    let infos = seeds
        .iter()
        .map(|seed| connection_info(seed).map_err(|error| redact(&error, seed)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = ClusterClientBuilder::new(infos)
        .connection_timeout(connect_timeout)
        .response_timeout(command_timeout)
        // The call's own deadline bounds it all (see `ClusterConnection::run`).
        .overall_response_timeout(None)
        // redis-rs waits at least 1.28 s before retrying a TRYAGAIN or CLUSTERDOWN by default:
        // longer than a slot migration's step or a failover's last moments take.
        .min_retry_wait(10)
        .max_retry_wait(200);
    if let Some(certificates) = first.tls.as_ref().and_then(certificates) {
        builder = builder.certs(certificates);
    }
    if let Some(pushes) = pushes {
        builder = builder
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes);
    }
    builder.build().map_err(|error| redact(&error, first))
}

/// `cluster[host:port, …]`, by its seeds.
fn cluster_name(seeds: &[NodeConfig]) -> String {
    let labels: Vec<String> = seeds.iter().map(NodeConfig::label).collect();
    format!("cluster[{}]", labels.join(", "))
}

/// Whether a call that failed with `error` may succeed if it goes again soon: the slot's master
/// is gone or unreachable, the cluster is down or the slot is moving. Not a timeout: the node may
/// be alive but stalled, and the call's time is up anyway.
pub fn rides_out(error: &RedisError) -> bool {
    !error.is_timeout() && !matches!(error.retry_method(), RetryMethod::NoRetry)
}

/// Sends `call` by its script's hash, and once more with its source when the master did not know
/// the hash.
async fn send_by_hash(
    connection: &mut SlotRoutedConnection,
    slot: u16,
    call: &ScriptCall<'_>,
) -> Result<Value, RedisError> {
    let answer = send(connection, slot, call, Naming::ByHash).await;
    if let Ok(Value::ServerError(error)) = &answer {
        if let Some(naming) = Naming::ByHash.resend_after(error.code()) {
            return send(connection, slot, call, naming).await;
        }
    }
    answer
}

async fn send(
    connection: &mut SlotRoutedConnection,
    slot: u16,
    call: &ScriptCall<'_>,
    naming: Naming,
) -> Result<Value, RedisError> {
    let mut command = redis::Cmd::new();
    for word in call.command(naming) {
        command.arg(word);
    }
    let route = Route::new(slot, SlotAddr::Master);
    connection
        .route_command(
            command,
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_cluster_by_its_seeds() {
        let seed = |port| NodeConfig {
            port,
            ..NodeConfig::default()
        };
        assert_eq!(
            cluster_name(&[seed(7000), seed(7001)]),
            "cluster[127.0.0.1:7000, 127.0.0.1:7001]"
        );
    }

    #[test]
    fn rides_out_a_failover_but_not_a_refusal() {
        let down = RedisError::from((redis::ErrorKind::Io, "connection refused"));
        assert!(rides_out(&down));
        let script_error = redis::make_extension_error("ERR".into(), Some("wrong".into()));
        assert!(!rides_out(&script_error));
        let timeout = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(!rides_out(&timeout));
    }
}
