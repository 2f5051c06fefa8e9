//! What carries the commands: the wire (the sans-IO half of the JS thread's socket), the runtime's
//! redis-rs connection to each node (or to a Redis Cluster, or to the master Sentinel names) with
//! the batching of its requests, and the runtime that connection lives on.

pub mod batch;
pub mod cluster;
pub(crate) mod connect;
pub mod dial;
pub mod node;
pub mod runtime;
pub mod sentinel;
mod slot;
pub mod wire;
