'use strict'

// ironlock writes the layout of the `redlock` package, so old and new code exclude each other on
// the same keys during a migration.

const Redlock = require('redlock')
const { startRedis, stopAll } = require('../helpers/redis-server')
const { Locker } = require('../..')

let server
let redis
let redlock
let locker

beforeAll(async () => {
  server = await startRedis()
  redis = server.client()
  redlock = new Redlock([server.client()], { retryCount: 0 })
  redlock.on('clientError', () => {})
  locker = new Locker(server.url)
})

beforeEach(() => redis.flushall())

afterAll(async () => {
  await locker.close()
  await stopAll()
})

test('redlock cannot take a key ironlock holds', async () => {
  const lock = await locker.acquire('orders:42', { ttl: 5000 })
  await expect(redlock.lock('orders:42', 5000)).rejects.toThrow(Redlock.LockError)
  await lock.release()
  const theirs = await redlock.lock('orders:42', 5000)
  await theirs.unlock()
})

test('ironlock cannot take a key redlock holds, and waits for its release', async () => {
  const theirs = await redlock.lock('orders:43', 5000)
  expect(await locker.tryAcquire('orders:43')).toBeNull()
  const waiting = locker.acquire('orders:43', { wait: 5000 })
  setTimeout(() => theirs.unlock(), 100)
  const ours = await waiting
  expect(await redis.get('orders:43')).toBe(ours.token)
  await ours.release()
})

test('neither side can release or extend the other\'s lock', async () => {
  const theirs = await redlock.lock('orders:44', 5000)
  const ours = await locker.acquire('orders:45', { ttl: 5000 })
  await expect(redlock.unlock({ ...theirs, resource: 'orders:45' })).rejects.toThrow()
  expect(await redis.get('orders:45')).toBe(ours.token)
  expect(await redis.get('orders:44')).toBe(theirs.value)
})
