'use strict'

// Redis behind Sentinel, end to end: locks on the master the sentinels name, on the wire (the
// fast path), from every target form; a master SIGKILLed while locks are held and waited on (the
// same locker goes on on the new master, the waiter resumes, no overlap, a lock that waited for a
// replica is still held after the promotion); and a master demoted while it still answers (a
// manual failover), which no call may go on writing to. The API's behaviour behind Sentinel is
// behaviour.test.js's; the target forms and their refusals are sentinel.test.js's.

const { once } = require('node:events')
const Redis = require('ioredis')
const { startSentinel } = require('../helpers/redis-sentinel')
const { stopAll } = require('../helpers/redis-server')
const { Locker } = require('../..')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
/** Enough for a call to ride out a failover (about two to three seconds with the harness's timers). */
const TIMEOUTS = { connectTimeout: 5000, commandTimeout: 5000 }
const WIRE_NAME = 'ironlock-wire'

afterAll(() => stopAll())

/** The wire connections `server` has now. */
async function wiresOn(sentinel, server) {
  const clients = await sentinel.admin(server).client('LIST')
  return clients.split('\n').filter((line) => line.includes(` name=${WIRE_NAME} `))
}

/** Locks and releases `key` until `locker`'s wire is connected to `server` (it opens lazily). */
async function untilWireOn(sentinel, server, locker, key) {
  for (const deadline = Date.now() + 10000; ;) {
    await (await locker.acquire(key, { ttl: 5000 })).release()
    if ((await wiresOn(sentinel, server)).length > 0) return
    if (Date.now() > deadline) throw new Error(`no wire on ${server.port}`)
    await sleep(20)
  }
}

/** Resolves once someone subscribed to the release channel of `key` on `server`. */
async function untilSubscribed(sentinel, server, key) {
  for (const deadline = Date.now() + 5000; ;) {
    const [, count] = await sentinel.admin(server).pubsub('NUMSUB', `{${key}}:released`)
    if (count > 0) return
    if (Date.now() > deadline) throw new Error(`nobody subscribed {${key}}:released`)
    await sleep(10)
  }
}

/**
 * Increments a counter in this process under the lock `key` from each of `lockers`, `rounds` times
 * each, and counts the times two were inside at once.
 */
function contend(lockers, key, rounds) {
  const state = { inside: 0, overlaps: 0, count: 0, errors: [] }
  const worker = async (locker) => {
    for (let round = 0; round < rounds; round++) {
      try {
        await locker.using(key, { ttl: 10000, wait: 20000 }, async () => {
          state.inside++
          if (state.inside > 1) state.overlaps++
          await sleep(5)
          state.count++
          state.inside--
        })
      } catch (error) {
        state.errors.push(error)
      }
    }
  }
  return { state, done: Promise.all(lockers.map(worker)) }
}

describe('one Sentinel setup', () => {
  let sentinel

  beforeAll(async () => {
    sentinel = await startSentinel({ replicas: 2 })
  })

  beforeEach(async () => {
    await sentinel.admin(await sentinel.master()).flushall()
  })

  const forms = [
    ['{ sentinels, name }', () => ({ sentinels: sentinel.sentinels, name: sentinel.name, ...TIMEOUTS })],
    ['a redis+sentinel:// URL', () => sentinel.url],
    ['an ioredis client with sentinels', () => new Redis({ sentinels: sentinel.sentinels, name: sentinel.name, lazyConnect: true })],
  ]

  test.each(forms)('%s locks on the master the sentinels name, on the wire', async (_, target) => {
    const locker = new Locker(target(), TIMEOUTS)
    const master = await sentinel.master()
    try {
      const lock = await locker.acquire('order:1')
      expect(await sentinel.admin(master).get('order:1')).toBe(lock.token)
      expect(await locker.tryAcquire('order:1')).toBeNull()
      expect(await lock.release()).toBe(true)
      await untilWireOn(sentinel, master, locker, 'order:2')
    } finally {
      await locker.close()
    }
  })
})

test('the master SIGKILLed while locks are held and waited on: the same lockers go on on the new master, the waiter resumes, no overlap, a lock a replica acknowledged is still held', async () => {
  const sentinel = await startSentinel({ replicas: 2 })
  const holder = new Locker({ sentinels: sentinel.sentinels, name: sentinel.name }, TIMEOUTS)
  const waiter = new Locker(sentinel.url, TIMEOUTS)
  try {
    const old = await sentinel.master()
    await untilWireOn(sentinel, old, holder, 'warm-up')
    let signal
    let finish
    const held = new Promise((resolve) => {
      holder.using('job', { ttl: 15000, replicas: 1 }, (given, lock) => {
        signal = given
        resolve(lock)
        return new Promise((done) => { finish = done })
      }).catch(() => {})
    })
    const lock = await held
    const waited = waiter.acquire('job', { wait: 30000 })
    await untilSubscribed(sentinel, old, 'job')
    const contention = contend([holder, waiter], 'counter', 15)

    const promoted = await sentinel.failOver()
    expect(promoted.port).not.toBe(old.port)
    // Acknowledged by a replica before the grant: the promoted one has it.
    expect(await sentinel.admin(promoted).get('job')).toBe(lock.token)
    expect(signal.aborted).toBe(false)
    expect((await lock.extend(15000)).token).toBe(lock.token)

    const releasedAt = Date.now()
    finish()
    const next = await waited
    expect(Date.now() - releasedAt).toBeLessThan(3000)
    expect(await sentinel.admin(promoted).get('job')).toBe(next.token)
    expect(next.fence).toBeGreaterThan(lock.fence)
    expect(await next.release()).toBe(true)

    await contention.done
    expect(contention.state.errors).toEqual([])
    expect(contention.state.overlaps).toBe(0)
    expect(contention.state.count).toBe(30)
    // The wire follows: it dials the new master once the native side found it.
    await untilWireOn(sentinel, promoted, holder, 'after')
  } finally {
    await Promise.all([holder.close(), waiter.close()])
    await sentinel.stop()
  }
}, 90000)

test('a master demoted while it still answers (a manual failover): every call goes on, on the new master, and the wire leaves the old one', async () => {
  const sentinel = await startSentinel({ replicas: 1 })
  const locker = new Locker(sentinel.url, TIMEOUTS)
  const announcements = new Redis(sentinel.sentinels[0])
  try {
    const old = await sentinel.master()
    await untilWireOn(sentinel, old, locker, 'warm-up')
    await announcements.subscribe('+switch-master')
    const switched = once(announcements, 'message')
    const contention = contend([locker, locker, locker], 'counter', 40)
    await sentinel.admin(sentinel.sentinelServers[0]).call('SENTINEL', 'FAILOVER', sentinel.name)
    await switched
    await contention.done
    expect(contention.state.errors).toEqual([])
    expect(contention.state.overlaps).toBe(0)
    const promoted = await sentinel.master()
    expect(promoted.port).not.toBe(old.port)
    await untilWireOn(sentinel, promoted, locker, 'after')
    for (const deadline = Date.now() + 10000; (await wiresOn(sentinel, old)).length > 0;) {
      if (Date.now() > deadline) throw new Error('the wire stayed on the demoted master')
      await (await locker.acquire('after', { ttl: 5000 })).release()
      await sleep(50)
    }
  } finally {
    announcements.disconnect()
    await locker.close()
    await sentinel.stop()
  }
}, 90000)
