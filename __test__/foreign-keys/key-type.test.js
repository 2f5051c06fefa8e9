'use strict'

// A lock key that holds another Redis type than a string (a hash, a list…) is a LockKeyTypeError
// (EKEYTYPE) naming the key and the type found, at once: never "busy" until the wait runs out,
// since no holder will ever release it. On one Redis through both transports (the runtime's
// connection and the JS thread's wire), multi-key, on Redlock, and for extend and release of a
// lock whose key became another type while held. memory:// stores only ironlock's own tokens, so
// no key there can hold another type.

const { setTimeout: sleep } = require('node:timers/promises')
const { startRedis, startRedisSet, stopAll } = require('../helpers/redis-server')
const { Locker, LockError, LockKeyTypeError, QuorumError } = require('../..')

const WIRE_NAME = 'ironlock-wire'
// A wait this long would show as one: a key of another type must be reported long before it.
const LONG_WAIT_MS = 20000
const AT_ONCE_MS = 5000

afterAll(() => stopAll())

/** Puts a value of Redis type `type` at `key` through `client`. */
function putOtherType(client, key, type = 'hash') {
  switch (type) {
    case 'hash': return client.hset(key, 'field', 'value')
    case 'list': return client.rpush(key, 'item')
    case 'set': return client.sadd(key, 'member')
    case 'zset': return client.zadd(key, 1, 'member')
    case 'stream': return client.xadd(key, '*', 'field', 'value')
    default: throw new Error(`no way to write a ${type}`)
  }
}

/** Awaits `promise`, which must reject; returns its error and how long it took. */
async function rejection(promise) {
  const started = Date.now()
  try {
    await promise
  } catch (error) {
    return { error, took: Date.now() - started }
  }
  throw new Error('expected a rejection')
}

function expectKeyTypeError(error, key, type) {
  expect(error).toBeInstanceOf(LockKeyTypeError)
  expect(error).toBeInstanceOf(LockError)
  expect(error).toMatchObject({ name: 'LockKeyTypeError', code: 'EKEYTYPE', key, type })
  expect(error.message).toContain(`key "${key}" holds a Redis ${type}, not a lock`)
}

