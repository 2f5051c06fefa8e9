pub mod completions;
mod copied;
pub mod defaults;
pub mod locker;
pub mod messages;
pub mod options;
mod runtime;
mod wire;
