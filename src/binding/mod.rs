pub mod completions;
mod copied;
pub mod locker;
pub mod options;
mod runtime;
mod wire;
