'use strict'

// A network partition between a holder and its Redis, mid-hold: the holder's `signal` must abort
// with LockLostError no later than the moment another client (connected directly) gets the lock,
// and `using` must reject with that error, not with a connection error. Both moments are taken
// in this process with one clock. The holder keeps the default commandTimeout (5000 ms), far
// longer than the TTL, so only a watchdog that watches the lease itself passes.

const { startRedis, startRedisSet, stopAll } = require('../helpers/redis-server')
const { PartitionProxy } = require('./support/proxy')
const { now, sleep, within, abortTime, report } = require('./support/torture')
const { Locker, LockLostError } = require('../..')

const TTL = 1000
const DEFAULT_COMMAND_TIMEOUT = 5000
// Long enough for at least one extension (every TTL/3) to go through the proxy first.
const HOLD_BEFORE_PARTITION_MS = 500
const ABORT_WITHIN_MS = DEFAULT_COMMAND_TIMEOUT + 3000
// A timer fires a little late; expiresAt already leaves TTL × 1% + 2 ms before Redis expires it.
const TIMER_SLACK_MS = 10

const proxies = []
const lockers = []

afterAll(async () => {
  for (const proxy of proxies) proxy.heal()
  await Promise.all(lockers.map((locker) => locker.close()))
  await Promise.all(proxies.map((proxy) => proxy.close()))
  await stopAll()
})

function track(locker) {
  lockers.push(locker)
  return locker
}

async function proxyTo(server) {
  const proxy = await PartitionProxy.start(server)
  proxies.push(proxy)
  return proxy
}

/**
 * `holder` takes `key` with `using`, the test partitions it mid-hold, `other` waits for the key.
 * Resolves the moments and outcomes, all from this process's clock.
 */
async function partitionMidHold({ holder, other, partition, key, autoExtend = true }) {
  const seen = { otherError: null, usingError: null }
  let otherAcquire = Promise.resolve()
  const holding = holder.using(key, { ttl: TTL, autoExtend }, async (signal, lock) => {
    seen.acquiredAt = now()
    seen.fence = lock.fence
    seen.expiresAt = lock.expiresAt
    await sleep(HOLD_BEFORE_PARTITION_MS)
    partition()
    seen.partitionedAt = now()
    otherAcquire = other.acquire(key, { ttl: 5000, wait: 15000 }).then(
      (lock) => { seen.otherAt = now(); seen.otherLock = lock },
      (error) => { seen.otherError = error })
    seen.abortedAt = await abortTime(signal, ABORT_WITHIN_MS)
    seen.reason = signal.reason
  })
  await within(holding.catch((error) => { seen.usingError = error }), ABORT_WITHIN_MS + DEFAULT_COMMAND_TIMEOUT + 5000, 'the holder\'s using')
  seen.usingSettledAt = now()
  await within(otherAcquire, 20000, 'the other client\'s acquire')
  return seen
}

function figures(seen, extra = {}) {
  const at = (time) => (time === undefined || time === null ? null : Math.round(time - seen.partitionedAt))
  return {
    fence: seen.fence,
    'first expiresAt (ms after the partition)': at(seen.expiresAt),
    'signal aborted (ms after the partition)': at(seen.abortedAt),
    'other client acquired (ms after the partition)': at(seen.otherAt),
    'gap: other acquired − signal aborted (ms)': seen.abortedAt && seen.otherAt ? Math.round(seen.otherAt - seen.abortedAt) : null,
    'using settled (ms after the partition)': at(seen.usingSettledAt),
    reason: seen.reason ? `${seen.reason.name} ${seen.reason.code}` : null,
    usingRejectedWith: seen.usingError ? `${seen.usingError.name} ${seen.usingError.code}: ${seen.usingError.message}` : 'resolved',
    otherError: seen.otherError ? `${seen.otherError.code}: ${seen.otherError.message}` : null,
    ...extra,
  }
}

function expectLostBeforeTaken(seen) {
  expect(seen.otherError).toBeNull()
  expect(seen.otherAt).toBeDefined()
  expect(seen.abortedAt).not.toBeNull()
  expect(seen.reason).toBeInstanceOf(LockLostError)
  expect(seen.reason.code).toBe('ELOCKLOST')
  // The holder hears of the loss no later than anyone else can have the lock.
  expect(seen.abortedAt).toBeLessThanOrEqual(seen.otherAt)
  // using rejects with that LockLostError, not with the release's connection error...
  expect(seen.usingError).toBe(seen.reason)
  // ...and without hanging on the partitioned connection for more than one command timeout.
  expect(seen.usingSettledAt - seen.abortedAt).toBeLessThanOrEqual(DEFAULT_COMMAND_TIMEOUT + 1000)
}

test('one Redis: a holder partitioned mid-hold loses the lock before another client takes it', async () => {
  const server = await startRedis()
  const proxy = await proxyTo(server)
  const holder = track(new Locker(proxy.url()))
  const other = track(new Locker(server.url))
  const seen = await partitionMidHold({ holder, other, partition: () => proxy.partition(), key: 'partition:one' })
  proxy.heal()
  report('partition, one Redis', figures(seen, { droppedBytes: proxy.dropped }))
  expectLostBeforeTaken(seen)
  await seen.otherLock.release()
}, 60000)

test('Redlock: a holder cut off from 2 of 3 nodes loses the lock before another client takes it', async () => {
  const nodes = await startRedisSet(3)
  const nodeProxies = await Promise.all(nodes.map(proxyTo))
  const holder = track(new Locker(nodeProxies.map((proxy) => proxy.url())))
  const other = track(new Locker(nodes.map((node) => node.url)))
  const seen = await partitionMidHold({
    holder,
    other,
    partition: () => nodeProxies.slice(0, 2).forEach((proxy) => proxy.partition()),
    key: 'partition:redlock',
  })
  for (const proxy of nodeProxies) proxy.heal()
  report('partition, Redlock 2 of 3 nodes cut off', figures(seen, { droppedBytes: nodeProxies.map((proxy) => proxy.dropped) }))
  expectLostBeforeTaken(seen)
  await seen.otherLock.release()
}, 60000)

test('autoExtend: false: the signal aborts by the lock\'s expiresAt, partition or not', async () => {
  const server = await startRedis()
  const proxy = await proxyTo(server)
  const holder = track(new Locker(proxy.url()))
  const other = track(new Locker(server.url))
  const seen = await partitionMidHold({ holder, other, partition: () => proxy.partition(), key: 'partition:no-extend', autoExtend: false })
  proxy.heal()
  report('partition, autoExtend: false', figures(seen, {
    'signal aborted − expiresAt (ms)': seen.abortedAt ? Math.round(seen.abortedAt - seen.expiresAt) : null,
  }))
  expect(seen.abortedAt).not.toBeNull()
  expect(seen.abortedAt).toBeLessThanOrEqual(seen.expiresAt + TIMER_SLACK_MS)
  expectLostBeforeTaken(seen)
  await seen.otherLock.release()
}, 60000)
