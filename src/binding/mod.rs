pub mod completions;
mod copied;
pub mod layout;
pub mod locker;
pub mod options;
mod runtime;
mod shared;
mod wire;
