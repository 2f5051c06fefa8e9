'use strict'

// The ioredis clients a peer locks through: one per URL (one node, or Redlock's masters); with
// `cluster` one Cluster client that takes the URLs as its seeds and routes each key to its
// master; with `sentinel` ({ sentinels, name }) one client that asks the sentinels where the
// master is.

const Redis = require('ioredis')

function redisClients ({ urls, cluster, sentinel }) {
  if (sentinel) return [new Redis({ sentinels: sentinel.sentinels, name: sentinel.name })]
  return cluster ? [new Redis.Cluster(urls)] : urls.map((url) => new Redis(url))
}

module.exports = { redisClients }
