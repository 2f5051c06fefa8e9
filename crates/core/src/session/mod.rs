//! Every lock's life in this process: the first attempt, the queue of local waiters, hand-over,
//! the hold and its watchdog, release and loss.

pub mod cancel;
pub mod handover;
pub mod lifecycle;
pub mod lock;
pub mod wait;
pub mod watchdog;
