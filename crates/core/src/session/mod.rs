//! Every lock's life in this process: the first attempt, the queue of local waiters, hand-over,
//! the hold and its watchdog, release and loss. [`Locker`] is the way in.

mod acquire;
mod attempt;
pub mod cancel;
mod clean_up;
mod extend;
mod foreign_poll;
mod give_back;
pub mod handover;
mod head;
mod held;
pub mod lifecycle;
mod locker;
mod on_wire;
mod operations;
pub mod options;
mod release;
mod request;
pub mod wait;
mod wait_driver;
pub mod watchdog;

pub use locker::{Locker, ToWire};
pub use on_wire::{LockWire, WireOutput};
pub use request::{Completion, CompletionSink, Outcome, Request};

#[cfg(test)]
mod tests;
