//! The ironlock lock protocol over Redis, with no knowledge of Node.
//!
//! Data flows one way: [`Locker`] → [`wait`] / [`watchdog`] → a [`Backend`] → Redis.
//! The napi binding (the crate one level up) converts JS values into [`LockerConfig`] and
//! [`AcquireOptions`], and [`LockError`] back into JS errors; nothing here speaks napi.

pub mod backend;
pub mod cancel;
pub mod config;
pub mod defaults;
pub mod error;
pub mod handover;
pub mod keys;
pub mod lock;
pub mod locker;
pub mod scripts;
pub mod token;
pub mod wait;
pub mod watchdog;
pub mod wire;

pub use backend::{Attempt, Backend};
pub use cancel::CancelToken;
pub use config::{LockerConfig, NodeConfig, Secret, Target, TlsConfig};
pub use error::{LockError, QuorumVotes};
pub use keys::LockKeys;
pub use lock::{AcquireOptions, HeldLock};
pub use locker::Locker;
pub use wait::FirstAttempt;
pub use watchdog::{loss_margin, Upkeep, Watchdog};
