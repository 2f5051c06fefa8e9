'use strict'

// Turns every accepted target form into the native locker's options, and describes targets
// without their passwords.

const { invalidArgType, invalidArgValue, describe } = require('./errors')
const { durationArgument, wholeMilliseconds, objectArgument, wellFormedString, knownOptions } = require('./validate')
const { LOCK_DEFAULTS, CONNECTION_DEFAULTS, DEFAULT_HOST, DEFAULT_PORT } = require('./defaults')

/** What `defaults` may set: the acquire options that make sense for every call, and the connection's. */
const LOCKER_DEFAULTS = Object.freeze([...Object.keys(LOCK_DEFAULTS), ...Object.keys(CONNECTION_DEFAULTS)])
/** What a target written as options may set. */
const NODE_OPTIONS = Object.freeze([
  'host', 'port', 'username', 'password', 'db', 'tls', 'family', 'connectTimeout', 'commandTimeout', 'keyPrefix',
])
/** What a Redis Cluster target written as options may set: its seeds, and what every node shares. */
const CLUSTER_OPTIONS = Object.freeze([
  'cluster', 'username', 'password', 'tls', 'connectTimeout', 'commandTimeout', 'keyPrefix',
])
/** What one seed of a Cluster target written as options may set. */
const SEED_OPTIONS = Object.freeze(['host', 'port', 'username', 'password', 'db', 'tls'])
/** `redis+cluster://host:port,host:port` (`rediss+cluster://` with TLS): a cluster by its seeds. */
const CLUSTER_URL = /^(rediss?)\+cluster:\/\//i

// An ioredis client's options as the redlock shim passes them (with its `db` setting): read like a
// client's, whose options hold many more names than ironlock reads, not checked like a user's.
const CLIENT_OPTIONS = Symbol('ironlock.clientOptions')

/** A target for the options of an ioredis client, changed by ironlock itself. */
function clientOptions(options) {
  return { [CLIENT_OPTIONS]: options }
}

function isIoredisClient(value) {
  return typeof value.options === 'object' && value.options !== null &&
    (typeof value.duplicate === 'function' || typeof value.sendCommand === 'function')
}

function portArgument(port, name) {
  const number = typeof port === 'string' && /^\d+$/.test(port) ? Number(port) : port
  if (typeof number !== 'number') throw invalidArgType(name, 'of type number', port)
  if (!Number.isInteger(number) || number < 1 || number > 65535) {
    throw invalidArgValue(name, `must be a port number from 1 to 65535.${describe(port)}`)
  }
  return number
}

function optionalString(value, name, { secret = false } = {}) {
  if (value === undefined || value === null || value === '') return undefined
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string', value, { secret })
  return value
}

function pem(value, name) {
  if (value === undefined || value === null) return undefined
  if (Buffer.isBuffer(value)) return value.toString('utf8')
  if (Array.isArray(value)) return value.map((each, i) => pem(each, `${name}[${i}]`)).join('\n')
  if (typeof value !== 'string') throw invalidArgType(name, 'a string or Buffer of PEM', value)
  return value
}

// Certificates are checked unless the caller says otherwise: decided here, once, for both the
// wire's Node socket (lib/wire.js) and the native connection.
function tlsOptions(tls, name) {
  if (tls === undefined || tls === null || tls === false) return undefined
  if (tls === true) return { rejectUnauthorized: true }
  if (typeof tls !== 'object') throw invalidArgType(name, 'a boolean or an object', tls)
  if (tls.rejectUnauthorized !== undefined && typeof tls.rejectUnauthorized !== 'boolean') {
    throw invalidArgType(`${name}.rejectUnauthorized`, 'of type boolean', tls.rejectUnauthorized)
  }
  return {
    ca: pem(tls.ca, `${name}.ca`),
    cert: pem(tls.cert, `${name}.cert`),
    key: pem(tls.key, `${name}.key`),
    rejectUnauthorized: tls.rejectUnauthorized !== false,
  }
}

// Redis's SELECT takes a signed 32-bit index (and the native side an unsigned one).
const MAX_DB = 2 ** 31 - 1

/** `received`: how the message shows the value (a URL's path may hold a misplaced password). */
function dbArgument(db, name, received = describe(db)) {
  if (db === undefined || db === null || db === '') return 0
  const number = typeof db === 'string' && /^\d+$/.test(db) ? Number(db) : db
  if (!Number.isInteger(number) || number < 0 || number > MAX_DB) {
    throw invalidArgValue(name, `must be a database number from 0 to ${MAX_DB}.${received}`)
  }
  return number
}

