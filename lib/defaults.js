'use strict'

// The defaults, as JS sees them. They are written once, in the core (crates/core/src/defaults.rs),
// and exported by the binding: nothing in lib/ repeats their numbers.

const { binding } = require('./native')

/** What `acquire`, `tryAcquire` and `using` fall back on when neither the call nor the locker sets it. */
const LOCK_DEFAULTS = Object.freeze({
  ttl: binding.DEFAULT_TTL,
  wait: binding.DEFAULT_WAIT,
  autoExtend: binding.DEFAULT_AUTO_EXTEND,
  replicas: binding.DEFAULT_REPLICAS,
  replicasTimeout: binding.DEFAULT_REPLICAS_TIMEOUT,
})

/** Connection options that `defaults` may set for every node. */
const CONNECTION_DEFAULTS = Object.freeze({
  connectTimeout: binding.DEFAULT_CONNECT_TIMEOUT,
  commandTimeout: binding.DEFAULT_COMMAND_TIMEOUT,
  keyPrefix: '',
  driftFactor: binding.DEFAULT_DRIFT_FACTOR,
})

const DEFAULT_HOST = binding.DEFAULT_HOST
const DEFAULT_PORT = binding.DEFAULT_PORT
const DEFAULT_SENTINEL_PORT = binding.DEFAULT_SENTINEL_PORT

module.exports = { LOCK_DEFAULTS, CONNECTION_DEFAULTS, DEFAULT_HOST, DEFAULT_PORT, DEFAULT_SENTINEL_PORT }
