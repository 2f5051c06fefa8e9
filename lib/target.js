'use strict'

// Turns every accepted target form into the native locker's options, and describes targets
// without their passwords.

const { invalidArgType, invalidArgValue, describe } = require('./errors')
const { durationArgument, wholeMilliseconds, objectArgument, wellFormedString, knownOptions } = require('./validate')
const { LOCK_DEFAULTS, CONNECTION_DEFAULTS, DEFAULT_HOST, DEFAULT_PORT, DEFAULT_SENTINEL_PORT } = require('./defaults')

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
/**
 * What a Sentinel target written as options may set: its sentinels, the master's name and login
 * (`username`, `password`, `db`, `tls`), the sentinels' login, and the connection's settings.
 */
const SENTINEL_OPTIONS = Object.freeze([
  'sentinels', 'name', 'username', 'password', 'db', 'tls', 'sentinelUsername', 'sentinelPassword', 'sentinelTls',
  'connectTimeout', 'commandTimeout', 'keyPrefix',
])
/** What one sentinel of a Sentinel target may set: ioredis's `SentinelAddress` (`family` taken and unused, as a node's). */
const SENTINEL_ADDRESS_OPTIONS = Object.freeze(['host', 'port', 'family'])
/** `redis+sentinel://host:port,host:port/<name>[/<db>]` (`rediss+sentinel://`: TLS to the master). */
const SENTINEL_URL = /^(rediss?)\+sentinel:\/\//i

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
function parseUrl(text, name, defaultPort = DEFAULT_PORT) {
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
    port: url.port ? portArgument(url.port, `${name} port`) : defaultPort,
    username: optionalString(decodeUserinfo(url.username, text, name), `${name} username`),
    password: optionalString(decodeUserinfo(url.password, text, name), `${name} password`),
    db: dbArgument(db, `${name} database`, ` Received '${redactUrl(text)}'`),
    tls: url.protocol === 'rediss:' ? tlsOptions(true) : undefined,
  }
}

