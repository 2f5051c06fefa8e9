'use strict'

// Waiting without polling: releases wake waiters through the release channel, the holder's TTL
// bounds every sleep, and local waiters queue in arrival order behind one head.

const { startRedis, startRedisSet, stopAll } = require('../helpers/redis-server')
const { Locker, LockBusyError } = require('../..')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let server
let redis
let holderSide
let waiterSide

/** Resolves once someone subscribes the release channel of `key`: a waiter is queued for it. */
async function queued(key) {
  for (;;) {
    const [, subscribers] = await redis.pubsub('NUMSUB', `{${key}}:released`)
    if (subscribers > 0) return
    await sleep(10)
  }
}

async function scriptCalls() {
  const stats = await redis.info('commandstats')
  let calls = 0
  for (const [, name, count] of stats.matchAll(/cmdstat_(\w+):calls=(\d+)/g)) {
    if (name === 'evalsha' || name === 'eval') calls += Number(count)
  }
  return calls
}

beforeAll(async () => {
  server = await startRedis()
  redis = server.client()
})

beforeEach(async () => {
  await redis.flushall()
  // Two lockers stand for two processes: the waiter's side cannot see the holder's releases locally.
  holderSide = new Locker(server.url)
  waiterSide = new Locker(server.url)
})

afterEach(async () => {
  await holderSide.close()
  await waiterSide.close()
})

afterAll(() => stopAll())

test('a waiter does not poll Redis while the lock is held', async () => {
  const holder = await holderSide.acquire('k', { ttl: 10000 })
  const before = await scriptCalls()
  const waiting = waiterSide.acquire('k', { wait: 1500 }).catch((e) => e)
  await sleep(1200)
  // The first attempt, and one more once the release channel is subscribed.
  expect(await scriptCalls() - before).toBeLessThanOrEqual(2)
  expect(await waiting).toBeInstanceOf(LockBusyError)
  await holder.release()
})

test('a release in another process wakes the waiter at once', async () => {
  const holder = await holderSide.acquire('k', { ttl: 10000 })
  const waiting = waiterSide.acquire('k', { wait: 5000 })
  await queued('k')
  const released = Date.now()
  await holder.release()
  const lock = await waiting
  expect(Date.now() - released).toBeLessThan(100)
  expect(await redis.get('k')).toBe(lock.token)
})

test('a crashed holder\'s expiry is noticed without any message', async () => {
  await holderSide.acquire('k', { ttl: 600 })
  const started = Date.now()
  const before = await scriptCalls()
  const lock = await waiterSide.acquire('k', { wait: 5000 })
  const waited = Date.now() - started
  expect(waited).toBeGreaterThanOrEqual(450)
  expect(waited).toBeLessThan(900)
  expect(await scriptCalls() - before).toBeLessThanOrEqual(4)
  await lock.release()
})

test('100 local waiters cost Redis about as much as one', async () => {
  const holder = await holderSide.acquire('k', { ttl: 10000 })
  const first = waiterSide.acquire('k', { wait: 10000 })
  await queued('k')
  const before = await scriptCalls()
  const rest = Array.from({ length: 99 }, () => waiterSide.acquire('k', { wait: 10000 }))
  await sleep(1000)
  expect(await scriptCalls() - before).toBeLessThanOrEqual(2)
  await holder.release()
  const locks = [await first]
  for (const next of rest) {
    await locks[locks.length - 1].release()
    locks.push(await next)
  }
  expect(new Set(locks.map((lock) => lock.token)).size).toBe(100)
})

test('a cancelled waiter leaves the queue and the next one moves up', async () => {
  const holder = await waiterSide.acquire('k', { ttl: 10000 })
  const order = []
  const controller = new AbortController()
  const first = waiterSide.using('k', async () => { order.push('first') })
  await sleep(20)
  const cancelled = waiterSide.using('k', { signal: controller.signal }, async () => { order.push('cancelled') })
  await sleep(20)
  const third = waiterSide.using('k', async () => { order.push('third') })
  await sleep(20)
  controller.abort()
  await expect(cancelled).rejects.toMatchObject({ name: 'AbortError' })
  await holder.release()
  await Promise.all([first, third])
  expect(order).toEqual(['first', 'third'])
})