describe('on one Redis', () => {
  let server
  let redis

  beforeAll(async () => {
    server = await startRedis()
    redis = server.client()
  })

  beforeEach(() => redis.flushall())

  /** The names (CLIENT SETNAME) of the connections that ran a script while `work` ran. */
  async function scriptConnections(work) {
    const monitor = await server.client().monitor()
    const sources = new Set()
    monitor.on('monitor', (time, args, source) => {
      if (/^eval(sha)?$/i.test(args[0])) sources.add(source)
    })
    try {
      await work()
      // MONITOR reports a command after running it: give the last one a moment to arrive.
      await sleep(50)
    } finally {
      monitor.disconnect()
    }
    const names = new Map((await redis.client('LIST')).trim().split('\n').map((line) => {
      const fields = Object.fromEntries(line.split(' ').map((field) => field.split('=')))
      return [fields.addr, fields.name]
    }))
    return [...sources].map((source) => names.get(source) ?? '(gone)')
  }

  // The runtime's connection carries a new locker's first requests (the wire opens on the first
  // one), and a release that hands the lock to a local waiter; once the wire is up, other one-key
  // acquires and releases travel on it. `expectUsed` checks the connection of the first script
  // (a failed attempt's give-back may follow on the runtime's).
  const transports = {
    runtime: {
      locker: async () => new Locker(server.url),
      expectUsed: (names) => expect(names[0]).not.toBe(WIRE_NAME),
      releasesWithWaiter: true,
    },
    wire: {
      async locker() {
        const locker = new Locker(server.url)
        const giveUpAt = Date.now() + 5000
        while (Date.now() < giveUpAt) {
          await (await locker.acquire('key-type:warm-up', { ttl: 5000 })).release()
          const list = await redis.client('LIST')
          if (list.includes(`name=${WIRE_NAME}`)) return locker
          await sleep(20)
        }
        throw new Error('the wire did not come up within 5 s')
      },
      expectUsed: (names) => expect(names[0]).toBe(WIRE_NAME),
      releasesWithWaiter: false,
    },
  }

  describe.each(Object.keys(transports))('on the %s', (transport) => {
    const { locker: makeLocker, expectUsed, releasesWithWaiter } = transports[transport]
    let locker

    afterEach(() => locker?.close())

    test('acquire with wait: 0 rejects with the key and the type found, leaving the value be', async () => {
      locker = await makeLocker()
      await putOtherType(redis, 'k')
      let outcome
      expectUsed(await scriptConnections(async () => {
        outcome = await rejection(locker.acquire('k', { wait: 0 }))
      }))
      expectKeyTypeError(outcome.error, 'k', 'hash')
      expect(await redis.hgetall('k')).toEqual({ field: 'value' })
    })

    test('acquire with a long wait rejects at once, not when the wait runs out', async () => {
      locker = await makeLocker()
      await putOtherType(redis, 'k', 'list')
      const { error, took } = await rejection(locker.acquire('k', { wait: LONG_WAIT_MS }))
      expectKeyTypeError(error, 'k', 'list')
      expect(took).toBeLessThan(AT_ONCE_MS)
    })

    test('tryAcquire rejects rather than answering null', async () => {
      locker = await makeLocker()
      await putOtherType(redis, 'k', 'set')
      expectKeyTypeError((await rejection(locker.tryAcquire('k'))).error, 'k', 'set')
    })

    test('using rejects at once and never runs its function', async () => {
      locker = await makeLocker()
      await putOtherType(redis, 'k', 'zset')
      let ran = false
      const { error, took } = await rejection(locker.using('k', { wait: LONG_WAIT_MS }, () => { ran = true }))
      expectKeyTypeError(error, 'k', 'zset')
      expect(took).toBeLessThan(AT_ONCE_MS)
      expect(ran).toBe(false)
    })

    test('release of a lock whose key became another type while held rejects with the type', async () => {
      locker = await makeLocker()
      const lock = await locker.acquire('k', { ttl: 10000 })
      // On the runtime, the release hands the lock to this waiter (a hand-over), which then
      // attempts itself.
      const waiter = releasesWithWaiter ? rejection(locker.acquire('k', { wait: LONG_WAIT_MS })) : null
      await sleep(50)
      await redis.del('k')
      await putOtherType(redis, 'k', 'stream')
      let outcome
      expectUsed(await scriptConnections(async () => {
        outcome = await rejection(lock.release())
      }))
      expectKeyTypeError(outcome.error, 'k', 'stream')
      expect(await redis.type('k')).toBe('stream')
      if (waiter) {
        const { error, took } = await waiter
        expectKeyTypeError(error, 'k', 'stream')
        expect(took).toBeLessThan(AT_ONCE_MS)
      }
    })
  })

  describe('on the runtime (extend and multi-key locks go there)', () => {
    let locker

    beforeEach(() => { locker = new Locker(server.url) })
    afterEach(() => locker.close())

    test.each(['hash', 'list', 'set', 'zset', 'stream'])('the type found is named: %s', async (type) => {
      await putOtherType(redis, 'k', type)
      expectKeyTypeError((await rejection(locker.acquire('k', { wait: 0 }))).error, 'k', type)
    })

    test('a multi-key lock names the key of another type, at once, and sets none of its keys', async () => {
      await putOtherType(redis, 'b', 'list')
      const { error, took } = await rejection(locker.acquire(['a', 'b', 'c'], { wait: LONG_WAIT_MS }))
      expectKeyTypeError(error, 'b', 'list')
      expect(took).toBeLessThan(AT_ONCE_MS)
      expect(await redis.exists('a', 'c')).toBe(0)
    })

    test('a multi-key lock with one key held and another of another type reports the type', async () => {
      const holder = new Locker(server.url)
      await holder.acquire('a', { ttl: 10000 })
      await putOtherType(redis, 'b')
      const { error, took } = await rejection(locker.acquire(['a', 'b'], { wait: LONG_WAIT_MS }))
      expectKeyTypeError(error, 'b', 'hash')
      expect(took).toBeLessThan(AT_ONCE_MS)
      await holder.close()
    })

    test('extend of a lock whose key became another type while held rejects with the type', async () => {
      const lock = await locker.acquire('k', { ttl: 10000 })
      await redis.del('k')
      await putOtherType(redis, 'k')
      expectKeyTypeError((await rejection(lock.extend(10000))).error, 'k', 'hash')
    })

    test('extend and release of a multi-key lock name the key that became another type', async () => {
      const lock = await locker.acquire(['a', 'b'], { ttl: 10000 })
      await redis.del('b')
      await putOtherType(redis, 'b', 'set')
      expectKeyTypeError((await rejection(locker.extend(lock, 10000))).error, 'b', 'set')
      expectKeyTypeError((await rejection(lock.release())).error, 'b', 'set')
    })

    test('the top-level functions of the default locker report it too', async () => {
      const ironlock = require('../..')
      ironlock.configure(server.url)
      try {
        await putOtherType(redis, 'k')
        const { error, took } = await rejection(ironlock.acquire('k', { wait: LONG_WAIT_MS }))
        expectKeyTypeError(error, 'k', 'hash')
        expect(took).toBeLessThan(AT_ONCE_MS)
        expectKeyTypeError((await rejection(ironlock.tryAcquire('k'))).error, 'k', 'hash')
        expectKeyTypeError((await rejection(ironlock.using('k', () => {}))).error, 'k', 'hash')
      } finally {
        await ironlock.close()
      }
    })

    test('the key prefix is not part of the key named', async () => {
      const prefixed = new Locker({ host: server.host, port: server.port, keyPrefix: 'app:' })
      await putOtherType(redis, 'app:k')
      expectKeyTypeError((await rejection(prefixed.acquire('k', { wait: 0 }))).error, 'k', 'hash')
      await prefixed.close()
    })
  })
})