/** `redis://[user:pass@]host:port[/db]` or `rediss://…` → a node plus its connection overrides. */
function parseUrl(text, name) {
  let url
  try {
    url = new URL(text)
  } catch {
    throw invalidArgValue(name, `must be a redis:// or rediss:// URL. Received '${redactUrl(text)}'`)
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw invalidArgValue(name, `must use the redis: or rediss: protocol. Received '${url.protocol}'`)
  }
  const db = url.pathname && url.pathname !== '/' ? url.pathname.slice(1) : undefined
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1') || DEFAULT_HOST,
    port: url.port ? portArgument(url.port, `${name} port`) : DEFAULT_PORT,
    username: optionalString(decodeUserinfo(url.username, text, name), `${name} username`),
    password: optionalString(decodeUserinfo(url.password, text, name), `${name} password`),
    db: dbArgument(db, `${name} database`, ` Received '${redactUrl(text)}'`),
    tls: url.protocol === 'rediss:' ? tlsOptions(true) : undefined,
  }
}

function decodeUserinfo(encoded, text, name) {
  try {
    return decodeURIComponent(encoded)
  } catch {
    throw invalidArgValue(name, `has a malformed %-escape in its user name or password. Received '${redactUrl(text)}'`)
  }
}

/** An options object written like ioredis's (or an ioredis client's `options`). */
function parseNodeOptions(options, name) {
  return {
    host: optionalString(options.host, `${name}.host`) || DEFAULT_HOST,
    port: options.port === undefined || options.port === null ? DEFAULT_PORT : portArgument(options.port, `${name}.port`),
    username: optionalString(options.username, `${name}.username`),
    password: optionalString(options.password, `${name}.password`, { secret: true }),
    db: dbArgument(options.db, `${name}.db`),
    tls: tlsOptions(options.tls, `${name}.tls`),
  }
}

/** Connection settings a target object may carry itself (they override the locker defaults). */
function connectionOverrides(options) {
  const overrides = {}
  for (const field of ['connectTimeout', 'commandTimeout', 'keyPrefix']) {
    if (options[field] !== undefined) overrides[field] = options[field]
  }
  return overrides
}

/** Whether `target` names a Redis Cluster: an ioredis `Cluster`, `{ cluster }` or a cluster URL. */
function isClusterTarget(target) {
  if (typeof target === 'string') return CLUSTER_URL.test(target)
  if (target === null || typeof target !== 'object') return false
  return target.isCluster === true || (target[CLIENT_OPTIONS] === undefined && !isIoredisClient(target) && target.cluster !== undefined)
}

/**
 * A Redis Cluster target → its seeds (nodes a locker finds the rest through) and its connection
 * overrides: `redis+cluster://` URLs, `{ cluster: [seeds], …shared }` and ioredis `Cluster` clients.
 */
function parseCluster(target, name) {
  if (typeof target === 'string') return { seeds: checkedSeeds(parseClusterUrl(target, name), name), overrides: {} }
  if (target.isCluster === true) return parseClusterClient(target, name)
  knownOptions(target, CLUSTER_OPTIONS, name)
  if (!Array.isArray(target.cluster)) {
    throw invalidArgType(`${name}.cluster`, 'an array of seed nodes (redis:// URLs or { host, port } objects)', target.cluster)
  }
  const shared = { username: target.username, password: target.password, tls: target.tls }
  const seeds = Array.from(target.cluster, (seed, index) => {
    const seedName = `${name}.cluster[${index}]`
    if (typeof seed === 'string') return { ...parseNodeOptions(shared, name), ...definedFields(parseUrl(seed, seedName)) }
    if (seed === null || typeof seed !== 'object') {
      throw invalidArgType(seedName, 'a redis:// URL or a { host, port } object', seed)
    }
    knownOptions(seed, SEED_OPTIONS, seedName)
    return parseNodeOptions({ ...shared, ...definedFields(seed) }, seedName)
  })
  return { seeds: checkedSeeds(seeds, name), overrides: connectionOverrides(target) }
}

/** An ioredis `Cluster`: its startup nodes over its `redisOptions`, as its own connections use them. */
function parseClusterClient(cluster, name) {
  const options = cluster.options ?? {}
  const shared = options.redisOptions ?? {}
  const startupNodes = Array.isArray(cluster.startupNodes) ? cluster.startupNodes : []
  const seeds = startupNodes.map((node, index) => {
    const seedName = `${name}.startupNodes[${index}]`
    const given = typeof node === 'string' ? definedFields(parseUrl(node, seedName))
      : typeof node === 'number' ? { port: node } : node
    return parseNodeOptions({ ...shared, db: undefined, ...definedFields(given) }, seedName)
  })
  const overrides = connectionOverrides({ ...shared, keyPrefix: options.keyPrefix ?? shared.keyPrefix })
  return { seeds: checkedSeeds(seeds, name), overrides }
}

