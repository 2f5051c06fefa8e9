'use strict'

// redis-semaphore: Mutex on one node or a Cluster client, RedlockMutex on several nodes.

const { redisClients } = require('./clients')
const { Mutex, RedlockMutex } = require('redis-semaphore')
const { RETRY_DELAY_MS } = require('./polling')

function create ({ urls, cluster, sentinel, maxWaitMs }) {
  const clients = redisClients({ urls, cluster, sentinel })
  return {
    name: 'redis-semaphore',
    async acquire (key, ttlMs) {
      const options = {
        lockTimeout: ttlMs,
        acquireTimeout: maxWaitMs,
        retryInterval: RETRY_DELAY_MS,
        // No background refresh: the other peers' acquire() does not extend either.
        refreshInterval: 0
      }
      // A mutex object holds one identifier, so each acquisition needs its own.
      const mutex = clients.length === 1
        ? new Mutex(clients[0], key, options)
        : new RedlockMutex(clients, key, options)
      await mutex.acquire()
      return mutex
    },
    release: (mutex) => mutex.release(),
    // Mutex and RedlockMutex store the lock under `mutex:<key>`.
    storedKey: (key) => `mutex:${key}`,
    close: () => Promise.all(clients.map((client) => client.quit()))
  }
}

module.exports = { name: 'redis-semaphore', multiNode: true, cluster: true, sentinel: true, create }
