//! What carries the commands: the wire (the sans-IO half of the JS thread's socket) and the
//! batching of the tokio connection, and the runtime that connection lives on.

pub mod batch;
pub mod runtime;
pub mod wire;
