'use strict'

// redlock v4 (the classic node-redlock API: lock()/unlock()).

const { redisClients } = require('./clients')
const Redlock = require('redlock')
const { RETRY_DELAY_MS, RETRY_JITTER_MS, RETRIES_PER_CALL, retryUntil } = require('./polling')

function create ({ urls, cluster, sentinel, maxWaitMs }) {
  const clients = redisClients({ urls, cluster, sentinel })
  const redlock = new Redlock(clients, {
    retryCount: RETRIES_PER_CALL,
    retryDelay: RETRY_DELAY_MS,
    retryJitter: RETRY_JITTER_MS
  })
  return {
    name: 'redlock',
    acquire: (key, ttlMs) => retryUntil(maxWaitMs, () => redlock.lock(key, ttlMs)),
    release: (lock) => lock.unlock(),
    close: () => Promise.all(clients.map((client) => client.quit()))
  }
}

module.exports = { name: 'redlock', multiNode: true, cluster: true, sentinel: true, create }
