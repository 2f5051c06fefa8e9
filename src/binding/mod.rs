pub mod completions;
pub mod locker;
pub mod options;
mod runtime;
mod wire;
