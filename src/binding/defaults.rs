//! The core's defaults ([`ironlock_core::defaults`]), exported to JS: `lib/` reads them from here
//! instead of writing them again.

use ironlock_core::defaults;
use napi_derive::napi;

/// ms a lock lives unless extended.
#[napi]
pub const DEFAULT_TTL: u32 = defaults::TTL_MS;
/// ms `acquire` and `using` wait while the lock is busy.
#[napi]
pub const DEFAULT_WAIT: u32 = defaults::WAIT_MS;
/// Whether `using` extends the lock while its work runs.
#[napi]
pub const DEFAULT_AUTO_EXTEND: bool = defaults::AUTO_EXTEND;
/// How many replicas must acknowledge a lock before it is granted.
#[napi]
pub const DEFAULT_REPLICAS: u32 = defaults::REPLICAS;
/// ms an acquire with `replicas` waits for their acknowledgements.
#[napi]
pub const DEFAULT_REPLICAS_TIMEOUT: u32 = defaults::REPLICAS_TIMEOUT_MS;
/// ms to wait for a connection.
#[napi]
pub const DEFAULT_CONNECT_TIMEOUT: u32 = defaults::CONNECT_TIMEOUT_MS;
/// ms to wait for any one command.
#[napi]
pub const DEFAULT_COMMAND_TIMEOUT: u32 = defaults::COMMAND_TIMEOUT_MS;
/// Share of the TTL taken off `expiresAt` for clock drift.
#[napi]
pub const DEFAULT_DRIFT_FACTOR: f64 = defaults::DRIFT_FACTOR;
/// The host of a target that names none.
#[napi]
pub const DEFAULT_HOST: &str = defaults::HOST;
/// The port of a target that names none.
#[napi]
pub const DEFAULT_PORT: u32 = defaults::PORT as u32;
/// The port of a sentinel that names none.
#[napi]
pub const DEFAULT_SENTINEL_PORT: u32 = defaults::SENTINEL_PORT as u32;
