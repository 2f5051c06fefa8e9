//! What carries the commands: the wire (the sans-IO half of the JS thread's socket) and the
//! batching of the tokio connection.

pub mod batch;
pub mod wire;
