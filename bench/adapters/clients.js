'use strict'

// The ioredis clients a peer locks through: one per URL (one node, or Redlock's masters), or
// with `cluster` one Cluster client that takes the URLs as its seeds and routes each key to its
// master.

const Redis = require('ioredis')

function redisClients ({ urls, cluster }) {
  return cluster ? [new Redis.Cluster(urls)] : urls.map((url) => new Redis(url))
}

module.exports = { redisClients }