function decodeUserinfo(encoded, text, name, part = 'user name or password') {
  try {
    return decodeURIComponent(encoded)
  } catch {
    throw invalidArgValue(name, `has a malformed %-escape in its ${part}. Received '${redactUrl(text)}'`)
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

/** Whether `target` names Redis Sentinel: `{ sentinels, name }`, an ioredis client with `sentinels`, or a sentinel URL. */
function isSentinelTarget(target) {
  if (typeof target === 'string') return SENTINEL_URL.test(target)
  if (target === null || typeof target !== 'object' || target.isCluster === true) return false
  const options = target[CLIENT_OPTIONS] ?? (isIoredisClient(target) ? target.options : target)
  return options.sentinels != null
}

/**
 * A Sentinel target → its sentinels, its master (the name the sentinels know it by, and how to
 * log in to it) and its connection overrides: `redis+sentinel://` URLs, `{ sentinels, name,
 * …master's login, …sentinels' login }` and ioredis clients configured with `sentinels`.
 */
function parseSentinel(target, name) {
  if (typeof target === 'string') return { ...parseSentinelUrl(target, name), overrides: {} }
  const fromClient = target[CLIENT_OPTIONS]
  if (fromClient !== undefined || isIoredisClient(target)) return parseSentinelClient(fromClient ?? target.options, name)
  if (target.cluster !== undefined) {
    throw invalidArgValue(name, 'names both a Redis Cluster (cluster) and Redis Sentinel (sentinels): a target is one or the other')
  }
  knownOptions(target, SENTINEL_OPTIONS, name)
  return sentinelTarget(target, name, { tls: target.tls, sentinelTls: target.sentinelTls, sentinelTlsName: `${name}.sentinelTls` })
}

/**
 * An ioredis client's options, read as ioredis reads them: TLS to the master only with
 * `enableTLSForSentinelMode`, `sentinelTLS` to the sentinels.
 */
function parseSentinelClient(options, name) {
  if (options.role === 'slave') {
    throw invalidArgValue(`${name}.role`, "is 'slave', but locks live on the master: give a client of the master (role 'master')")
  }
  return sentinelTarget(options, name, {
    tls: options.enableTLSForSentinelMode ? options.tls : undefined,
    sentinelTls: options.sentinelTLS,
    sentinelTlsName: `${name}.sentinelTLS`,
  })
}

/** `options` with the TLS settings as read for its form → `{ sentinels, master, overrides }`. */
function sentinelTarget(options, name, { tls, sentinelTls, sentinelTlsName }) {
  if (!Array.isArray(options.sentinels)) {
    throw invalidArgType(`${name}.sentinels`, 'an array of sentinels (redis:// URLs or { host, port } objects)', options.sentinels)
  }
  const shared = {
    username: optionalString(options.sentinelUsername, `${name}.sentinelUsername`),
    password: optionalString(options.sentinelPassword, `${name}.sentinelPassword`, { secret: true }),
    tls: tlsOptions(sentinelTls, sentinelTlsName),
  }
  // Every index: `map` would skip holes, leaving sentinels undefined.
  const sentinels = Array.from(options.sentinels, (each, index) => sentinelAddress(each, shared, `${name}.sentinels[${index}]`))
  if (sentinels.length === 0) throw invalidArgValue(`${name}.sentinels`, 'must list at least one sentinel. Received an empty array')
  const master = {
    name: masterName(options.name, `${name}.name`),
    username: optionalString(options.username, `${name}.username`),
    password: optionalString(options.password, `${name}.password`, { secret: true }),
    db: dbArgument(options.db, `${name}.db`),
    tls: tlsOptions(tls, `${name}.tls`),
  }
  return { sentinels, master, overrides: connectionOverrides(options) }
}

/**
 * One sentinel: `{ host, port }`, or a redis:// URL whose login and TLS override the shared
 * `sentinelUsername`, `sentinelPassword` and `sentinelTls`. Port 26379 unless given.
 */
function sentinelAddress(sentinel, shared, name) {
  if (typeof sentinel === 'string') {
    const { db, ...node } = parseUrl(sentinel, name, DEFAULT_SENTINEL_PORT)
    if (db !== 0) throw invalidArgValue(name, `names database ${db}, but a sentinel has no databases. Received '${redactUrl(sentinel)}'`)
    return { ...shared, ...definedFields(node), db: 0 }
  }
  if (sentinel === null || typeof sentinel !== 'object') {
    throw invalidArgType(name, 'a redis:// URL or a { host, port } object', sentinel)
  }
  knownOptions(sentinel, SENTINEL_ADDRESS_OPTIONS, name)
  return {
    ...shared,
    host: optionalString(sentinel.host, `${name}.host`) || DEFAULT_HOST,
    port: sentinel.port === undefined || sentinel.port === null ? DEFAULT_SENTINEL_PORT : portArgument(sentinel.port, `${name}.port`),
    db: 0,
  }
}

/** The master's name in the sentinels' configuration (`sentinel monitor <name> …`). */
function masterName(value, name) {
  const meaning = "the master's name in the sentinels' configuration"
  if (typeof value !== 'string') throw invalidArgType(name, `of type string (${meaning})`, value)
  if (value === '') throw invalidArgValue(name, `must be ${meaning}. Received ''`)
  return wellFormedString(value, name)
}

/**
 * `redis+sentinel://[user:pass@]host:port[,host:port…]/<name>[/<db>]`: the sentinels (port 26379
 * unless given), then the master's name and database. The user info is the master's login, and
 * `rediss+sentinel://` reaches the master over TLS.
 */
function parseSentinelUrl(text, name) {
  const [, scheme] = SENTINEL_URL.exec(text)
  const received = ` Received '${redactUrl(text)}'`
  const rest = text.slice(scheme.length + '+sentinel://'.length)
  const at = rest.lastIndexOf('@')
  const afterUserinfo = rest.slice(at + 1)
  const pathStart = afterUserinfo.search(/[/?#]/)
  const authority = pathStart >= 0 ? afterUserinfo.slice(0, pathStart) : afterUserinfo
  const [path] = (pathStart >= 0 ? afterUserinfo.slice(pathStart) : '').split(/[?#]/, 1)
  if (authority === '') throw invalidArgValue(name, `must list at least one sentinel.${received}`)
  const hosts = authority.split(',')
  if (hosts.includes('')) throw invalidArgValue(name, `has an empty sentinel between its commas.${received}`)
  const sentinels = hosts.map((host) => sentinelOfUrl(host, name, received))
  const [, encodedName = '', db, ...more] = path.split('/')
  if (encodedName === '') {
    throw invalidArgValue(name, `must name the master after its sentinels (${scheme}+sentinel://host:port/<name>).${received}`)
  }
  if (more.length > 0) throw invalidArgValue(name, `has more than the master's name and database in its path.${received}`)
  const userinfo = at >= 0 ? rest.slice(0, at) : ''
  const colon = userinfo.indexOf(':')
  const master = {
    name: masterName(decodeUserinfo(encodedName, text, name, "master's name"), `${name} master name`),
    username: optionalString(decodeUserinfo(colon >= 0 ? userinfo.slice(0, colon) : userinfo, text, name), `${name} username`),
    password: optionalString(colon >= 0 ? decodeUserinfo(userinfo.slice(colon + 1), text, name) : undefined, `${name} password`),
    db: dbArgument(db, `${name} database`, received),
    tls: scheme.toLowerCase() === 'rediss' ? tlsOptions(true) : undefined,
  }
  return { sentinels, master }
}

/** `host[:port]` of a sentinel URL → a sentinel without a login of its own. */
function sentinelOfUrl(host, name, received) {
  let url
  try {
    url = new URL(`redis://${host}`)
  } catch {
    throw invalidArgValue(name, `has a sentinel that is not host[:port]: '${host}'.${received}`)
  }
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1') || DEFAULT_HOST,
    port: url.port ? portArgument(url.port, `${name} port`) : DEFAULT_SENTINEL_PORT,
    db: 0,
  }
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
  const sentinel = memory || !isSentinelTarget(target) ? undefined : parseSentinel(target, 'target')
  const cluster = memory || sentinel || !isClusterTarget(target) ? undefined : parseCluster(target, 'target')
  const group = sentinel ?? cluster
  const parsed = memory ? [] : group ? [{ overrides: group.overrides }]
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
  if (sentinel) {
    const { sentinels, master } = sentinel
    return { native: { mode: 'sentinel', nodes: sentinels, master, ...connection }, lockDefaults, description: describeSentinel(sentinels, master) }
  }
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
    if (isSentinelTarget(each)) {
      throw invalidArgValue(name, 'is a Redis Sentinel target, which is a target on its own, not a node of Redlock (Redlock takes independent masters)')
    }
    return parseNode(each, name)
  })
}

/** `redis://user:***@host:port/db`: how a target shows in inspect output and messages. */
function describeNode({ host, port, username, password, db, tls }) {
  const shownHost = host.includes(':') ? `[${host}]` : host
  return `${tls ? 'rediss' : 'redis'}://${describeLogin(username, password)}${shownHost}:${port}${db ? `/${db}` : ''}`
}

/**
 * `sentinel[redis://host:26379, …]/mymaster`: the sentinels as nodes show, then the master by
 * its name, written as a URL (`rediss://user:***@mymaster/2`) when it has a login, TLS or a database.
 */
function describeSentinel(sentinels, { name, username, password, db, tls }) {
  const plain = !username && !password && !db && !tls
  const master = plain ? name : `${tls ? 'rediss' : 'redis'}://${describeLogin(username, password)}${name}${db ? `/${db}` : ''}`
  return `sentinel[${sentinels.map(describeNode).join(', ')}]/${master}`
}

/** `user:***@`, `:***@`, `user@` or nothing: a login as it shows, never its password. */
function describeLogin(username, password) {
  return username || password ? `${username || ''}${password ? ':***' : ''}@` : ''
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
