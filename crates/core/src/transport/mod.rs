//! What carries the commands: the wire (the sans-IO half of the JS thread's socket), the runtime's
//! redis-rs connection to each node (or to a Redis Cluster, with each master's own connection for
//! the writes that wait for replicas, or to the master Sentinel names) with the batching of its
//! requests, and the runtime that connection lives on.

pub mod batch;
pub mod cluster;
pub mod cluster_masters;
pub(crate) mod connect;
pub mod dial;
pub mod node;
pub mod runtime;
pub mod sentinel;
mod slot;
pub mod slot_map;
pub mod wire;
