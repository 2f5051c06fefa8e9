'use strict'

// "No message, error or util.inspect output ever contains a password" (API.md, Errors): not in a
// message or a stack, nor in util.inspect at any depth, of any error or object a user can get hold
// of, nor in a warning. Every password here carries a marker, and no marker may ever show: the
// right password's, the wrong one's, and those of malformed targets.

const { inspect } = require('node:util')
const IORedis = require('ioredis')
const { startRedis, startRedisSet, stopAll } = require('../helpers/redis-server')
const { thrownBy } = require('../helpers/thrown')
const { Locker, configure, close } = require('../..')
const Redlock = require('ironlock/redlock')

const RIGHT = 'right-Zq9s3cr3t'
const WRONG = 'wrong-Xk7p4ss'
const MARKERS = ['Zq9s3cr3t', 'Xk7p4ss', '98765432123']
const HOST = '127.0.0.1'

let single
let nodes
const opened = []

beforeAll(async () => {
  ;[single, nodes] = await Promise.all([startRedis({ password: RIGHT }), startRedisSet(3, { password: RIGHT })])
})

afterAll(async () => {
  for (const closeOpened of opened) await closeOpened()
  await close()
  await stopAll()
})

// Warnings are a log: whatever ironlock tells operators must be password-free too.
let warnings
beforeEach(() => {
  warnings = jest.spyOn(process, 'emitWarning')
})
afterEach(() => {
  for (const args of warnings.mock.calls) expectNoSecret(args, 'a warning')
  warnings.mockRestore()
})

/** Every way `value` can be shown: its message and stack, and util.inspect at several depths. */
function renderings(value) {
  const shown = [String(value?.message), String(value?.stack)]
  for (const depth of [0, 2, 6, Infinity]) {
    shown.push(inspect(value, { depth }), inspect(value, { depth, showHidden: true, getters: true }))
  }
  return shown
}

function expectNoSecret(value, what) {
  for (const text of renderings(value)) {
    for (const marker of MARKERS) {
      if (text.includes(marker)) throw new Error(`${what} shows a password (${marker}):\n${text}`)
    }
  }
}

function locker(target, defaults) {
  const made = new Locker(target, { connectTimeout: 2000, commandTimeout: 2000, ...defaults })
  opened.push(() => made.close())
  return made
}

function ioredis(port, password) {
  const client = new IORedis({ host: HOST, port, password, lazyConnect: true, maxRetriesPerRequest: 1 })
  client.on('error', () => {})
  opened.push(() => client.disconnect())
  return client
}

const url = (port, password) => `redis://:${encodeURIComponent(password)}@${HOST}:${port}`

describe('malformed targets: the password is not echoed', () => {
  const badUrls = [
    ['a "/" in the password', 'redis://:sec/ret-Zq9s3cr3t@127.0.0.1:1'],
    ['a "?" in the password', 'redis://user:pa?ss-Zq9s3cr3t@127.0.0.1:1'],
    ['a space in the host', 'redis://:Zq9s3cr3t@exa mple:1'],
    ['a bad %-escape in the password', 'redis://:Zq9s3cr3t%ZZ@127.0.0.1:1'],
    ['a bad %-escape in the user name', 'redis://us%ZZer:Zq9s3cr3t@127.0.0.1:1'],
    ['a port out of range', 'redis://:Zq9s3cr3t@127.0.0.1:99999'],
    ['an unescaped "/" read as the start of the path', 'redis://user:12/se-Zq9s3cr3t@127.0.0.1'],
    ['one slash after the scheme', 'redis:/:Zq9s3cr3t@127.0.0.1'],
    ['no slashes after the scheme', 'redis:Zq9s3cr3t@127.0.0.1'],
    ['no scheme', ':Zq9s3cr3t@127.0.0.1:1'],
    ['a user and no scheme', 'user:Zq9s3cr3t@127.0.0.1:1'],
    ['another scheme', 'http://:Zq9s3cr3t@127.0.0.1:1'],
    ['a password in the query of a bad URL', 'redis://127.0.0.1:1/x?password=Zq9s3cr3t'],
    ['a malformed memory target', 'memory:user:Zq9s3cr3t@store'],
  ]

  test.each(badUrls)('%s, from new Locker() and configure(), alone and in a Redlock array', (_, target) => {
    for (const construct of [
      () => new Locker(target),
      () => configure(target),
      () => new Locker(['redis://127.0.0.1:1', target]),
    ]) {
      const error = thrownBy(construct)
      expect(error.code).toMatch(/^ERR_INVALID_ARG_/)
      expectNoSecret(error, `the error for ${target}`)
    }
  })

  test('a password that is not a string is not echoed (options objects and ioredis clients)', () => {
    for (const password of [98765432123, 98765432123n, true, Symbol('Zq9s3cr3t'), ['Zq9s3cr3t'], { Zq9s3cr3t: 1 }]) {
      const client = { options: { host: HOST, port: 1, password }, duplicate() {} }
      for (const construct of [
        () => new Locker({ host: HOST, port: 1, password }),
        () => configure({ host: HOST, port: 1, password }),
        () => new Locker([{ port: 1 }, { port: 2, password }]),
        () => new Locker(client),
        () => new Redlock([client]),
      ]) {
        const error = thrownBy(construct)
        expect(error).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
        expect(error.message).toContain('password')
        expectNoSecret(error, `the error for password ${String(password)}`)
      }
    }
  })

  test('a URL that parses oddly shows no part of the password in the locker', () => {
    // An unescaped "@" and "#": the URL parser reads the host from inside the password.
    const odd = new Locker('redis://:p@ss#Zq9s3cr3t@127.0.0.1:1')
    expectNoSecret(odd, 'the locker')
    odd.close()
  })
})

