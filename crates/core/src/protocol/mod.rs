//! What ironlock says to Redis and how it reads the answers: the scripts, the key names, the
//! tokens, and RESP.

pub mod chunks;
pub mod handshake;
pub mod keys;
pub mod resp;
pub mod script_reply;
pub mod scripts;
pub mod token;
