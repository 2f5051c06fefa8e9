//! Every default of ironlock, written once. The core builds its configuration from these; the
//! binding exports them to JS (`DEFAULT_*` in `binding.js`), where `lib/` reads them instead of
//! repeating the numbers; README.md and index.d.ts state them for users.

use std::time::Duration;

/// How long a lock lives unless extended, in ms.
pub const TTL_MS: u32 = 30_000;
/// How long `acquire` and `using` wait while the lock is busy, in ms.
pub const WAIT_MS: u32 = 10_000;
/// Whether `using` (and the Express and Nest helpers) extend the lock while the work runs.
pub const AUTO_EXTEND: bool = true;
/// How many replicas must acknowledge a lock (and its fence) before it is granted; 0 grants it
/// as soon as the master wrote it.
pub const REPLICAS: u32 = 0;
/// How long an acquire that asks for replicas waits for their acknowledgements, in ms: a
/// replica on the same network answers within a few ms, and one that takes a second is behind
/// or cut off. Redisson's `slavesSyncTimeout` is the same second.
pub const REPLICAS_TIMEOUT_MS: u32 = 1_000;
/// How long to wait for a connection, in ms.
pub const CONNECT_TIMEOUT_MS: u32 = 10_000;
/// How long to wait for any one command, in ms.
pub const COMMAND_TIMEOUT_MS: u32 = 5_000;
/// Share of the TTL taken off a lock's validity for clock drift (Redlock's `driftFactor`).
pub const DRIFT_FACTOR: f64 = 0.01;
/// The Redis a target names when it leaves out the host.
pub const HOST: &str = "127.0.0.1";
/// The Redis port a target names when it leaves out the port.
pub const PORT: u16 = 6379;
/// The port of a sentinel a Sentinel target names without one: Redis Sentinel's own.
pub const SENTINEL_PORT: u16 = 26379;

pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(CONNECT_TIMEOUT_MS as u64);
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(COMMAND_TIMEOUT_MS as u64);
