'use strict'

// ironlock's public API. The generated `binding.js` loader is an implementation detail.

const { Locker, Lock } = require('./lib/locker')
const {
  LockError,
  LockBusyError,
  LockLostError,
  QuorumError,
  LockConnectionError,
  LockKeyTypeError,
  ReplicationError,
} = require('./lib/errors')

let defaultLocker = null

/** The locker behind the top-level functions, created on first use from REDIS_URL. */
function getDefaultLocker() {
  if (defaultLocker === null) defaultLocker = new Locker()
  return defaultLocker
}

/** Points the top-level functions at `target`; the previous default locker, if any, is closed. */
function configure(target, defaults) {
  const next = new Locker(target, defaults)
  const previous = defaultLocker
  defaultLocker = next
  if (previous !== null) previous.close()
  return next
}

/** Closes the default locker; the next top-level call opens a new one. */
async function close() {
  const current = defaultLocker
  defaultLocker = null
  if (current !== null) await current.close()
}

module.exports = {
  Locker,
  Lock,
  LockError,
  LockBusyError,
  LockLostError,
  QuorumError,
  LockConnectionError,
  LockKeyTypeError,
  ReplicationError,
  configure,
  close,
  getDefaultLocker,
  acquire: (key, options) => getDefaultLocker().acquire(key, options),
  tryAcquire: (key, options) => getDefaultLocker().tryAcquire(key, options),
  release: (lock) => getDefaultLocker().release(lock),
  extend: (lock, ttl) => getDefaultLocker().extend(lock, ttl),
  using: (key, options, fn) => getDefaultLocker().using(key, options, fn),
}
