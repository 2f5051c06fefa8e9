'use strict'

const { startRedis, stopAll } = require('./helpers/redis-server')
const { whenAborted } = require('./helpers/signals')
const { Locker, LockLostError } = require('..')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function blockEventLoop(ms) {
  const until = Date.now() + ms
  while (Date.now() < until) {
    // Busy on purpose: nothing else on the JS thread may run.
  }
}

let server
let redis
let locker

beforeAll(async () => {
  server = await startRedis()
  redis = server.client()
})

beforeEach(async () => {
  await redis.flushall()
  locker = new Locker(server.url)
})

afterEach(() => locker.close())
afterAll(() => stopAll())

test('runs fn with the lock held, returns its value and releases', async () => {
  const result = await locker.using('k', async (signal, lock) => {
    expect(signal.aborted).toBe(false)
    expect(await redis.get('k')).toBe(lock.token)
    return 42
  })
  expect(result).toBe(42)
  expect(await redis.exists('k')).toBe(0)
})

test('accepts options before fn, and sync functions', async () => {
  expect(await locker.using('k', { ttl: 2000 }, () => 'sync')).toBe('sync')
  expect(await redis.exists('k')).toBe(0)
})

test('releases when fn throws, and rejects with fn\'s error', async () => {
  const boom = new Error('boom')
  await expect(locker.using('k', async () => { throw boom })).rejects.toBe(boom)
  expect(await redis.exists('k')).toBe(0)
})

test('keeps the lock while the JS event loop is blocked far past the TTL', async () => {
  let token
  await locker.using('k', { ttl: 1000 }, async (signal, lock) => {
    token = lock.token
    blockEventLoop(3000)
    // The native watchdog extended the lock while JS could not run.
    expect(await redis.get('k')).toBe(token)
    expect(signal.aborted).toBe(false)
  })
  expect(await redis.exists('k')).toBe(0)
})

test('extends for as long as fn runs', async () => {
  await locker.using('k', { ttl: 300 }, async (signal, lock) => {
    await sleep(1200)
    expect(await redis.get('k')).toBe(lock.token)
    expect(await redis.pttl('k')).toBeGreaterThan(0)
  })
})

test('a lock deleted behind its back aborts the signal with LockLostError', async () => {
  let seen
  const run = locker.using('k', { ttl: 600 }, async (signal) => {
    await redis.del('k')
    await whenAborted(signal)
    seen = signal.reason
    return 'finished anyway'
  })
  const error = await run.catch((e) => e)
  expect(error).toBeInstanceOf(LockLostError)
  expect(error.key).toBe('k')
  expect(seen).toBe(error)
})

test('a lock taken by another holder aborts with LockLostError and is not deleted', async () => {
  const run = locker.using('k', { ttl: 600 }, async (signal) => {
    await redis.set('k', 'someone-else', 'PX', 10000)
    await whenAborted(signal)
  })
  await expect(run).rejects.toThrow(LockLostError)
  expect(await redis.get('k')).toBe('someone-else')
})

test('fn\'s own error wins when it threw before the lock was lost', async () => {
  const own = new Error('own')
  await expect(locker.using('k', { ttl: 600 }, async () => { throw own })).rejects.toBe(own)
})
