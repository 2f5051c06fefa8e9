'use strict'

// @sesamecare-oss/redlock: maintained fork of redlock v5 (acquire()/release()).

const { redisClients } = require('./clients')
const { Redlock } = require('@sesamecare-oss/redlock')
const { RETRY_DELAY_MS, RETRY_JITTER_MS, RETRIES_PER_CALL, retryUntil } = require('./polling')

// Passed to acquire() only, so release() keeps the library defaults.
const ACQUIRE_SETTINGS = {
  retryCount: RETRIES_PER_CALL,
  retryDelay: RETRY_DELAY_MS,
  retryJitter: RETRY_JITTER_MS
}

function create ({ urls, cluster, sentinel, maxWaitMs }) {
  const clients = redisClients({ urls, cluster, sentinel })
  const redlock = new Redlock(clients)
  // Every failed attempt is emitted as 'error' (ResourceLockedError); without a
  // listener the EventEmitter would throw.
  redlock.on('error', () => {})
  return {
    name: 'sesame-redlock',
    acquire: (key, ttlMs) => retryUntil(maxWaitMs, () => redlock.acquire([key], ttlMs, ACQUIRE_SETTINGS)),
    release: (lock) => redlock.release(lock),
    close: () => Promise.all(clients.map((client) => client.quit()))
  }
}

module.exports = { name: 'sesame-redlock', multiNode: true, cluster: true, sentinel: true, create }