/** `redis+cluster://[user:pass@]host:port[,host:port…]` → one node per host, sharing the user info. */
function parseClusterUrl(text, name) {
  const [, scheme] = CLUSTER_URL.exec(text)
  const rest = text.slice(scheme.length + '+cluster://'.length)
  const at = rest.lastIndexOf('@')
  const userinfo = at >= 0 ? `${rest.slice(0, at)}@` : ''
  const hosts = at >= 0 ? rest.slice(at + 1) : rest
  const [authority, path = ''] = hosts.split(/(?=[/?#])/, 2)
  const seeds = authority.split(',')
  if (seeds.length > 1 && seeds.includes('')) {
    throw invalidArgValue(name, `has an empty seed between its commas. Received '${redactUrl(text)}'`)
  }
  return seeds.map((host) => parseUrl(`${scheme.toLowerCase()}://${userinfo}${host}${path}`, name))
}

/** `seeds`, checked to be one cluster's: a node of database 0, the same credentials and TLS on each. */
function checkedSeeds(seeds, name) {
  if (seeds.length === 0) throw invalidArgValue(name, 'must list at least one seed node of the cluster')
  const shared = ({ username, password, tls }) => JSON.stringify([username, password, tls])
  for (const seed of seeds) {
    if (seed.db !== 0) throw invalidArgValue(name, `names database ${seed.db}, but a Redis Cluster has only database 0`)
    if (shared(seed) !== shared(seeds[0])) {
      throw invalidArgValue(name, 'must give every seed the same username, password and TLS settings: the nodes of a cluster share them')
    }
  }
  return seeds
}

/** `object` without its undefined fields, so they do not hide the ones it is spread over. */
function definedFields(object) {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined))
}

function parseNode(target, name) {
  if (typeof target === 'string') return { node: parseUrl(target, name), overrides: {} }
  if (target === null || typeof target !== 'object') {
    throw invalidArgType(name, 'a redis:// URL, an options object or an ioredis client', target)
  }
  const fromClient = target[CLIENT_OPTIONS]
  const client = fromClient !== undefined || isIoredisClient(target)
  const options = fromClient ?? (client ? target.options : target)
  if (options.sentinels != null || options.sentinel != null) {
    throw invalidArgValue(name, 'is a Sentinel target, which this version of ironlock does not support yet')
  }
  if (!client) knownOptions(options, NODE_OPTIONS, name)
  return { node: parseNodeOptions(options, name), overrides: connectionOverrides(options) }
}

/**
 * `'memory://'` (a store of the locker's own) or `'memory://<name>'` (one store per name, shared by
 * every locker on it in this process) → `{ store }`; `undefined` for any other target.
 */
function parseMemory(target) {
  if (typeof target !== 'string' || !/^memory:/i.test(target)) return undefined
  if (!target.startsWith('memory://')) {
    throw invalidArgValue('target', `must be 'memory://' or 'memory://<name>'. Received '${redactUrl(target)}'`)
  }
  // Store names, like keys, must reach the native side as given (see `wellFormedString`).
  return { store: wellFormedString(target.slice('memory://'.length), 'target') }
}

/**
 * Where a locker's target came from, so that a connection error can say it (the native side
 * words it): given, `REDIS_URL` when no target was given, or the built-in default without either.
 */
const TargetOrigin = Object.freeze({ Argument: 'argument', Environment: 'REDIS_URL', Default: 'default' })

/** `target` as given (undefined: none) → the target to use and where it came from. */
function chooseTarget(target) {
  if (target !== undefined) return { target, origin: TargetOrigin.Argument }
  if (process.env.REDIS_URL) return { target: process.env.REDIS_URL, origin: TargetOrigin.Environment }
  return { target: `redis://${DEFAULT_HOST}:${DEFAULT_PORT}`, origin: TargetOrigin.Default }
}

/**
 * `target` and `defaults` as given to `new Locker(target, defaults)` (no target: `REDIS_URL`, else
 * the built-in default) → `{ native, lockDefaults, description }`: the native locker's options,
 * the acquire defaults, and a password-free label.
 */
function resolveTarget(given, defaults) {
  const { target, origin } = chooseTarget(given)
  const settings = knownOptions(objectArgument(defaults, 'defaults'), LOCKER_DEFAULTS, 'defaults')
  const memory = parseMemory(target)
  const cluster = memory || !isClusterTarget(target) ? undefined : parseCluster(target, 'target')
  const parsed = memory ? [] : cluster ? [{ overrides: cluster.overrides }]
    : Array.isArray(target) ? parseNodes(target) : [parseNode(target, 'target')]
  const connection = { ...CONNECTION_DEFAULTS }
  for (const field of Object.keys(CONNECTION_DEFAULTS)) {
    if (settings[field] !== undefined) connection[field] = settings[field]
    // Settings written on the target itself win; with several nodes, the first node's do.
    if (parsed.length > 0 && parsed[0].overrides[field] !== undefined) connection[field] = parsed[0].overrides[field]
  }
  connection.connectTimeout = wholeMilliseconds(durationArgument(connection.connectTimeout, 'connectTimeout'))
  connection.commandTimeout = wholeMilliseconds(durationArgument(connection.commandTimeout, 'commandTimeout'))
  if (typeof connection.keyPrefix !== 'string') throw invalidArgType('keyPrefix', 'of type string', connection.keyPrefix)
  wellFormedString(connection.keyPrefix, 'keyPrefix')
  if (typeof connection.driftFactor !== 'number' || !(connection.driftFactor >= 0 && connection.driftFactor < 1)) {
    throw invalidArgValue('driftFactor', `must be a number from 0 to below 1.${describe(connection.driftFactor)}`)
  }
  const lockDefaults = {
    ttl: settings.ttl ?? LOCK_DEFAULTS.ttl,
    wait: settings.wait ?? LOCK_DEFAULTS.wait,
    autoExtend: settings.autoExtend ?? LOCK_DEFAULTS.autoExtend,
    replicas: settings.replicas ?? LOCK_DEFAULTS.replicas,
    replicasTimeout: settings.replicasTimeout ?? LOCK_DEFAULTS.replicasTimeout,
  }
  if (memory) return { native: { mode: 'memory', nodes: [], store: memory.store, ...connection }, lockDefaults, description: target }
  if (cluster) {
    const { seeds } = cluster
    return { native: { mode: 'cluster', nodes: seeds, ...connection }, lockDefaults, description: `cluster[${seeds.map(describeNode).join(', ')}]` }
  }
  // A Redlock node is named by its address alone: it can only have been given.
  const nodes = parsed.length === 1 ? [{ ...parsed[0].node, origin }] : parsed.map(({ node }) => node)
  return {
    native: { mode: nodes.length === 1 ? 'single' : 'redlock', nodes, ...connection },
    lockDefaults,
    description: nodes.length === 1 ? describeNode(nodes[0]) : `redlock[${nodes.map(describeNode).join(', ')}]`,
  }
}

/**
 * An array of 2+ independent masters: a Redlock target. An array of one is that one Redis, as the
 * redlock shim's one client is.
 */
function parseNodes(targets) {
  if (targets.length === 0) throw invalidArgValue('target', 'must list at least one server. Received an empty array')
  // Every index: `map` would skip holes, leaving nodes undefined.
  return Array.from(targets, (each, index) => {
    const name = `target[${index}]`
    if (isClusterTarget(each)) {
      throw invalidArgValue(name, 'is a Redis Cluster, which is a target on its own, not a node of Redlock (Redlock takes independent masters)')
    }
    return parseNode(each, name)
  })
}

/** `redis://user:***@host:port/db`: how a target shows in inspect output and messages. */
function describeNode({ host, port, username, password, db, tls }) {
  const auth = username || password ? `${username || ''}${password ? ':***' : ''}@` : ''
  const shownHost = host.includes(':') ? `[${host}]` : host
  return `${tls ? 'rediss' : 'redis'}://${auth}${shownHost}:${port}${db ? `/${db}` : ''}`
}

/**
 * `text` fit to show: whatever stands between `://` (or the start, without one) and the last `@`
 * is user info, of which only the user name shows, and query values are hidden. A password that
 * holds `/`, `?`, `#`, `@` or `:` unescaped therefore never shows, even in a URL that does not parse.
 */
function redactUrl(text) {
  const shown = String(text)
  const at = shown.lastIndexOf('@')
  const scheme = shown.indexOf('://')
  const start = scheme >= 0 && scheme < at ? scheme + 3 : 0
  const userinfo = at >= 0 ? shown.slice(start, at) : ''
  const colon = userinfo.indexOf(':')
  const user = colon >= 0 ? `${userinfo.slice(0, colon)}:***@` : at >= 0 ? `${userinfo}@` : ''
  const rest = shown.slice(at + 1).replace(/([?&;][^=&;#]*=)[^&;#]*/g, '$1***')
  return `${shown.slice(0, start)}${user}${rest}`
}

module.exports = { resolveTarget, redactUrl, clientOptions }
