'use strict'

// redlock-universal: createLock (SimpleLock) on one node, createRedlock on several.

const Redis = require('ioredis')
const { createLock, createRedlock, IoredisAdapter } = require('redlock-universal')
const { RETRY_DELAY_MS, RETRIES_PER_CALL, retryUntil } = require('./polling')

const RETRY = { retryAttempts: RETRIES_PER_CALL, retryDelay: RETRY_DELAY_MS }

function create ({ urls, maxWaitMs }) {
  const clients = urls.map((url) => new Redis(url))
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
    release: ({ lock, handle }) => lock.release(handle),
    close: () => Promise.all(clients.map((client) => client.quit()))
  }
}

module.exports = { name: 'redlock-universal', multiNode: true, create }
