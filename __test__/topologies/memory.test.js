'use strict'

// What only `memory://` has: which lockers share a store, and how the target is written. The lock
// semantics themselves are tested against Redis and memory:// alike in api/behaviour.test.js.

const { execFile } = require('node:child_process')
const path = require('node:path')
const { inspect, promisify } = require('node:util')
const { Locker } = require('../..')

const run = promisify(execFile)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const opened = []
let testNumber = 0

/** A locker closed after the test. */
function open(target, defaults) {
  const locker = new Locker(target, defaults)
  opened.push(locker)
  return locker
}

/** A store name no other test uses: named stores live as long as the process. */
function fresh() {
  return `memory://memory-test-${++testNumber}`
}

afterEach(async () => {
  await Promise.all(opened.splice(0).map((locker) => locker.close()))
})

test('each locker on memory:// has a store of its own', async () => {
  const one = open('memory://')
  const two = open('memory://')
  expect(await one.tryAcquire('k')).not.toBeNull()
  expect(await one.tryAcquire('k')).toBeNull()
  expect(await two.tryAcquire('k')).not.toBeNull()
})

test('lockers on the same memory://<name> share one store, other names do not', async () => {
  const target = fresh()
  const one = open(target)
  const two = open(target)
  const elsewhere = open(fresh())
  const lock = await one.acquire('k')
  expect(await two.tryAcquire('k')).toBeNull()
  expect(await elsewhere.tryAcquire('k')).not.toBeNull()
  expect(await two.release(await two.acquire('other'))).toBe(true)
  expect(await lock.release()).toBe(true)
  expect(await two.tryAcquire('k')).not.toBeNull()
})

test('a release by another locker on the store wakes a waiter at once', async () => {
  const target = fresh()
  const holding = open(target)
  const waiting = open(target)
  const holder = await holding.acquire('k', { ttl: 10000 })
  const next = waiting.acquire('k', { wait: 5000 })
  await sleep(100)
  const released = Date.now()
  await holder.release()
  await next
  expect(Date.now() - released).toBeLessThan(100)
})

test('a named store outlives a locker closed without releasing, like Redis', async () => {
  const target = fresh()
  const leaving = new Locker(target)
  await leaving.acquire('k', { ttl: 10000 })
  await leaving.close()
  expect(await open(target).tryAcquire('k')).toBeNull()
})

test('keyPrefix separates lockers on one store', async () => {
  const target = fresh()
  const shop = open(target, { keyPrefix: 'shop:' })
  const sameShop = open(target, { keyPrefix: 'shop:' })
  const blog = open(target, { keyPrefix: 'blog:' })
  await shop.acquire('k')
  expect(await sameShop.tryAcquire('k')).toBeNull()
  expect(await blog.tryAcquire('k')).not.toBeNull()
})

test('the locker shows its target', () => {
  expect(inspect(open('memory://'))).toBe("Locker { target: 'memory://' }")
  expect(inspect(open('memory://tests'))).toBe("Locker { target: 'memory://tests' }")
})

test('REDIS_URL=memory:// works for lockers built without a target', async () => {
  const saved = process.env.REDIS_URL
  process.env.REDIS_URL = 'memory://'
  try {
    const locker = open()
    expect(inspect(locker)).toBe("Locker { target: 'memory://' }")
    expect(await locker.tryAcquire('k')).not.toBeNull()
  } finally {
    if (saved === undefined) delete process.env.REDIS_URL
    else process.env.REDIS_URL = saved
  }
})

test('malformed memory targets throw ERR_INVALID_ARG_VALUE naming target', () => {
  for (const target of ['memory:', 'memory:tests', 'memory:/tests', 'MEMORY://']) {
    expect(() => new Locker(target)).toThrow(expect.objectContaining({
      code: 'ERR_INVALID_ARG_VALUE',
      message: expect.stringMatching(/target.*memory:\/\//),
    }))
  }
  expect(() => new Locker('memory://', { connectTimeout: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }))
  expect(() => new Locker('memory://', { keyPrefix: 5 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
})

test('a script on memory:// that never calls close() exits by itself', async () => {
  const source = `
    const { Locker } = require(process.argv[1])
    const locker = new Locker('memory://')
    locker.tryAcquire('k', { ttl: 60000 }).then((lock) => console.log('held', lock !== null))
  `
  const started = Date.now()
  const { stdout } = await run(process.execPath, ['-e', source, path.join(__dirname, '..', '..')], { timeout: 10000 })
  expect(stdout.trim()).toBe('held true')
  expect(Date.now() - started).toBeLessThan(2000)
})
