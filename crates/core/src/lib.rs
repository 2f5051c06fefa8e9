//! The ironlock lock protocol over Redis, with no knowledge of Node.
//!
//! Data flows one way: a [`Locker`](session::Locker) takes requests and gives back completions; its
//! [`session`] decides every lock's life (attempt, queue, hand-over, hold, watchdog, release,
//! loss); a [`topology`] says where each command goes (one Redis, Redlock, memory); the
//! [`transport`]s carry the commands, encoded and decoded by one [`protocol`]. The napi binding
//! (the crate one level up) only converts JS values into [`Request`](session::Request)s and [`Completion`](session::Completion)s back.

pub mod config;
pub mod defaults;
pub mod error;
pub mod protocol;
pub mod session;
pub mod topology;
pub mod transport;

pub use config::{LockerConfig, NodeConfig, Secret, SentinelConfig, Target, TlsConfig};
pub use error::{LockError, QuorumVotes};
pub use protocol::keys::LockKeys;
pub use protocol::lock::HeldLock;
pub use session::cancel::CancelToken;
pub use session::lifecycle::Lifecycle;
pub use session::options::AcquireOptions;
pub use session::watchdog::{loss_margin, Upkeep, Watchdog};
pub use topology::{Attempt, Replicas, Topology};
