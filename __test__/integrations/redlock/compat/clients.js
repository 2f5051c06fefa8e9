'use strict'

// The Redis clients `redlock` users build their Redlock from, one maker per library and major
// version: ioredis 4 and 5, node-redis 3 and 4. Each makes a client for one test server (and a
// database), and gives the few commands the tests use the same promise shape whatever the
// library. Every client made is closed by `closeAll()`.

const IORedis5 = require('ioredis')
const IORedis4 = require('ioredis4')
const redis3 = require('redis3')
const redis4 = require('redis4')

const made = []

/** A client of `kind` for `server`; `raw` is what the user would hand to `new Redlock([...])`. */
async function makeClient(kind, server, { db = 0 } = {}) {
  const client = await KINDS[kind](server, db)
  made.push(client)
  return client
}

function ioredis(Redis) {
  return async (server, db) => {
    const raw = new Redis({ host: server.host, port: server.port, db, maxRetriesPerRequest: 1 })
    raw.on('error', () => {})
    return {
      raw,
      get: (key) => raw.get(key),
      set: (key, value, ttl) => raw.set(key, value, 'PX', ttl),
      sadd: (key, member) => raw.sadd(key, member),
      pttl: (key) => raw.pttl(key),
      exists: (key) => raw.exists(key),
      close: () => raw.disconnect(),
    }
  }
}

const KINDS = {
  'ioredis 5': ioredis(IORedis5),
  'ioredis 4': ioredis(IORedis4),
  async 'node-redis 3'(server, db) {
    const raw = redis3.createClient({ host: server.host, port: server.port, db })
    raw.on('error', () => {})
    const call = (command, ...args) => new Promise((resolve, reject) =>
      raw[command](...args, (error, reply) => (error ? reject(error) : resolve(reply))))
    return {
      raw,
      get: (key) => call('get', key),
      set: (key, value, ttl) => call('set', key, value, 'PX', ttl),
      sadd: (key, member) => call('sadd', key, member),
      pttl: (key) => call('pttl', key),
      exists: (key) => call('exists', key),
      close: () => raw.end(false),
    }
  },
  async 'node-redis 4'(server, db) {
    const raw = redis4.createClient({ socket: { host: server.host, port: server.port, reconnectStrategy: false }, database: db })
    raw.on('error', () => {})
    await raw.connect()
    return {
      raw,
      get: (key) => raw.get(key),
      set: (key, value, ttl) => raw.set(key, value, { PX: ttl }),
      sadd: (key, member) => raw.sAdd(key, member),
      pttl: (key) => raw.pTTL(key),
      exists: (key) => raw.exists(key),
      close: () => (raw.isOpen ? raw.disconnect() : undefined),
    }
  },
}

const CLIENT_KINDS = Object.keys(KINDS)

async function closeAll() {
  for (const client of made.splice(0)) await client.close()
}

/**
 * What `read()` resolves once it equals `expected`, or its last answer after `ms`: a Redlock round
 * resolves on a majority, so the last node's write may still be on its way when a call resolves.
 */
async function settled(read, expected, ms = 2000) {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await read()
    if (JSON.stringify(value) === JSON.stringify(expected) || Date.now() > deadline) return value
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

module.exports = { makeClient, closeAll, settled, CLIENT_KINDS }