describe('the objects: lockers, locks, the default locker', () => {
  test('lockers of every target form', async () => {
    const client = ioredis(single.port, RIGHT)
    const lockers = [
      locker(url(single.port, RIGHT)),
      locker({ host: HOST, port: single.port, password: RIGHT }),
      locker(client),
      locker(nodes.map(({ port }) => url(port, RIGHT))),
      locker(nodes.map(({ port }) => ({ host: HOST, port, password: RIGHT }))),
      configure(url(single.port, RIGHT)),
    ]
    for (const each of lockers) {
      expectNoSecret(each, 'a locker')
      const lock = await each.acquire('secret-objects', { ttl: 5000 })
      expectNoSecret(lock, 'a lock')
      expectNoSecret(lock.toJSON(), 'a lock as JSON')
      expectNoSecret(await lock.extend(5000), 'an extended lock')
      expect(await lock.release()).toBe(true)
      await each.close()
      expectNoSecret(each, 'a closed locker')
    }
  })
})

// The connection errors name the server and where its address came from (issue 20): never with
// the password that came along, whichever way the target was given.
describe('connection errors that name the server and where it came from', () => {
  const { freePort } = require('../helpers/redis-server')

  test.each([
    ['nothing listening, a URL', async () => locker(url(await freePort(), RIGHT))],
    ['nothing listening, an options object', async () => locker({ host: HOST, port: await freePort(), password: RIGHT })],
    ['nothing listening, REDIS_URL', async () => {
      const saved = process.env.REDIS_URL
      process.env.REDIS_URL = url(await freePort(), RIGHT)
      try {
        return locker(undefined)
      } finally {
        process.env.REDIS_URL = saved
      }
    }],
    ['rediss:// to a Redis without TLS', async () => locker(`rediss://:${RIGHT}@${HOST}:${single.port}`)],
    ['Redlock, nodes with nothing listening', async () => locker([url(await freePort(), RIGHT), url(await freePort(), WRONG)])],
  ])('%s', async (_, make) => {
    const failing = await make()
    const error = await failing.acquire('secret-where', { wait: 0 }).catch((e) => e)
    expect(error.code).toMatch(/^E(CONNECTION|QUORUM)$/)
    expect(error.message).toMatch(/127\.0\.0\.1:\d+/)
    expectNoSecret(error, 'the error')
    expectNoSecret(failing, 'the locker')
    await failing.close()
  })
})