test('a cancelled head hands over to the next waiter', async () => {
  const holder = await holderSide.acquire('k', { ttl: 10000 })
  const controller = new AbortController()
  const head = waiterSide.acquire('k', { signal: controller.signal })
  await sleep(50)
  const next = waiterSide.acquire('k', { wait: 5000 })
  await sleep(50)
  controller.abort()
  await expect(head).rejects.toMatchObject({ name: 'AbortError' })
  await holder.release()
  const lock = await next
  expect(await redis.get('k')).toBe(lock.token)
})

test('a waiter behind the head times out at its own deadline with retryAfter', async () => {
  await holderSide.acquire('k', { ttl: 5000 })
  const head = waiterSide.acquire('k', { wait: 3000 }).catch((e) => e)
  await sleep(50)
  const started = Date.now()
  const error = await waiterSide.acquire('k', { wait: 300 }).catch((e) => e)
  expect(Date.now() - started).toBeLessThan(1000)
  expect(error).toBeInstanceOf(LockBusyError)
  expect(error.retryAfter).toBeGreaterThan(3000)
  expect(await head).toBeInstanceOf(LockBusyError)
})

test('after the subscriber connection is killed, it resubscribes and releases wake again', async () => {
  const holder = await holderSide.acquire('k', { ttl: 30000 })
  const waiting = waiterSide.acquire('k', { wait: 10000 })
  await queued('k')
  expect(Number(await redis.client('KILL', 'TYPE', 'pubsub'))).toBeGreaterThanOrEqual(1)
  await sleep(500)
  const released = Date.now()
  await holder.release()
  const lock = await waiting
  // Without the resubscribe the waiter would sleep out the holder's 30 s TTL.
  expect(Date.now() - released).toBeLessThan(1000)
  await lock.release()
})

test('a release missed while the subscriber was down is caught by the resync', async () => {
  const holder = await holderSide.acquire('k', { ttl: 30000 })
  const waiting = waiterSide.acquire('k', { wait: 10000 })
  await queued('k')
  // Kill the subscriber and release before it is back: the announcement is lost.
  await redis.client('KILL', 'TYPE', 'pubsub')
  await holder.release()
  const started = Date.now()
  const lock = await waiting
  expect(Date.now() - started).toBeLessThan(3000)
  await lock.release()
})

test('a burst of local requests costs one attempt per acquisition, not one per waiter per hand-off', async () => {
  const before = await scriptCalls()
  await Promise.all(Array.from({ length: 50 }, () => waiterSide.using('burst', { wait: 10000 }, () => sleep(1))))
  // 50 acquisitions and 50 releases, plus a few attempts while the queue forms (one attempt per
  // waiter would add about 50).
  expect(await scriptCalls() - before).toBeLessThanOrEqual(110)
})

test('a release of one key wakes a waiter on several keys, from this process or another', async () => {
  for (const holderLocker of [holderSide, waiterSide]) {
    const holder = await holderLocker.acquire('part', { ttl: 20000 })
    const waiting = waiterSide.acquire(['part', 'other-part'], { wait: 5000 })
    await queued('part')
    const released = Date.now()
    await holder.release()
    const lock = await waiting
    expect(Date.now() - released).toBeLessThan(100)
    await lock.release()
  }
})

