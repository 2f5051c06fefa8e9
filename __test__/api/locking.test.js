'use strict'

const { startRedis, stopAll } = require('../helpers/redis-server')
const { Locker, LockBusyError, LockLostError } = require('../..')

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

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

describe('acquire and release', () => {
  test('stores the plain SET NX PX layout: the token as a string with a TTL', async () => {
    const lock = await locker.acquire('order:1', { ttl: 5000 })
    expect(lock.key).toBe('order:1')
    expect(lock.keys).toEqual(['order:1'])
    expect(lock.token).toMatch(UUID_V4)
    expect(await redis.type('order:1')).toBe('string')
    expect(await redis.get('order:1')).toBe(lock.token)
    const pttl = await redis.pttl('order:1')
    expect(pttl).toBeGreaterThan(4000)
    expect(pttl).toBeLessThanOrEqual(5000)
    expect(lock.expiresAt).toBeGreaterThan(Date.now() + 4000)
    expect(lock.expiresAt).toBeLessThanOrEqual(Date.now() + 5000)
    expect(await lock.release()).toBe(true)
    expect(await redis.exists('order:1')).toBe(0)
  })

  test('release never deletes a lock someone else took after ours expired', async () => {
    const lock = await locker.acquire('k', { ttl: 50 })
    await sleep(80)
    const other = await locker.acquire('k', { ttl: 5000 })
    expect(await lock.release()).toBe(false)
    expect(await redis.get('k')).toBe(other.token)
    await other.release()
  })

  test('a lock that is never released is a cooldown', async () => {
    expect(await locker.tryAcquire('refresh:42', { ttl: 200 })).not.toBeNull()
    expect(await locker.tryAcquire('refresh:42', { ttl: 200 })).toBeNull()
    await sleep(250)
    expect(await locker.tryAcquire('refresh:42', { ttl: 200 })).not.toBeNull()
  })

  test('keyPrefix is prepended to what is stored, not to Lock.keys', async () => {
    const prefixed = new Locker(server.url, { keyPrefix: 'shop:' })
    const lock = await prefixed.acquire('order:7')
    expect(lock.keys).toEqual(['order:7'])
    expect(await redis.get('shop:order:7')).toBe(lock.token)
    expect(await redis.exists('order:7')).toBe(0)
    await lock.release()
    await prefixed.close()
  })

  test('keyPrefix from an options-object target', async () => {
    const prefixed = new Locker({ host: server.host, port: server.port, keyPrefix: 'opt:' })
    const lock = await prefixed.acquire('a')
    expect(await redis.get('opt:a')).toBe(lock.token)
    await prefixed.close()
  })

  test('an ioredis client as target: its options are read, the client is not used', async () => {
    const client = server.client()
    await client.ping()
    const fromClient = new Locker(client)
    const lock = await fromClient.acquire('from-client')
    expect(await redis.get('from-client')).toBe(lock.token)
    await lock.release()
    await fromClient.close()
    expect(client.status).toBe('ready')
    expect(await client.ping()).toBe('PONG')
  })
})

describe('waiting', () => {
  test('a waiter gets the lock when the holder releases', async () => {
    const holder = await locker.acquire('k')
    const waiting = locker.acquire('k', { wait: 5000 })
    await sleep(100)
    await holder.release()
    const next = await waiting
    expect(await redis.get('k')).toBe(next.token)
  })

  test('a waiter gets the lock when the holder expires', async () => {
    await locker.acquire('k', { ttl: 200 })
    const started = Date.now()
    const next = await locker.acquire('k', { wait: 5000 })
    expect(Date.now() - started).toBeLessThan(1500)
    await next.release()
  })
})

describe('multi-key locks', () => {
  test('take every key or none', async () => {
    const blocker = await locker.acquire('b')
    await expect(locker.acquire(['a', 'b', 'c'], { wait: 0 })).rejects.toThrow(LockBusyError)
    expect(await redis.exists('a', 'c')).toBe(0)
    await blocker.release()
    const all = await locker.acquire(['a', 'b', 'c'])
    expect(all.key).toBe('a')
    expect(all.keys).toEqual(['a', 'b', 'c'])
    expect(await redis.mget('a', 'b', 'c')).toEqual([all.token, all.token, all.token])
    expect(await all.release()).toBe(true)
    expect(await redis.exists('a', 'b', 'c')).toBe(0)
  })

  test('extend covers every key', async () => {
    const all = await locker.acquire(['x', 'y'], { ttl: 1000 })
    await all.extend(20000)
    expect(await redis.pttl('x')).toBeGreaterThan(15000)
    expect(await redis.pttl('y')).toBeGreaterThan(15000)
  })
})

describe('extend', () => {
  test('resets the TTL and moves expiresAt', async () => {
    const lock = await locker.acquire('k', { ttl: 1000 })
    const before = lock.expiresAt
    const extended = await lock.extend(10000)
    expect(extended).toBe(lock)
    expect(lock.expiresAt).toBeGreaterThan(before + 8000)
    expect(await redis.pttl('k')).toBeGreaterThan(9000)
  })

  test('without ttl uses the lock\'s own TTL', async () => {
    const lock = await locker.acquire('k', { ttl: 4000 })
    await sleep(200)
    await locker.extend(lock)
    expect(await redis.pttl('k')).toBeGreaterThan(3900)
  })

  test('rejects LockLostError once the lock is someone else\'s', async () => {
    const lock = await locker.acquire('k', { ttl: 50 })
    await sleep(80)
    const other = await locker.acquire('k')
    const error = await lock.extend(1000).catch((e) => e)
    expect(error).toBeInstanceOf(LockLostError)
    expect(error.code).toBe('ELOCKLOST')
    expect(error.key).toBe('k')
    expect(await redis.get('k')).toBe(other.token)
  })

})

describe('fencing tokens', () => {

  test('helper state stays bounded however many keys are locked', async () => {
    const keys = Array.from({ length: 20000 }, (_, i) => `sku:${i}`)
    for (let i = 0; i < keys.length; i += 500) {
      const locks = await Promise.all(keys.slice(i, i + 500).map((key) => locker.acquire(key)))
      await Promise.all(locks.map((lock) => lock.release()))
    }
    // No lock key remains; what is left is one fencing counter per hash slot, not per key.
    const left = await redis.keys('*')
    expect(left.every((key) => key.startsWith('ironlock:fence:{'))).toBe(true)
    expect(left.length).toBeLessThanOrEqual(16384)
    expect(left.length).toBeLessThan(keys.length)
  })
})
