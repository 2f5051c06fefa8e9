'use strict'

// The Redis clients a `redlock` user hands to `ironlock/redlock`: ioredis 4 and 5, node-redis 3
// and 4. Their connection options tell ironlock where to lock; the clients themselves only carry
// the release or extension of a lock rebuilt from stored values (which ironlock's connections
// never held), as `redlock` would have sent it.

const { clientOptions } = require('./target')
const { invalidArgValue } = require('./errors')

/** node-redis 4+ keeps its address under `socket` (or a `url` it has parsed into `socket`). */
function isNodeRedis4(options) {
  return !('host' in options) && ('socket' in options || 'url' in options || 'database' in options)
}

/** ioredis-style options (host, port, username, password, db, tls, …) for any supported client. */
function connectionOptionsOf(client) {
  const options = client.options !== null && typeof client.options === 'object' ? client.options : {}
  if (isNodeRedis4(options)) {
    const socket = options.socket ?? {}
    return {
      host: socket.host,
      port: socket.port,
      username: options.username,
      password: options.password,
      db: options.database,
      tls: socket.tls,
      connectTimeout: socket.connectTimeout,
    }
  }
  // ioredis, and node-redis 3 (whose password may be `auth_pass`).
  const { password = options.auth_pass, ...rest } = options
  return { ...rest, password }
}

/**
 * What ironlock's Locker is given for one client of `count`: its connection options, with `db`
 * when the shim was given one. A client without options (a jest or vitest auto-mock) reads as
 * ioredis's defaults; it connects only if used. An ioredis Cluster is given as it is, a Redis
 * Cluster target, when it is the only client: ironlock takes no Redlock over several clusters,
 * nor over several Sentinel setups (an ioredis client with `sentinels`).
 */
function targetOf(client, index, db, count) {
  if (client === null || typeof client !== 'object') {
    const error = new TypeError(`The "clients[${index}]" argument must be a Redis client (ioredis or node-redis).`)
    error.code = 'ERR_INVALID_ARG_TYPE'
    throw error
  }
  if (client.isCluster === true) {
    if (count > 1) {
      throw invalidArgValue(`clients[${index}]`, 'is a Redis Cluster client: ironlock/redlock locks on one Cluster client, or on several independent masters, not on several clusters')
    }
    return client
  }
  const options = connectionOptionsOf(client)
  if (options.sentinels != null && count > 1) {
    throw invalidArgValue(`clients[${index}]`, 'is a Redis Sentinel client: ironlock/redlock locks on one Sentinel client, or on several independent masters, not on several Sentinel setups')
  }
  return clientOptions(db === undefined ? options : { ...options, db })
}

/** `host:port` of a client (a Cluster's startup nodes, comma-separated), to match ironlock's per-node errors to clients. */
function addressOf(client) {
  if (client === null || typeof client !== 'object') return null
  if (client.isCluster === true) {
    const nodes = Array.isArray(client.startupNodes) ? client.startupNodes : []
    return nodes.map(startupNodeAddress).join(',')
  }
  const { host, port } = connectionOptionsOf(client)
  return `${host ?? '127.0.0.1'}:${port ?? 6379}`
}

/** `host:port` of one of an ioredis Cluster's startup nodes: an object, a port or a URL. */
function startupNodeAddress(node) {
  if (typeof node === 'number') return `127.0.0.1:${node}`
  if (typeof node === 'object' && node !== null) return `${node.host ?? '127.0.0.1'}:${node.port ?? 6379}`
  try {
    const url = new URL(String(node))
    return `${url.hostname || '127.0.0.1'}:${url.port || 6379}`
  } catch {
    return String(node).replace(/^.*@/, '')
  }
}

/** `redis://host:port` (`redis+cluster://host:port,…` for a Cluster): a client as inspect shows it (never its password). */
function labelOf(client) {
  const cluster = client?.isCluster === true
  const { tls } = cluster ? client.options?.redisOptions ?? {} : connectionOptionsOf(client)
  return `${tls ? 'rediss' : 'redis'}${cluster ? '+cluster' : ''}://${addressOf(client)}`
}

/**
 * Runs `source` with `keys` and `args` on `client`, rejecting after `timeout` ms. ioredis and
 * node-redis 4 return promises; node-redis 3 takes a callback.
 */
function runScript(client, source, keys, args, timeout) {
  let timer
  const reply = new Promise((resolve, reject) => {
    const callback = (error, result) => (error ? reject(error) : resolve(result))
    if (typeof client.eval !== 'function') {
      reject(new Error('the client has no eval method'))
    } else if (typeof client.status === 'string') {
      // ioredis
      Promise.resolve(client.eval(source, keys.length, ...keys, ...args)).then(resolve, reject)
    } else if (typeof client.isOpen === 'boolean') {
      // node-redis 4
      Promise.resolve(client.eval(source, { keys, arguments: args })).then(resolve, reject)
    } else {
      // node-redis 3
      client.eval(source, keys.length, ...keys, ...args, callback)
    }
  })
  const expiry = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`the client did not answer within ${timeout} ms`)), timeout)
  })
  return Promise.race([reply, expiry]).finally(() => clearTimeout(timer))
}

// A lock rebuilt from stored values is released and extended by comparing its value, as ironlock's
// own scripts do: another holder's lock is never deleted or extended.

/**
 * Deletes the keys that still hold ARGV[1] and announces each release to ironlock's waiters with
 * `publish`: PUBLISH, or on a Redis Cluster SPUBLISH, on the key's shard, where ironlock listens.
 */
const releaseByValueScript = (publish) => `
local released = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    if ARGV[i + 1] ~= '' then redis.call('${publish}', ARGV[i + 1], ARGV[1]) end
    released = released + 1
  end
end
return released
`
const RELEASE_BY_VALUE = releaseByValueScript('PUBLISH')
const RELEASE_BY_VALUE_SHARDED = releaseByValueScript('SPUBLISH')

/** Gives every key ARGV[2] ms more, only if all still hold ARGV[1]. */
const EXTEND_BY_VALUE = `
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) ~= ARGV[1] then return 0 end
end
for i, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ARGV[2]) end
return #KEYS
`

/**
 * The channel ironlock's waiters hear a release of `redisKey` on (the core's `release_channel`):
 * `{key}:released`, or `key:released` when the key has a hash tag. A key with a `}` but no hash
 * tag gets a slot-derived name there; it is not announced, and its waiters notice at the
 * holder's TTL or their next attempt.
 */
function releaseChannel(redisKey) {
  const open = redisKey.indexOf('{')
  const close = open >= 0 ? redisKey.indexOf('}', open + 1) : -1
  if (close > open + 1) return `${redisKey}:released`
  if (!redisKey.includes('}')) return `{${redisKey}}:released`
  return ''
}

/** Resolves how many of `keys` held `value` on this client's Redis and are now released. */
async function releaseByValue(client, keys, value, timeout) {
  const prefix = connectionOptionsOf(client).keyPrefix ?? ''
  const channels = keys.map((key) => releaseChannel(`${prefix}${key}`))
  const script = client.isCluster === true ? RELEASE_BY_VALUE_SHARDED : RELEASE_BY_VALUE
  return Number(await runScript(client, script, keys, [value, ...channels], timeout))
}

/** Resolves how many of `keys` were extended by `ttl` ms: all of them, or 0 if one no longer held `value`. */
async function extendByValue(client, keys, value, ttl, timeout) {
  return Number(await runScript(client, EXTEND_BY_VALUE, keys, [value, String(ttl)], timeout))
}

module.exports = { targetOf, addressOf, labelOf, releaseByValue, extendByValue }
