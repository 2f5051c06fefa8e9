'use strict'

// The records between lib/dispatch.js and the binding are declared once, in
// src/binding/layout.rs (RequestField, CompletionField: field name → position), and both sides
// read and write them by those names. The walk below follows every field by name from the public
// API through the native side to Redis and back, so a field that moves on one side only (or is
// read from another field's place) fails it.

const { setTimeout: sleep } = require('node:timers/promises')
const { binding } = require('../../lib/native')
const { Dispatcher, Status, Kind, Flags, RequestAt, CompletionAt } = require('../../lib/dispatch')
const { fromNative, LockBusyError, LockLostError, ReplicationError } = require('../../lib/errors')
const { startRedis, stopAll } = require('../helpers/redis-server')
const { Locker } = require('../..')

afterAll(() => stopAll())

test('the dispatcher uses the declarations the binding exports', () => {
  expect(RequestAt).toBe(binding.RequestField)
  expect(CompletionAt).toBe(binding.CompletionField)
  expect(Status).toBe(binding.CompletionStatus)
  expect(Kind).toBe(binding.RequestKind)
  expect(Flags).toBe(binding.AcquireFlag)
})

test('each record has one field per position, and its size counts them', () => {
  const positions = (fields) => Object.values(fields).sort((a, b) => a - b)
  const upTo = (count) => Array.from({ length: count }, (_, position) => position)
  expect(positions(binding.RequestField)).toEqual(upTo(binding.REQUEST_FIELDS))
  expect(positions(binding.CompletionField)).toEqual(upTo(binding.COMPLETION_FIELDS))
})

test('a completion view names every field a status sets, as the binding declares it', () => {
  const { completion } = new Dispatcher()
  for (const field of Object.keys(binding.CompletionField)) {
    const name = field[0].toLowerCase() + field.slice(1)
    if (name === 'op') continue
    expect(name in completion).toBe(true)
  }
})

test('failures arrive as structured values, beside the tokens of acquired locks, in completion order', () => {
  const dispatch = new Dispatcher()
  const settled = []
  const record = (name) => ({
    resolve: (completion) => settled.push([name, completion.token]),
    reject: (failure) => settled.push([name, fromNative(failure)]),
  })
  const acquired = dispatch.start(record('acquired'))
  const busy = dispatch.start(record('busy'))
  const lost = []
  dispatch.watch(7, (error) => lost.push(error))
  const F = binding.COMPLETION_FIELDS
  const numbers = new Float64Array(3 * F)
  const put = (index, fields) => {
    for (const [name, value] of Object.entries(fields)) numbers[index * F + CompletionAt[name]] = value
  }
  put(0, { Op: 0, Status: Status.Lost, Lock: 7 })
  put(1, { Op: busy, Status: Status.Failed })
  put(2, { Op: acquired, Status: Status.Acquired, Lock: 1, Fence: 2, ExpiresAt: 3 })
  dispatch.onComplete(numbers, ['token'], [
    { code: 'ELOCKLOST', key: 'k', message: 'lost' },
    { code: 'ELOCKBUSY', key: 'b', message: 'busy', retryAfter: 5 },
  ])
  expect(lost).toHaveLength(1)
  expect(lost[0]).toBeInstanceOf(LockLostError)
  expect(settled[0][0]).toBe('busy')
  expect(settled[0][1]).toBeInstanceOf(LockBusyError)
  expect(settled[0][1].retryAfter).toBe(5)
  expect(settled[1]).toEqual(['acquired', 'token'])
  dispatch.close({ code: 'ECONNECTION' })
})

