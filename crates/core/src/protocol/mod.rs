//! What ironlock says to Redis and how it reads the answers: the scripts, the key names, the
//! tokens, and RESP. Every connection writes its calls and reads their replies here, so the wire
//! and the redis-rs topologies speak one protocol.

pub mod chunks;
pub mod handshake;
pub mod keys;
pub mod lock;
pub mod replicas;
pub mod resp;
pub mod script_call;
pub mod script_reply;
pub mod scripts;
pub mod token;
