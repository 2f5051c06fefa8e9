//! Each master of a Redis Cluster on a connection of its own, for the writes that wait for
//! replicas (`replicas: n`). `WAIT` counts what its connection wrote and blocks that connection
//! until it answers, so those calls cannot share redis-rs's cluster connection with every other
//! call. Each master's is a [`NodeConnection::for_replicated_writes`], opened to the address the
//! slot map names ([`SlotMap`], read through the cluster connection), and the calls for one
//! master travel as one pipeline with one `WAIT` behind them.
//!
//! What redis-rs does for the cluster connection is done here: a call answered MOVED, ASK or
//! TRYAGAIN (its slot moved or is moving), or whose master is unreachable or no master at all
//! (a failover), reads the map again and goes again after a pause until its time is up. A script
//! that ran may so run twice, which the protocol's scripts allow (an attempt finding its own token
//! took the key), and the second `WAIT` then counts the first run's writes too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use redis::RedisError;
use tokio::time::Instant;

use super::cluster::{rides_out, ClusterConnection};
use super::node::NodeConnection;
use super::slot_map::{SlotMap, SlotMaps};
use crate::config::NodeConfig;
use crate::error::LockError;
use crate::protocol::replicas::Replicas;
use crate::protocol::resp;
use crate::protocol::script_call::ScriptCall;

/// The pause before a call that met a moving slot or a failover goes again, as on the cluster
/// connection.
const PAUSE: Duration = Duration::from_millis(100);

/// A script call for the master of `slot` (every key of the call is in it).
pub struct SlotCall<'a> {
    pub slot: u16,
    pub call: ScriptCall<'a>,
}

/// A call's reply and how many replicas of its master acknowledged it.
pub type Acknowledged = Result<(resp::Reply, u32), LockError>;

/// Each master's connection, by its address.
type Connections = HashMap<(String, u16), Arc<NodeConnection>>;

pub struct ClusterMasters {
    /// Every master's credentials and TLS settings: the first seed's, as for every node.
    template: NodeConfig,
    connect_timeout: Duration,
    command_timeout: Duration,
    /// The topology's one slot map, forgotten once a call met a master that no longer serves
    /// its slot.
    slots: Arc<SlotMaps>,
    /// `None` once closed.
    connections: Mutex<Option<Connections>>,
}

/// The calls (by index) that go to one master in one pipeline.
struct Round {
    master: Arc<NodeConnection>,
    calls: Vec<usize>,
}

impl ClusterMasters {
    pub fn new(
        seeds: &[NodeConfig],
        connect_timeout: Duration,
        command_timeout: Duration,
        slots: Arc<SlotMaps>,
    ) -> Result<Self, String> {
        let template = seeds.first().ok_or("a cluster needs at least one seed")?;
        Ok(Self {
            template: NodeConfig {
                db: 0,
                origin: None,
                ..template.clone()
            },
            connect_timeout,
            command_timeout,
            slots,
            connections: Mutex::new(Some(HashMap::new())),
        })
    }

    /// Runs each of `calls` on the master of its slot, the calls of each master in one pipeline
    /// with `WAIT` for `replicas` behind them, for the lock `key` (which errors name): each
    /// call's reply and how many replicas of its master acknowledged it. A call may take
    /// `replicas.timeout` longer than the cluster connection's calls, the time `WAIT` may hold
    /// it.
    pub async fn run_each_then_wait(
        &self,
        cluster: &ClusterConnection,
        key: &str,
        calls: &[SlotCall<'_>],
        replicas: Replicas,
    ) -> Vec<Acknowledged> {
        let deadline = Instant::now() + cluster.call_timeout() + replicas.timeout;
        let mut answers: Vec<Option<Acknowledged>> = calls.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..calls.len()).collect();
        let mut last_failure = cluster.failure(key, &self.no_answer());
        while !pending.is_empty() {
            let (rounds, mut again) = match self.rounds(cluster, key, calls, &pending).await {
                Ok((rounds, masterless)) => {
                    if let Some(&index) = masterless.first() {
                        let message = format!("no master serves hash slot {}", calls[index].slot);
                        last_failure = cluster.failure(key, &message);
                    }
                    (rounds, masterless)
                }
                Err(failure @ LockError::Connection { .. }) => {
                    last_failure = failure;
                    (Vec::new(), std::mem::take(&mut pending))
                }
                Err(failure) => {
                    fail_all(&mut answers, pending, &failure);
                    break;
                }
            };
            let sent = rounds.iter().map(|round| {
                let pipeline: Vec<&ScriptCall<'_>> = round
                    .calls
                    .iter()
                    .map(|&index| &calls[index].call)
                    .collect();
                async move {
                    round
                        .master
                        .run_each_then_wait(key, &pipeline, replicas)
                        .await
                }
            });
            let Ok(results) = tokio::time::timeout_at(deadline, join_all(sent)).await else {
                again.extend(rounds.into_iter().flat_map(|round| round.calls));
                fail_all(&mut answers, again, &last_failure);
                break;
            };
            for (round, result) in rounds.into_iter().zip(results) {
                let outcome = settle(key, round, result, &mut answers);
                if let Some((calls, failure)) = outcome {
                    again.extend(calls);
                    last_failure = failure;
                }
            }
            if again.is_empty() {
                break;
            }
            if Instant::now() + PAUSE >= deadline {
                fail_all(&mut answers, again, &last_failure);
                break;
            }
            self.slots.forget();
            tokio::time::sleep(PAUSE).await;
            pending = again;
        }
        answers
            .into_iter()
            .map(|answer| answer.unwrap_or_else(|| Err(last_failure.clone())))
            .collect()
    }

