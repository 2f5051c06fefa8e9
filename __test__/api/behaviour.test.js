'use strict'

// One behavioural suite, four targets: every test here runs against a real Redis, a Redis
// Cluster, Redis behind Sentinel and `memory://`, so neither the Cluster, Sentinel nor the
// in-process store can drift from one Redis. Tests that need to look at Redis itself (raw keys, pub/sub, server failures) belong in
// the other files, not here.

const { startRedis, stopAll } = require('../helpers/redis-server')
const { startCluster } = require('../helpers/redis-cluster')
const { startSentinel } = require('../helpers/redis-sentinel')
const ironlock = require('../..')
const { Locker, LockError, LockBusyError, LockLostError, LockConnectionError } = ironlock

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let server

/** Each target: where the locks live, and how to start every test from an empty store. */
const targets = [
  ['redis', {
    async setup() {
      server = await startRedis()
      this.redis = server.client()
      return server.url
    },
    reset() {
      return this.redis.flushall()
    },
  }],
  ['cluster', {
    async setup() {
      this.cluster = await startCluster()
      return this.cluster.url
    },
    reset() {
      return this.cluster.flushAll()
    },
  }],
  ['sentinel', {
    async setup() {
      this.sentinel = await startSentinel()
      return this.sentinel.url
    },
    async reset() {
      await this.sentinel.admin(await this.sentinel.master()).flushall()
    },
  }],
  ['memory', {
    setup: async () => 'memory://',
    // Each `new Locker('memory://')` has a store of its own: a fresh locker is an empty store.
    reset: async () => {},
  }],
]

afterAll(() => stopAll())

