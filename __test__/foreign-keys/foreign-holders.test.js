'use strict'

// Holders that are not ironlock's (hand-rolled `SET NX` locks, the `redlock` package) never
// announce their release: a waiter notices it by polling, in tens of milliseconds, instead of
// sleeping until the holder's TTL. Holders that are ironlock's still wake their waiters by push.

const { startRedis, startRedisSet, stopAll } = require('../helpers/redis-server')
const { Locker } = require('../..')
const IronlockRedlock = require('../../lib/redlock').default
const { Redlock: SesameRedlock } = require('@sesamecare-oss/redlock')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

afterAll(() => stopAll())

describe('one Redis', () => {
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

  test.each([
    ['one key', 'job'],
    ['several keys', ['job', 'report']],
  ])('the release of a hand-rolled SET NX lock is noticed long before its TTL (%s)', async (_, key) => {
    await redis.set('job', '1', 'PX', 10000, 'NX')
    const waiting = locker.acquire(key, { wait: 15000 })
    await sleep(20)
    await redis.del('job')
    const deleted = performance.now()
    const lock = await waiting
    const noticedAfter = performance.now() - deleted
    // The poll's longest pause is 16 ms; the rest is slack for a loaded machine. Sleeping until
    // the holder's TTL took 10 s.
    expect(noticedAfter).toBeLessThan(1000)
    expect(await redis.get('job')).toBe(lock.token)
    await lock.release()
  })

  // Issue 21: a key of another type was busy until the wait ran out; no holder releases it.
  test('a hand-rolled lock of another type is a LockKeyTypeError at once, not busy', async () => {
    await redis.hset('job', 'owner', 'cron')
    await redis.pexpire('job', 5000)
    const started = Date.now()
    await expect(locker.acquire('job', { wait: 5000 })).rejects.toMatchObject({ code: 'EKEYTYPE', key: 'job', type: 'hash' })
    expect(Date.now() - started).toBeLessThan(2500)
    expect(await redis.type('job')).toBe('hash')
  })

  test('ironlock tokens carry the mark that tells waiters their release is announced', async () => {
    const lock = await locker.acquire('job')
    expect(lock.token).toMatch(/^10c4ed00-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    await lock.release()
  })
})

describe('Redlock, 3 masters, next to the redlock package', () => {
  let nodes
  let clients
  let shim

  beforeAll(async () => {
    nodes = await startRedisSet(3)
    clients = nodes.map((node) => node.client())
  })

  beforeEach(() => {
    shim = new IronlockRedlock(clients, { retryCount: -1 })
  })

  afterEach(async () => {
    // Not `quit()`: as redlock's, it would quit the clients the tests share.
    await shim.locker.close()
    await Promise.all(clients.map((client) => client.flushall()))
  })

  test('the release of a redlock holder is noticed long before its TTL', async () => {
    const redlock = new SesameRedlock(clients, { retryCount: 0 })
    const held = await redlock.acquire(['stock'], 10000)
    const waiting = shim.acquire(['stock'], 10000)
    await sleep(20)
    await held.release()
    const released = performance.now()
    const lock = await waiting
    expect(performance.now() - released).toBeLessThan(1000)
    await lock.release()
  })

  test('a waiter does not write to the free node while redlock clients keep split votes', async () => {
    // redlock clients that lost a round keep their partial votes while they retry; an attempt
    // now could not win, and would hold the free node for a moment and split the next round.
    await clients[0].set('stock', 'f00dfeedf00dfeedf00dfeedf00dfeed', 'PX', 600)
    await clients[1].set('stock', 'feedf00dfeedf00dfeedf00dfeedf00d', 'PX', 600)
    const before = await Promise.all(clients.map((client) => client.info('commandstats')))
    const waiting = shim.acquire(['stock'], 10000)
    await sleep(400)
    const after = await Promise.all(clients.map((client) => client.info('commandstats')))
    const sets = (stats) => Number(/cmdstat_set:calls=(\d+)/.exec(stats)?.[1] ?? 0)
    // The first attempt, and the queue head's first turn (which looks again once subscribed),
    // write to the free node; the polls after them only read.
    const writes = after.map((stats, index) => sets(stats) - sets(before[index]))
    expect(writes[2]).toBeLessThanOrEqual(2)
    const lock = await waiting
    expect(await Promise.all(clients.map((client) => client.get('stock')))).toEqual([lock.value, lock.value, lock.value])
    await lock.release()
  })
})