describe('every field keeps its name from the API to Redis and back', () => {
  let server
  let redis
  let locker

  beforeAll(async () => {
    server = await startRedis()
    redis = server.client()
  })

  afterEach(() => locker?.close())

  /** The server's clock in µs, which fences are never below. */
  async function serverMicros() {
    const [seconds, micros] = await redis.time()
    return Number(seconds) * 1e6 + Number(micros)
  }

  // Twice on one locker: its first requests go on the runtime's connection, later ones on the wire.
  test('acquire, busy, extend and release', async () => {
    locker = new Locker(server.url)
    await walk(1)
    await walk(2)
  })

  async function walk(round) {
    const [a, b, c] = ['a', 'b', 'c'].map((name) => `layout:${round}:${name}`)
    const since = await serverMicros()
    const before = Date.now()
    // Ttl, KeyCount and the keys, in one batch: a lock of two keys, and one of a third.
    const [pair, single] = await Promise.all([
      locker.acquire([a, b], { ttl: 45_678, wait: 0 }),
      locker.acquire(c, { ttl: 23_456, wait: 0 }),
    ])
    const after = Date.now()
    // The token (text), Lock, Fence and ExpiresAt of each.
    expect(pair.keys).toEqual([a, b])
    expect(await redis.mget(a, b, c)).toEqual([pair.token, pair.token, single.token])
    expect(pair.token).not.toBe(single.token)
    expect(await redis.pttl(a)).toBeGreaterThan(40_000)
    expect(await redis.pttl(a)).toBeLessThanOrEqual(45_678)
    expect(await redis.pttl(c)).toBeGreaterThan(20_000)
    expect(await redis.pttl(c)).toBeLessThanOrEqual(23_456)
    for (const [lock, ttl] of [[pair, 45_678], [single, 23_456]]) {
      expect(lock.fence).toBeGreaterThanOrEqual(since)
      expect(lock.expiresAt).toBeGreaterThan(before + ttl * 0.9)
      expect(lock.expiresAt).toBeLessThanOrEqual(after + ttl)
    }
    // Wait and RetryAfter: a second acquire of `c` waits, then is told the holder's TTL left,
    // in whole ms, and its message says the same number.
    const started = Date.now()
    const busy = await locker.acquire(c, { ttl: 1000, wait: 300 }).catch((error) => error)
    expect(busy).toBeInstanceOf(LockBusyError)
    expect(Date.now() - started).toBeGreaterThanOrEqual(250)
    expect(Number.isInteger(busy.retryAfter)).toBe(true)
    expect(busy.retryAfter).toBeGreaterThan(15_000)
    expect(busy.retryAfter).toBeLessThanOrEqual(23_456)
    expect(busy.message).toContain(`${busy.retryAfter} ms`)
    // Lock and Ttl of an extend: the one-key lock, not the other, lives 98_765 ms from now.
    const extendedFrom = Date.now()
    expect(await locker.extend(single, 98_765)).toBe(single)
    expect(await redis.pttl(c)).toBeGreaterThan(90_000)
    expect(await redis.pttl(a)).toBeLessThanOrEqual(45_678)
    expect(single.expiresAt).toBeGreaterThan(extendedFrom + 90_000)
    // Lock of a release, and Released.
    expect(await single.release()).toBe(true)
    expect(await redis.exists(c)).toBe(0)
    expect(await redis.exists(a, b)).toBe(2)
    expect(await single.release()).toBe(false)
    // KeyCount and the key of an extend: the native side, which no longer knows a released
    // lock, words the error from the key the extend carried.
    const released = await locker.extend(single).catch((error) => error)
    expect(released).toBeInstanceOf(LockLostError)
    expect(released.key).toBe(c)
    expect(released.message).toBe(`lock "${c}" is no longer ours: it was released already`)
    expect(await pair.release()).toBe(true)
    expect(await redis.exists(a, b)).toBe(0)
  }

  test('Replicas and ReplicasTimeout become WAIT\'s arguments; a shortfall comes back with acknowledged and wanted', async () => {
    locker = new Locker(server.url)
    const monitor = await server.client().monitor()
    const waits = []
    monitor.on('monitor', (time, args) => {
      if (args[0].toLowerCase() === 'wait') waits.push(args.slice(1))
    })
    const error = await locker.acquire('layout:replicated', { replicas: 3, replicasTimeout: 222 }).catch((e) => e)
    await sleep(50)
    monitor.disconnect()
    expect(waits).toEqual([['3', '222']])
    expect(error).toBeInstanceOf(ReplicationError)
    expect(error).toMatchObject({ code: 'EREPLICAS', key: 'layout:replicated', acknowledged: 0, wanted: 3 })
    expect(error.message).toContain('0 of the 3 replicas')
    expect(await redis.exists('layout:replicated')).toBe(0)
  })

  test('Flags ask for the watchdog, and a loss names the lock it is about', async () => {
    locker = new Locker(server.url)
    const ttl = 600
    const kept = locker.using('layout:kept', { ttl }, async (signal) => {
      await sleep(3 * ttl)
      expect(signal.aborted).toBe(false)
      return redis.exists('layout:kept')
    })
    const taken = locker.using('layout:taken', { ttl }, async (signal) => {
      await redis.set('layout:taken', 'someone else')
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
    })
    await expect(taken).rejects.toBeInstanceOf(LockLostError)
    await expect(kept).resolves.toBe(1)
  })
})
