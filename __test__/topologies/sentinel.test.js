'use strict'

// Redis Sentinel targets: every form (options, redis+sentinel:// URLs, an ioredis client with
// `sentinels`, REDIS_URL) read into the native side's sentinels and master, described without
// passwords, and every wrong shape refused with a Node-style error naming the argument.

const { inspect } = require('node:util')
const Redis = require('ioredis')
const { resolveTarget, clientOptions } = require('../../lib/target')

// Every password here carries this marker; no error message or description may show it.
const SECRET = 'Zq9s3cr3t'

/** What the native side gets for the sentinels: address and login, nothing else. */
const sentinelsOf = (native) => native.nodes.map(({ host, port, username, password, tls }) => ({ host, port, username, password, tls }))

/** The error `resolveTarget(target)` throws. */
function refusal(target) {
  try {
    resolveTarget(target)
  } catch (error) {
    return error
  }
  throw new Error(`${inspect(target)} was accepted`)
}

describe('Sentinel target forms', () => {
  test('options: the sentinels (port 26379 unless given) with their shared login, the master by name with its own', () => {
    const { native, description } = resolveTarget({
      sentinels: ['redis://10.0.0.1', { host: '10.0.0.2', port: 26380 }, `redis://watcher:${SECRET}-own@10.0.0.3:26381`],
      name: 'orders',
      username: 'app',
      password: `${SECRET}-master`,
      db: 2,
      sentinelUsername: 'watcher',
      sentinelPassword: `${SECRET}-sentinel`,
      connectTimeout: 700,
      commandTimeout: 800,
      keyPrefix: 'app:',
    })
    expect(native).toMatchObject({ mode: 'sentinel', connectTimeout: 700, commandTimeout: 800, keyPrefix: 'app:' })
    const shared = { username: 'watcher', password: `${SECRET}-sentinel`, tls: undefined }
    expect(sentinelsOf(native)).toEqual([
      { host: '10.0.0.1', port: 26379, ...shared },
      { host: '10.0.0.2', port: 26380, ...shared },
      { host: '10.0.0.3', port: 26381, ...shared, password: `${SECRET}-own` },
    ])
    expect(native.master).toEqual({ name: 'orders', username: 'app', password: `${SECRET}-master`, db: 2, tls: undefined })
    expect(description).toBe('sentinel[redis://watcher:***@10.0.0.1:26379, redis://watcher:***@10.0.0.2:26380, ' +
      'redis://watcher:***@10.0.0.3:26381]/redis://app:***@orders/2')
  })

  test('options: tls is the master\'s, sentinelTls the sentinels\'', () => {
    const toMaster = resolveTarget({ sentinels: [{ host: 'h' }], name: 'm', tls: { rejectUnauthorized: false } })
    expect(toMaster.native.master.tls).toMatchObject({ rejectUnauthorized: false })
    expect(toMaster.native.nodes[0].tls).toBeUndefined()
    const toSentinels = resolveTarget({ sentinels: [{ host: 'h' }], name: 'm', sentinelTls: true })
    expect(toSentinels.native.master.tls).toBeUndefined()
    expect(toSentinels.native.nodes[0].tls).toEqual({ rejectUnauthorized: true })
    expect(toSentinels.description).toBe('sentinel[rediss://h:26379]/m')
  })

  test('a redis+sentinel:// URL: its user info and database are the master\'s, rediss+ is TLS to the master', () => {
    const { native, description } = resolveTarget(`redis+sentinel://app:${SECRET}%40x@10.0.0.1,10.0.0.2:26380,[::1]:26381/my%20orders/3`)
    expect(native.mode).toBe('sentinel')
    expect(sentinelsOf(native)).toEqual([
      { host: '10.0.0.1', port: 26379 },
      { host: '10.0.0.2', port: 26380 },
      { host: '::1', port: 26381 },
    ])
    expect(native.master).toEqual({ name: 'my orders', username: 'app', password: `${SECRET}@x`, db: 3, tls: undefined })
    expect(description).toBe('sentinel[redis://10.0.0.1:26379, redis://10.0.0.2:26380, redis://[::1]:26381]/redis://app:***@my orders/3')

    const secure = resolveTarget('REDISS+SENTINEL://h:1/m')
    expect(secure.native.master).toEqual({ name: 'm', db: 0, tls: { rejectUnauthorized: true } })
    expect(secure.native.nodes[0].tls).toBeUndefined()
    expect(secure.description).toBe('sentinel[redis://h:1]/rediss://m')
    expect(resolveTarget('redis+sentinel://h:1/m/').native.master.db).toBe(0)
  })

  test('an ioredis client with sentinels is read as ioredis reads it: TLS to the master only with enableTLSForSentinelMode', () => {
    const client = new Redis({
      sentinels: [{ host: '10.0.0.1', port: 26379 }, { host: '10.0.0.2' }],
      name: 'orders',
      password: `${SECRET}-master`,
      db: 4,
      sentinelUsername: 'watcher',
      sentinelPassword: `${SECRET}-sentinel`,
      sentinelTLS: { rejectUnauthorized: false },
      tls: {},
      keyPrefix: 'app:',
      connectTimeout: 700,
      commandTimeout: 800,
      lazyConnect: true,
    })
    const { native, description } = resolveTarget(client)
    expect(native).toMatchObject({ mode: 'sentinel', keyPrefix: 'app:', connectTimeout: 700, commandTimeout: 800 })
    const tls = { rejectUnauthorized: false }
    expect(sentinelsOf(native)).toEqual([
      { host: '10.0.0.1', port: 26379, username: 'watcher', password: `${SECRET}-sentinel`, tls: expect.objectContaining(tls) },
      { host: '10.0.0.2', port: 26379, username: 'watcher', password: `${SECRET}-sentinel`, tls: expect.objectContaining(tls) },
    ])
    expect(native.master).toEqual({ name: 'orders', password: `${SECRET}-master`, db: 4, tls: undefined })
    expect(description).not.toContain(SECRET)

    const withTls = new Redis({ sentinels: [{ host: 'h' }], name: 'm', tls: {}, enableTLSForSentinelMode: true, lazyConnect: true })
    expect(resolveTarget(withTls).native.master.tls).toEqual({ rejectUnauthorized: true })
  })

  test('the redlock shim\'s one client with sentinels is a Sentinel target', () => {
    const { native } = resolveTarget(clientOptions({ sentinels: [{ host: 'h', port: 1 }], name: 'm', password: 'pw', db: 5 }))
    expect(native).toMatchObject({ mode: 'sentinel', nodes: [{ host: 'h', port: 1 }], master: { name: 'm', password: 'pw', db: 5 } })
  })

  test('REDIS_URL may be a redis+sentinel:// URL', () => {
    const before = process.env.REDIS_URL
    process.env.REDIS_URL = 'redis+sentinel://10.0.0.1:26379/orders'
    try {
      expect(resolveTarget(undefined).native).toMatchObject({ mode: 'sentinel', nodes: [{ host: '10.0.0.1', port: 26379 }], master: { name: 'orders' } })
    } finally {
      if (before === undefined) delete process.env.REDIS_URL
      else process.env.REDIS_URL = before
    }
  })

  test('the target\'s own connection settings win over the locker defaults', () => {
    const { native } = resolveTarget({ sentinels: ['redis://h'], name: 'm', commandTimeout: 900 }, { commandTimeout: 100, connectTimeout: 200 })
    expect(native).toMatchObject({ commandTimeout: 900, connectTimeout: 200 })
  })
})