    /// Later calls fail with [`LockError::Closed`]; each master's connection ends with its last
    /// user.
    pub fn close(&self) {
        let connections = self.connections.lock().expect("connections lock").take();
        for connection in connections.into_iter().flat_map(Connections::into_values) {
            connection.close();
        }
    }

    fn no_answer(&self) -> String {
        format!("no answer within {} ms", self.command_timeout.as_millis())
    }

    /// The `pending` calls grouped by the master of their slot, reading the slot map first if
    /// it is not known; and the calls whose slot has no master the map knows.
    async fn rounds(
        &self,
        cluster: &ClusterConnection,
        key: &str,
        calls: &[SlotCall<'_>],
        pending: &[usize],
    ) -> Result<(Vec<Round>, Vec<usize>), LockError> {
        let map = self.slot_map(cluster, key).await?;
        let mut rounds: Vec<Round> = Vec::new();
        let mut masterless = Vec::new();
        for &index in pending {
            let Some(master) = map.master_of(calls[index].slot) else {
                masterless.push(index);
                continue;
            };
            let connection = self.connection_to(key, &master.host, master.port)?;
            match rounds
                .iter_mut()
                .find(|round| Arc::ptr_eq(&round.master, &connection))
            {
                Some(round) => round.calls.push(index),
                None => rounds.push(Round {
                    master: connection,
                    calls: vec![index],
                }),
            }
        }
        Ok((rounds, masterless))
    }

    /// The slot map as last read, or read now for the lock `key` (which errors name); a new map
    /// closes the connections of nodes that serve no slot any more.
    pub async fn slot_map(
        &self,
        cluster: &ClusterConnection,
        key: &str,
    ) -> Result<Arc<SlotMap>, LockError> {
        if let Some(map) = self.slots.current() {
            return Ok(map);
        }
        let map = Arc::new(SlotMap::new(cluster.slot_masters(key).await?));
        if let Some(connections) = &mut *self.connections.lock().expect("connections lock") {
            connections.retain(|(host, port), connection| {
                let serves = map.serves(host, *port);
                if !serves {
                    connection.close();
                }
                serves
            });
        }
        self.slots.set(map.clone());
        Ok(map)
    }

    /// The connection of its own to the master at `host:port`, made on first use (it connects on
    /// its first call).
    fn connection_to(
        &self,
        key: &str,
        host: &str,
        port: u16,
    ) -> Result<Arc<NodeConnection>, LockError> {
        let mut connections = self.connections.lock().expect("connections lock");
        let Some(connections) = &mut *connections else {
            return Err(LockError::Closed {
                key: key.to_owned(),
            });
        };
        let address = (host.to_owned(), port);
        if let Some(connection) = connections.get(&address) {
            return Ok(connection.clone());
        }
        let node = NodeConfig {
            host: host.to_owned(),
            port,
            ..self.template.clone()
        };
        let connection = NodeConnection::new(&node, self.connect_timeout, self.command_timeout)
            .map_err(|message| LockError::connection(key, &node.label(), &message))?;
        let connection = Arc::new(connection.for_replicated_writes());
        connections.insert(address, connection.clone());
        Ok(connection)
    }
}

/// Answers the calls of `round` from the pipeline's `result`; returns those that go again (their
/// slot moving or moved, their master gone) with the failure they met.
fn settle(
    key: &str,
    round: Round,
    result: Result<(Vec<Result<resp::Reply, RedisError>>, u32), LockError>,
    answers: &mut [Option<Acknowledged>],
) -> Option<(Vec<usize>, LockError)> {
    match result {
        Ok((replies, acknowledged)) => {
            let mut again = Vec::new();
            let mut last_failure = None;
            for (index, reply) in round.calls.into_iter().zip(replies) {
                match reply {
                    Ok(reply) => answers[index] = Some(Ok((reply, acknowledged))),
                    Err(error) => {
                        let failure = round.master.call_error(key, &error);
                        if rides_out(&error) {
                            again.push(index);
                            last_failure = Some(failure);
                        } else {
                            answers[index] = Some(Err(failure));
                        }
                    }
                }
            }
            last_failure.map(|failure| (again, failure))
        }
        // The master unreachable, or no longer one (`WAIT` refused on a replica): the map may
        // say who serves the slot now.
        Err(failure @ LockError::Connection { .. }) => Some((round.calls, failure)),
        Err(failure) => {
            fail_all(answers, round.calls, &failure);
            None
        }
    }
}

/// Answers each of `calls` that has no answer yet with `failure`.
fn fail_all(answers: &mut [Option<Acknowledged>], calls: Vec<usize>, failure: &LockError) {
    for index in calls {
        answers[index].get_or_insert_with(|| Err(failure.clone()));
    }
}
