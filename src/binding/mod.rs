pub mod completions;
mod copied;
pub mod defaults;
pub mod layout;
pub mod locker;
pub mod messages;
pub mod options;