describe.each(targets)('%s', (_, backend) => {
  let target
  let locker

  beforeAll(async () => {
    target = await backend.setup()
  })

  beforeEach(async () => {
    await backend.reset()
    locker = new Locker(target)
  })

  afterEach(() => locker.close())

  /** Whether `key` is held by anyone right now, without waiting and without keeping it. */
  async function held(key) {
    const lock = await locker.tryAcquire(key, { ttl: 60000 })
    if (lock === null) return true
    await lock.release()
    return false
  }

  describe('acquire, release, tryAcquire', () => {
    test('a lock carries its keys, a uuid v4 token, a fence and its expiry', async () => {
      const before = Date.now()
      const lock = await locker.acquire('order:1', { ttl: 5000 })
      expect(lock.key).toBe('order:1')
      expect(lock.keys).toEqual(['order:1'])
      expect(lock.token).toMatch(UUID_V4)
      expect(lock.fence).toBeGreaterThan(0)
      expect(lock.expiresAt).toBeGreaterThan(before + 4000)
      expect(lock.expiresAt).toBeLessThanOrEqual(Date.now() + 5000)
      expect(await held('order:1')).toBe(true)
      expect(await lock.release()).toBe(true)
      expect(await held('order:1')).toBe(false)
    })

    test('every acquisition gets a fresh token', async () => {
      const first = await locker.acquire('k')
      await first.release()
      const second = await locker.acquire('k')
      expect(second.token).toMatch(UUID_V4)
      expect(second.token).not.toBe(first.token)
    })

    test('release is true once, then false', async () => {
      const lock = await locker.acquire('k')
      expect(await locker.release(lock)).toBe(true)
      expect(await locker.release(lock)).toBe(false)
    })

    test('tryAcquire resolves null while held and a lock once free', async () => {
      const lock = await locker.acquire('k')
      expect(await locker.tryAcquire('k')).toBeNull()
      await lock.release()
      const next = await locker.tryAcquire('k')
      expect(next).not.toBeNull()
      expect(next.key).toBe('k')
    })

    test('a release never frees a lock someone else took after ours expired', async () => {
      const lock = await locker.acquire('k', { ttl: 50 })
      await sleep(100)
      const other = await locker.acquire('k', { ttl: 5000, wait: 0 })
      expect(await lock.release()).toBe(false)
      expect(await held('k')).toBe(true)
      expect(await other.release()).toBe(true)
    })

    test('the cooldown recipe: a lock that is never released lets one caller through per TTL', async () => {
      expect(await locker.tryAcquire('refresh:42', { ttl: 300 })).not.toBeNull()
      expect(await locker.tryAcquire('refresh:42', { ttl: 300 })).toBeNull()
      await sleep(150)
      expect(await locker.tryAcquire('refresh:42', { ttl: 300 })).toBeNull()
      await sleep(200)
      expect(await locker.tryAcquire('refresh:42', { ttl: 300 })).not.toBeNull()
    })

    test('the top-level functions work on a configured target', async () => {
      ironlock.configure(target)
      try {
        const lock = await ironlock.acquire('top', { ttl: 5000 })
        expect(await ironlock.tryAcquire('top')).toBeNull()
        await ironlock.extend(lock, 5000)
        expect(await ironlock.release(lock)).toBe(true)
        expect(await ironlock.using('top', async (signal, inner) => inner.key)).toBe('top')
      } finally {
        await ironlock.close()
      }
    })
  })

  describe('waiting', () => {
    test('wait: 0 fails at once with LockBusyError and retryAfter', async () => {
      await locker.acquire('k', { ttl: 3000 })
      const started = Date.now()
      const error = await locker.acquire('k', { wait: 0 }).catch((e) => e)
      expect(Date.now() - started).toBeLessThan(500)
      expect(error).toBeInstanceOf(LockBusyError)
      expect(error).toBeInstanceOf(LockError)
      expect(error.code).toBe('ELOCKBUSY')
      expect(error.key).toBe('k')
      expect(error.retryAfter).toBeGreaterThan(2000)
      expect(error.retryAfter).toBeLessThanOrEqual(3000)
    })

    test('the wait runs out after about `wait` ms, with retryAfter', async () => {
      await locker.acquire('k', { ttl: 5000 })
      const started = Date.now()
      const error = await locker.acquire('k', { wait: 300 }).catch((e) => e)
      const waited = Date.now() - started
      expect(error).toBeInstanceOf(LockBusyError)
      expect(error.retryAfter).toBeGreaterThan(3500)
      expect(waited).toBeGreaterThanOrEqual(290)
      expect(waited).toBeLessThan(1500)
    })

    test('a waiter gets the lock once the holder\'s TTL runs out', async () => {
      await locker.acquire('k', { ttl: 400 })
      const started = Date.now()
      const next = await locker.acquire('k', { wait: 5000 })
      const waited = Date.now() - started
      expect(waited).toBeGreaterThanOrEqual(300)
      expect(waited).toBeLessThan(1000)
      expect(await next.release()).toBe(true)
    })

    test('wait: Infinity waits until acquired', async () => {
      const holder = await locker.acquire('k', { ttl: 300 })
      const next = await locker.acquire('k', { wait: Infinity })
      expect(next.token).not.toBe(holder.token)
    })

    test('a release wakes the next waiter at once', async () => {
      const holder = await locker.acquire('k', { ttl: 10000 })
      const waiting = locker.acquire('k', { wait: 5000 })
      await sleep(100)
      const released = Date.now()
      expect(await holder.release()).toBe(true)
      const next = await waiting
      expect(Date.now() - released).toBeLessThan(100)
      expect(next.token).not.toBe(holder.token)
    })

    test('local waiters are served in arrival order', async () => {
      const holder = await locker.acquire('k', { ttl: 10000 })
      const order = []
      const waiters = []
      for (let i = 0; i < 20; i++) {
        waiters.push(locker.using('k', { wait: 10000 }, async () => { order.push(i) }))
        await sleep(5)
      }
      await holder.release()
      await Promise.all(waiters)
      expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i))
    })

    test('an AbortSignal cancels the wait with its reason and leaves nothing locked', async () => {
      const holder = await locker.acquire('k')
      const controller = new AbortController()
      const waiting = locker.acquire('k', { wait: 10000, signal: controller.signal })
      await sleep(100)
      const reason = new Error('user went away')
      controller.abort(reason)
      await expect(waiting).rejects.toBe(reason)
      await holder.release()
      await sleep(100)
      expect(await held('k')).toBe(false)
    })

    test('an aborted signal rejects with an AbortError and takes nothing', async () => {
      const error = await locker.acquire('k', { signal: AbortSignal.abort() }).catch((e) => e)
      expect(error.name).toBe('AbortError')
      expect(await held('k')).toBe(false)
    })

    test('a signal that aborts as its listener is added rejects with its reason and leaves the key free', async () => {
      // Duck-typed signals are accepted; this one calls its listener at once, before the
      // acquire was requested: nothing may be taken (nobody would ever release it).
      const reason = new Error('gone at once')
      const signal = { aborted: false, reason, addEventListener(type, listener) { listener() }, removeEventListener() {} }
      await expect(locker.acquire('k', { signal, ttl: 20000 })).rejects.toBe(reason)
      await sleep(150)
      expect(await held('k')).toBe(false)
      const next = await locker.acquire('k', { wait: 0 })
      await next.release()
    })

    test('AbortSignal.timeout bounds a wait', async () => {
      await locker.acquire('k')
      const started = Date.now()
      const error = await locker.acquire('k', { wait: Infinity, signal: AbortSignal.timeout(200) }).catch((e) => e)
      expect(error.name).toBe('TimeoutError')
      expect(Date.now() - started).toBeLessThan(1000)
    })
  })

  describe('multi-key locks', () => {
    test('take every key or none', async () => {
      const blocker = await locker.acquire('b')
      await expect(locker.acquire(['a', 'b', 'c'], { wait: 0 })).rejects.toThrow(LockBusyError)
      // Nothing was taken: a and c are free.
      expect(await held('a')).toBe(false)
      expect(await held('c')).toBe(false)
      await blocker.release()
      const all = await locker.acquire(['a', 'b', 'c'])
      expect(all.key).toBe('a')
      expect(all.keys).toEqual(['a', 'b', 'c'])
      for (const key of ['a', 'b', 'c']) expect(await held(key)).toBe(true)
      expect(await all.release()).toBe(true)
      for (const key of ['a', 'b', 'c']) expect(await held(key)).toBe(false)
    })

    test('retryAfter is the longest remaining TTL among the held keys', async () => {
      await locker.acquire('a', { ttl: 1000 })
      await locker.acquire('c', { ttl: 4000 })
      const error = await locker.acquire(['a', 'b', 'c'], { wait: 0 }).catch((e) => e)
      expect(error).toBeInstanceOf(LockBusyError)
      expect(error.key).toBe('a')
      expect(error.retryAfter).toBeGreaterThan(3000)
      expect(error.retryAfter).toBeLessThanOrEqual(4000)
    })

    test('extend covers every key', async () => {
      const all = await locker.acquire(['x', 'y'], { ttl: 300 })
      await all.extend(5000)
      await sleep(450)
      expect(await held('x')).toBe(true)
      expect(await held('y')).toBe(true)
    })
  })

  describe('extend', () => {
    test('resets the TTL and moves expiresAt', async () => {
      const lock = await locker.acquire('k', { ttl: 300 })
      const before = lock.expiresAt
      const extended = await lock.extend(5000)
      expect(extended).toBe(lock)
      expect(lock.expiresAt).toBeGreaterThan(before + 4000)
      await sleep(450)
      expect(await held('k')).toBe(true)
    })

    test('without ttl uses the lock\'s own TTL', async () => {
      const lock = await locker.acquire('k', { ttl: 400 })
      await sleep(250)
      await locker.extend(lock)
      await sleep(250)
      expect(await held('k')).toBe(true)
      await sleep(300)
      expect(await held('k')).toBe(false)
    })

    test('rejects LockLostError once the lock expired and someone else took it', async () => {
      const lock = await locker.acquire('k', { ttl: 50 })
      await sleep(100)
      const other = await locker.acquire('k', { wait: 0 })
      const error = await lock.extend(1000).catch((e) => e)
      expect(error).toBeInstanceOf(LockLostError)
      expect(error).toBeInstanceOf(LockError)
      expect(error.code).toBe('ELOCKLOST')
      expect(error.key).toBe('k')
      expect(await other.release()).toBe(true)
    })

    test('rejects LockLostError after release', async () => {
      const lock = await locker.acquire('k')
      await lock.release()
      await expect(lock.extend()).rejects.toThrow(LockLostError)
    })
  })

  describe('fencing tokens', () => {
    test('grow strictly with every acquisition of a key', async () => {
      let previous = 0
      for (let i = 0; i < 20; i++) {
        const lock = await locker.acquire('fenced')
        expect(lock.fence).toBeGreaterThan(previous)
        previous = lock.fence
        await lock.release()
      }
    })

    test('grow past an expired holder\'s', async () => {
      const expired = await locker.acquire('fenced', { ttl: 50 })
      await sleep(100)
      const next = await locker.acquire('fenced', { wait: 0 })
      expect(next.fence).toBeGreaterThan(expired.fence)
    })

    test('a multi-key lock lifts every key\'s counter', async () => {
      // Raise alpha's counter well above omega's first.
      for (let i = 0; i < 5; i++) await (await locker.acquire('alpha')).release()
      const both = await locker.acquire(['alpha', 'omega'])
      await both.release()
      const alpha = await locker.acquire('alpha')
      const omega = await locker.acquire('omega')
      expect(alpha.fence).toBeGreaterThan(both.fence)
      expect(omega.fence).toBeGreaterThan(both.fence)
    })
  })

  describe('using', () => {
    test('runs fn with the lock held, returns its value and releases', async () => {
      const result = await locker.using('k', async (signal, lock) => {
        expect(signal.aborted).toBe(false)
        expect(lock.key).toBe('k')
        expect(await held('k')).toBe(true)
        return 42
      })
      expect(result).toBe(42)
      expect(await held('k')).toBe(false)
    })

    test('releases when fn throws, and rejects with fn\'s error', async () => {
      const boom = new Error('boom')
      await expect(locker.using('k', { ttl: 10000 }, async () => {
        expect(await held('k')).toBe(true)
        throw boom
      })).rejects.toBe(boom)
      expect(await held('k')).toBe(false)
    })

    test('rejects LockBusyError when the wait runs out, without running fn', async () => {
      await locker.acquire('k')
      const fn = jest.fn()
      await expect(locker.using('k', { wait: 100 }, fn)).rejects.toThrow(LockBusyError)
      expect(fn).not.toHaveBeenCalled()
    })

    test('autoExtend keeps the lock past its TTL for as long as fn runs', async () => {
      await locker.using('k', { ttl: 300 }, async (signal) => {
        await sleep(1000)
        expect(await held('k')).toBe(true)
        expect(signal.aborted).toBe(false)
      })
      expect(await held('k')).toBe(false)
    })

    test('autoExtend: false lets the lock expire and using reports it lost', async () => {
      const run = locker.using('k', { ttl: 300, autoExtend: false }, async () => {
        await sleep(1000)
        expect(await held('k')).toBe(false)
        return 'done'
      })
      await expect(run).rejects.toThrow(LockLostError)
    })

    test('the signal given in options cancels the wait for the lock', async () => {
      await locker.acquire('k')
      const controller = new AbortController()
      const fn = jest.fn()
      const run = locker.using('k', { signal: controller.signal }, fn)
      setTimeout(() => controller.abort(), 100)
      await expect(run).rejects.toMatchObject({ name: 'AbortError' })
      expect(fn).not.toHaveBeenCalled()
    })
  })

  describe('errors', () => {
    const cases = [
      ['empty key', (l) => l.acquire(''), RangeError, 'ERR_INVALID_ARG_VALUE', 'key'],
      ['non-string key', (l) => l.acquire(42), TypeError, 'ERR_INVALID_ARG_TYPE', 'key'],
      ['empty key array', (l) => l.tryAcquire([]), RangeError, 'ERR_INVALID_ARG_VALUE', 'key'],
      ['non-string in key array', (l) => l.acquire(['a', 1]), TypeError, 'ERR_INVALID_ARG_TYPE', 'key\\[1\\]'],
      ['ttl 0', (l) => l.acquire('k', { ttl: 0 }), RangeError, 'ERR_OUT_OF_RANGE', 'options.ttl'],
      ['Infinity ttl', (l) => l.tryAcquire('k', { ttl: Infinity }), RangeError, 'ERR_OUT_OF_RANGE', 'options.ttl'],
      ['string ttl', (l) => l.acquire('k', { ttl: '100' }), TypeError, 'ERR_INVALID_ARG_TYPE', 'options.ttl'],
      ['negative wait', (l) => l.acquire('k', { wait: -1 }), RangeError, 'ERR_OUT_OF_RANGE', 'options.wait'],
      ['bad signal', (l) => l.acquire('k', { signal: {} }), TypeError, 'ERR_INVALID_ARG_TYPE', 'options.signal'],
      ['non-function fn', (l) => l.using('k', {}, 'nope'), TypeError, 'ERR_INVALID_ARG_TYPE', 'fn'],
      ['forged lock', (l) => l.release({ key: 'k', token: 'x' }), TypeError, 'ERR_INVALID_ARG_TYPE', 'lock'],
      ['bad extend ttl', (l) => l.acquire('bad-extend').then((lock) => lock.extend(-1)), RangeError, 'ERR_OUT_OF_RANGE', 'ttl'],
    ]

    test.each(cases)('%s rejects Node-style, naming the argument', async (_, call, ErrorClass, code, name) => {
      const error = await call(locker).catch((e) => e)
      expect(error).toBeInstanceOf(ErrorClass)
      expect(error.code).toBe(code)
      expect(error.message).toMatch(new RegExp(name))
    })

    test('a rejected call takes nothing', async () => {
      await locker.acquire('k', { ttl: -1 }).catch(() => {})
      await locker.acquire(['k', 2]).catch(() => {})
      expect(await held('k')).toBe(false)
    })

    test('a Lock from another Locker is refused', async () => {
      const other = new Locker(target)
      try {
        const lock = await other.acquire('foreign')
        const error = await locker.release(lock).catch((e) => e)
        expect(error).toBeInstanceOf(RangeError)
        expect(error.code).toBe('ERR_INVALID_ARG_VALUE')
        expect(await lock.release()).toBe(true)
      } finally {
        await other.close()
      }
    })

    test('a closed locker rejects new locks with LockConnectionError', async () => {
      await locker.acquire('k')
      await locker.close()
      const error = await locker.acquire('other').catch((e) => e)
      expect(error).toBeInstanceOf(LockConnectionError)
      expect(error.code).toBe('ECONNECTION')
      expect(error.key).toBe('other')
      await expect(locker.tryAcquire('k')).rejects.toThrow(LockConnectionError)
    })

    test('closing rejects a pending wait with LockConnectionError', async () => {
      await locker.acquire('k', { ttl: 10000 })
      const waiting = locker.acquire('k', { wait: 5000 }).catch((e) => e)
      await sleep(50)
      await locker.close()
      expect(await waiting).toBeInstanceOf(LockConnectionError)
    })
  })
})