describe('waiters are served in the order they called', () => {
  const WAITERS = 6

  /**
   * Starts WAITERS requests for `key` (or `key(index)`) on `locker` in one tick, alternating
   * acquire and using, each holding the lock a moment; `between` runs after the first call,
   * before the rest (omitted: all in one tick). Resolves with the order in which they got the lock.
   */
  async function serveInOrder (locker, keys, between) {
    const keyOf = typeof keys === 'function' ? keys : () => keys
    const order = []
    const hold = async (index) => {
      order.push(index)
      await sleep(2)
    }
    const call = (index) => index % 2 === 0
      ? locker.using(keyOf(index), { wait: 15000 }, () => hold(index))
      : locker.acquire(keyOf(index), { wait: 15000 }).then(async (lock) => {
        await hold(index)
        await lock.release()
      })
    const calls = [call(0)]
    if (between) await between()
    for (let index = 1; index < WAITERS; index++) calls.push(call(index))
    return { order, done: Promise.all(calls) }
  }

  const callOrder = Array.from({ length: WAITERS }, (_, index) => index)

  test('on one Redis, behind a holder in another process', async () => {
    const holder = await holderSide.acquire('k', { ttl: 10000 })
    const { order, done } = await serveInOrder(waiterSide, 'k')
    await queued('k')
    await holder.release()
    await done
    expect(order).toEqual(callOrder)
  })

  test('on one Redis, behind a holder in this process', async () => {
    const holder = await waiterSide.acquire('k', { ttl: 10000 })
    const { order, done } = await serveInOrder(waiterSide, 'k')
    await queued('k')
    await holder.release()
    await done
    expect(order).toEqual(callOrder)
  })

  test('on one Redis, when the others call while the first one\'s attempt is in flight', async () => {
    const holder = await holderSide.acquire('k', { ttl: 10000 })
    // Redis holds every script call for a while: the first attempt is surely still in flight
    // when the others call.
    await redis.client('PAUSE', 300, 'WRITE')
    const { order, done } = await serveInOrder(waiterSide, 'k', () => sleep(100))
    await queued('k')
    await holder.release()
    await done
    expect(order).toEqual(callOrder)
  })

  test('on several keys, whatever order each names them in', async () => {
    const holder = await holderSide.acquire('a', { ttl: 10000 })
    const { order, done } = await serveInOrder(waiterSide, (index) => index % 3 === 0 ? ['a', 'b'] : ['b', 'a'])
    await queued('a')
    await sleep(50)
    await holder.release()
    await done
    expect(order).toEqual(callOrder)
  })

  test('on memory://', async () => {
    const locker = new Locker('memory://')
    try {
      const holder = await locker.acquire('k', { ttl: 10000 })
      const { order, done } = await serveInOrder(locker, 'k')
      await sleep(50)
      await holder.release()
      await done
      expect(order).toEqual(callOrder)
    } finally {
      await locker.close()
    }
  })

  describe('on Redlock', () => {
    let nodes
    let admins
    let redlockHolder
    let redlockWaiter

    beforeAll(async () => {
      nodes = await startRedisSet(3)
      admins = nodes.map((node) => node.client())
    })

    beforeEach(() => {
      redlockHolder = new Locker(nodes.map((node) => node.url))
      redlockWaiter = new Locker(nodes.map((node) => node.url))
    })

    afterEach(async () => {
      await redlockHolder.close()
      await redlockWaiter.close()
    })

    test('in one tick', async () => {
      const holder = await redlockHolder.acquire('k', { ttl: 10000 })
      const { order, done } = await serveInOrder(redlockWaiter, 'k')
      await sleep(200)
      await holder.release()
      await done
      expect(order).toEqual(callOrder)
    })

    test('when the others call while the first one\'s attempt is in flight', async () => {
      const holder = await redlockHolder.acquire('k', { ttl: 10000 })
      await Promise.all(admins.map((admin) => admin.client('PAUSE', 300, 'WRITE')))
      const { order, done } = await serveInOrder(redlockWaiter, 'k', () => sleep(100))
      await sleep(400)
      await holder.release()
      await done
      expect(order).toEqual(callOrder)
    })
  })
})
