'use strict'

// redlock-universal: createLock (SimpleLock) on one node or a Cluster client, createRedlock on
// several nodes.

const { redisClients } = require('./clients')
const { createLock, createRedlock, IoredisAdapter } = require('redlock-universal')
const { RETRY_DELAY_MS, RETRIES_PER_CALL, retryUntil } = require('./polling')

const RETRY = { retryAttempts: RETRIES_PER_CALL, retryDelay: RETRY_DELAY_MS }
// On a Cluster client the library loads its release script with SCRIPT LOAD on whichever node
// the client picks for a keyless command, and gives up after one NOSCRIPT retry: until the script
// happens to be on the key's master, a release fails (and the lock stays until its TTL). The
// adapter releases again, as a caller would have to, each try loading it on another node.
const NOSCRIPT_RELEASES = 20

// Whether `err`, or an error it was caused by, is Redis's NOSCRIPT.
function isNoScript (err) {
  for (let cause = err; cause; cause = cause.cause) {
    if (String(cause.message).includes('NOSCRIPT')) return true
  }
  return false
}

async function releaseThroughNoScript (lock, handle) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await lock.release(handle)
    } catch (err) {
      if (attempt === NOSCRIPT_RELEASES || !isNoScript(err)) throw err
    }
  }
}

function create ({ urls, cluster, sentinel, maxWaitMs }) {
  const clients = redisClients({ urls, cluster, sentinel })
  const adapters = clients.map((client) => new IoredisAdapter(client))

  // The library binds a lock object to one key and TTL; reuse it per key as its
  // README does, instead of paying the first-use health-check PING every time.
  const locks = new Map()
  function lockFor (key, ttlMs) {
    const cacheKey = `${ttlMs}:${key}`
    let lock = locks.get(cacheKey)
    if (!lock) {
      lock = adapters.length === 1
        ? createLock({ adapter: adapters[0], key, ttl: ttlMs, ...RETRY })
        : createRedlock({ adapters, key, ttl: ttlMs, ...RETRY })
      locks.set(cacheKey, lock)
    }
    return lock
  }

  return {
    name: 'redlock-universal',
    async acquire (key, ttlMs) {
      const lock = lockFor(key, ttlMs)
      return { lock, handle: await retryUntil(maxWaitMs, () => lock.acquire()) }
    },
    release: ({ lock, handle }) => cluster ? releaseThroughNoScript(lock, handle) : lock.release(handle),
    close: () => Promise.all(clients.map((client) => client.quit()))
  }
}

module.exports = { name: 'redlock-universal', multiNode: true, cluster: true, sentinel: true, create }