describe('Sentinel target refusals', () => {
  const sentinels = ['redis://10.0.0.1:26379']
  const sentinelClient = (options) => new Redis({ sentinels: [{ host: 'h' }], name: 'm', lazyConnect: true, ...options })
  const TYPE = 'ERR_INVALID_ARG_TYPE'
  const VALUE = 'ERR_INVALID_ARG_VALUE'

  test.each([
    ['no sentinels', { sentinels: [], name: 'm', password: SECRET }, VALUE, "'target.sentinels' must list at least one sentinel"],
    ['sentinels that are not an array', { sentinels: 'redis://h:1', name: 'm' }, TYPE, '"target.sentinels" argument must be an array'],
    ['a missing name', { sentinels, password: SECRET }, TYPE, '"target.name" argument must be of type string'],
    ['an empty name', { sentinels, name: '', password: SECRET }, VALUE, "'target.name' must be the master's name"],
    ['a name that is no string', { sentinels, name: 42 }, TYPE, '"target.name" argument must be of type string'],
    ['a name with a lone surrogate', { sentinels, name: 'm\uD800' }, VALUE, "'target.name' must be a valid UTF-16 string"],
    ['a sentinel that is not a node', { sentinels: [42], name: 'm' }, TYPE, '"target.sentinels[0]" argument must be a redis:// URL or a { host, port } object'],
    ['a null sentinel', { sentinels: [sentinels[0], null], name: 'm' }, TYPE, '"target.sentinels[1]" argument'],
    ['a hole among the sentinels', { sentinels: new Array(1), name: 'm' }, TYPE, '"target.sentinels[0]" argument'],
    ['a misspelt sentinel option', { sentinels: [{ host: 'h', prot: 1 }], name: 'm' }, VALUE, "'target.sentinels[0].prot' is not a known option. Did you mean 'port'?"],
    ['a sentinel port out of range', { sentinels: [{ host: 'h', port: 70000 }], name: 'm' }, VALUE, "'target.sentinels[0].port' must be a port number"],
    ['a sentinel URL with a database', { sentinels: [`redis://:${SECRET}@h:1/2`], name: 'm' }, VALUE, "'target.sentinels[0]' names database 2, but a sentinel has no databases"],
    ['a sentinel URL of another protocol', { sentinels: ['http://h:1'], name: 'm' }, VALUE, "'target.sentinels[0]' must use the redis: or rediss: protocol"],
    ['a misspelt option', { sentinels, name: 'm', sentinelTLS: true }, VALUE, "'target.sentinelTLS' is not a known option. Did you mean 'sentinelTls'?"],
    ['an option a Sentinel target does not take', { sentinels, name: 'm', host: 'h' }, VALUE, "'target.host' is not a known option"],
    ['a sentinel password that is no string', { sentinels, name: 'm', sentinelPassword: 98765432123 }, TYPE, '"target.sentinelPassword" argument must be of type string'],
    ['a master password that is no string', { sentinels, name: 'm', password: 98765432123 }, TYPE, '"target.password" argument must be of type string'],
    ['a master database out of range', { sentinels, name: 'm', db: -1, password: SECRET }, VALUE, "'target.db' must be a database number"],
    ['sentinel TLS of the wrong type', { sentinels, name: 'm', sentinelTls: 'yes' }, TYPE, '"target.sentinelTls" argument must be a boolean or an object'],
    ['a Sentinel target mixed with a cluster', { sentinels, name: 'm', cluster: ['redis://h:7000'] }, VALUE, "'target' names both a Redis Cluster (cluster) and Redis Sentinel (sentinels)"],
    ['a Sentinel target as a Redlock node', [{ sentinels, name: 'm', password: SECRET }, 'redis://h:6379'], VALUE, "'target[0]' is a Redis Sentinel target, which is a target on its own, not a node of Redlock"],
    ['a Sentinel URL as a Redlock node', ['redis://h:6379', `redis+sentinel://:${SECRET}@h:1/m`], VALUE, "'target[1]' is a Redis Sentinel target"],
    ['a Sentinel URL without the master\'s name', `redis+sentinel://:${SECRET}@h:1`, VALUE, 'must name the master after its sentinels'],
    ['a Sentinel URL with an empty name', `redis+sentinel://:${SECRET}@h:1/`, VALUE, 'must name the master after its sentinels'],
    ['a Sentinel URL without sentinels', `redis+sentinel://:${SECRET}@/m`, VALUE, 'must list at least one sentinel'],
    ['a Sentinel URL with an empty sentinel', `redis+sentinel://:${SECRET}@h:1,,h:2/m`, VALUE, 'has an empty sentinel between its commas'],
    ['a Sentinel URL with a sentinel that is not host:port', `redis+sentinel://:${SECRET}@h:port/m`, VALUE, "has a sentinel that is not host[:port]: 'h:port'"],
    ['a Sentinel URL with a sentinel port out of range', `redis+sentinel://:${SECRET}@h:0/m`, VALUE, "'target port' must be a port number"],
    ['a Sentinel URL with a database that is no number', `redis+sentinel://:${SECRET}@h:1/m/x`, VALUE, "'target database' must be a database number"],
    ['a Sentinel URL with more path than name and database', `redis+sentinel://:${SECRET}@h:1/m/2/3`, VALUE, "has more than the master's name and database in its path"],
    ['a Sentinel URL with a malformed escape in the name', `redis+sentinel://:${SECRET}@h:1/%ZZ`, VALUE, "has a malformed %-escape in its master's name"],
    ['a Sentinel URL with a malformed escape in the password', `redis+sentinel://u:${SECRET}%ZZ@h:1/m`, VALUE, 'has a malformed %-escape in its user name or password'],
    ['an ioredis client of a replica', sentinelClient({ role: 'slave', password: SECRET }), VALUE, "'target.role' is 'slave', but locks live on the master"],
    ['client options without the master\'s name', clientOptions({ sentinels: [{ host: 'h' }], password: SECRET }), TYPE, '"target.name" argument must be of type string'],
  ])('%s is refused with its code, naming the argument, without a password', (_, target, code, message) => {
    const error = refusal(target)
    expect(error.code).toBe(code)
    expect(error.message).toContain(message)
    for (const shown of [error.message, error.stack, inspect(error)]) {
      expect(shown).not.toContain(SECRET)
      expect(shown).not.toContain('98765432123')
    }
  })
})