describe('a wrong password', () => {
  const client = () => ioredis(single.port, WRONG)
  const targets = [
    ['a URL', () => url(single.port, WRONG)],
    ['an options object', () => ({ host: HOST, port: single.port, password: WRONG })],
    ['an ioredis client', client],
    ['Redlock URLs', () => nodes.map(({ port }) => url(port, WRONG))],
    ['Redlock options objects', () => nodes.map(({ port }) => ({ host: HOST, port, password: WRONG }))],
    ['Redlock ioredis clients', () => nodes.map(({ port }) => ioredis(port, WRONG))],
    ['Redlock with one right password', () => [url(nodes[0].port, RIGHT), url(nodes[1].port, WRONG), url(nodes[2].port, WRONG)]],
  ]

  test.each(targets)('%s: the errors of acquire, tryAcquire and using', async (_, target) => {
    const wrong = locker(target())
    const errors = await Promise.all([
      wrong.acquire('secret-wrong-1').catch((e) => e),
      wrong.tryAcquire(['secret-wrong-2', 'other']).catch((e) => e),
      wrong.using('secret-wrong-3', () => {}).catch((e) => e),
    ])
    for (const error of errors) {
      expect(error.code).toMatch(/^E(CONNECTION|QUORUM)$/)
      expectNoSecret(error, 'the error')
      expectNoSecret(error.votes, 'the votes')
    }
    expectNoSecret(wrong, 'the locker')
    await wrong.close()
  })
})

describe('the redlock shim', () => {
  const rightClients = () => nodes.map(({ port }) => ioredis(port, RIGHT))
  const wrongClients = () => nodes.map(({ port }) => ioredis(port, WRONG))

  function shim(clients) {
    const redlock = new Redlock(clients, { retryCount: 0 })
    // Its own connections only: `ioredis()` closes the clients (quit() would too, as redlock's does).
    opened.push(() => redlock.locker.close())
    const emitted = []
    redlock.on('error', (error) => emitted.push(error))
    redlock.on('clientError', (error) => emitted.push(error))
    return { redlock, emitted }
  }

  /** An ExecutionError (v5) or LockError (v4), its resolved attempts, and its votes keyed by clients. */
  async function expectSafeError(error, clients) {
    expect(error).toBeInstanceOf(Redlock.LockError)
    expectNoSecret(error, 'the error')
    if (!Array.isArray(error.attempts)) return
    const stats = await error.attempts[0]
    expectNoSecret(stats, 'its attempt')
    expectNoSecret(error, 'the error once its attempts are resolved')
    // Still redlock 5's Map keyed by the user's clients.
    expect(stats.votesAgainst).toBeInstanceOf(Map)
    // (Compared as booleans: a failing match would print the clients, passwords and all.)
    expect(stats.votesAgainst.size).toBe(clients.length)
    expect(clients.every((client) => stats.votesAgainst.get(client) instanceof Error)).toBe(true)
    expect([...stats.votesAgainst.keys()].every((client) => clients.includes(client))).toBe(true)
  }

  test('its objects after a success: the Redlock, its clients, the lock and its attempts', async () => {
    for (const clients of [rightClients(), [ioredis(single.port, RIGHT)]]) {
      const { redlock } = shim(clients)
      expectNoSecret(redlock, 'the Redlock')
      expectNoSecret(redlock.clients, 'its clients')
      const lock = await redlock.acquire(['secret-shim'], 5000)
      const stats = await lock.attempts[0]
      expect(stats.votesFor.size).toBe(clients.length)
      expect(clients.every((client) => stats.votesFor.has(client))).toBe(true)
      const extended = await lock.extend(5000)
      for (const shown of [lock, lock.attempts, stats, extended]) expectNoSecret(shown, 'the lock')
      await extended.release()
      const legacy = await redlock.lock('secret-shim-v4', 5000)
      expectNoSecret(legacy, 'a v4 lock')
      await legacy.unlock()
      await redlock.release(await redlock.acquire(['secret-shim-2'], 5000))
    }
  })

  test.each([['one client', 1], ['three clients', 3]])('a wrong password, %s: every error and event', async (_, count) => {
    const clients = count === 1 ? [ioredis(single.port, WRONG)] : wrongClients()
    const { redlock, emitted } = shim(clients)
    const v5 = await redlock.acquire(['secret-shim'], 5000).catch((e) => e)
    await expectSafeError(v5, clients)
    const using = await redlock.using(['secret-shim'], 5000, async () => {}).catch((e) => e)
    await expectSafeError(using, clients)
    const v4 = await redlock.lock('secret-shim', 5000).catch((e) => e)
    await expectSafeError(v4, clients)
    expect(emitted.length).toBeGreaterThan(0)
    for (const event of emitted) expectNoSecret(event, 'an emitted error')
    expectNoSecret(redlock, 'the Redlock')
  })
})