describe('on Redlock (3 nodes)', () => {
  let nodes
  let clients
  let locker

  beforeAll(async () => {
    nodes = await startRedisSet(3)
    clients = nodes.map((node) => node.client())
  })

  beforeEach(async () => {
    await Promise.all(clients.map((client) => client.flushall()))
    locker = new Locker(nodes.map((node) => node.url))
  })

  afterEach(() => locker.close())

  test('a majority of nodes with another type: acquire, tryAcquire and using reject at once', async () => {
    await Promise.all([putOtherType(clients[0], 'k'), putOtherType(clients[2], 'k')])
    const acquired = await rejection(locker.acquire('k', { wait: LONG_WAIT_MS }))
    expectKeyTypeError(acquired.error, 'k', 'hash')
    expect(acquired.took).toBeLessThan(AT_ONCE_MS)
    expectKeyTypeError((await rejection(locker.tryAcquire('k'))).error, 'k', 'hash')
    const used = await rejection(locker.using('k', { wait: LONG_WAIT_MS }, () => {}))
    expectKeyTypeError(used.error, 'k', 'hash')
    expect(used.took).toBeLessThan(AT_ONCE_MS)
    expect(await clients[1].exists('k')).toBe(0)
  })

  test('one node with another type votes against: the other two make the majority', async () => {
    await putOtherType(clients[1], 'k', 'list')
    const lock = await locker.acquire('k', { wait: 0 })
    expect(await clients[0].get('k')).toBe(lock.token)
    expect(await clients[1].type('k')).toBe('list')
    expect(await lock.release()).toBe(true)
  })

  test('a waiter behind another client\'s lock gets it when that lapses, a node with another type notwithstanding', async () => {
    await putOtherType(clients[0], 'k')
    // Another client's lock (not ironlock's, so no release is announced) on the other two.
    await Promise.all([clients[1].set('k', 'someone-else', 'PX', 500), clients[2].set('k', 'someone-else', 'PX', 500)])
    const lock = await locker.acquire('k', { wait: LONG_WAIT_MS })
    expect(await clients[1].get('k')).toBe(lock.token)
    await lock.release()
  })

  test('one node with another type and one down: EQUORUM, the node\'s error in votes.errors', async () => {
    const set = await startRedisSet(3)
    const setClients = set.map((node) => node.client())
    await putOtherType(setClients[0], 'k')
    const quorum = new Locker(set.map((node) => node.url), { connectTimeout: 500, commandTimeout: 500 })
    await set[2].stop()
    const { error } = await rejection(quorum.acquire('k', { wait: 0 }))
    expect(error).toBeInstanceOf(QuorumError)
    const typed = error.votes.errors.find((entry) => entry.node === `${set[0].host}:${set[0].port}`)
    expect(typed.message).toContain('key "k" holds a Redis hash, not a lock')
    expect(error.votes.errors).toHaveLength(2)
    await quorum.close()
  })

  test('extend and release of a lock whose key became another type on a majority reject with the type', async () => {
    const lock = await locker.acquire('k', { ttl: 10000 })
    for (const client of [clients[0], clients[1]]) {
      await client.del('k')
      await putOtherType(client, 'k', 'zset')
    }
    expectKeyTypeError((await rejection(lock.extend(10000))).error, 'k', 'zset')
    expectKeyTypeError((await rejection(lock.release())).error, 'k', 'zset')
  })
})
