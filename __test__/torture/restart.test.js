'use strict'

// SIGKILL of the one Redis while many holders and waiters depend on it, then a restart on the
// same port with every key lost: every pending promise settles within the timeouts, the lockers
// work again, and each key's fences keep rising across the restart (a new fence is above every
// fence handed out before the kill).

const { startRedis, stopAll } = require('../helpers/redis-server')
const { size, now, sleep, within, abortTime, report, LOCK_ERROR_CODES, describeError, few, none } = require('./support/torture')
const { Locker, LockError, LockLostError } = require('../..')

const OPTIONS = { connectTimeout: 1000, commandTimeout: 1000 }
const KEYS = size(20, 100)
const WAITERS_PER_KEY = size(10, 30)
const USING_BODIES = size(5, 20)
const WAIT = 5000
const DOWN_MS = 300
const ROUNDS = size(2, 15)
// From the kill: a connection attempt, a command, the whole wait, and scheduling slack.
const SETTLE_BOUND_MS = OPTIONS.connectTimeout + OPTIONS.commandTimeout + WAIT + 2000

let server
const lockers = []

beforeAll(async () => {
  server = await startRedis()
})

afterAll(async () => {
  await Promise.all(lockers.map((locker) => locker.close()))
  await stopAll()
})

function settleInto(entry, promise) {
  entry.promise = promise.then(
    (value) => { entry.value = value },
    (error) => { entry.error = error },
  ).finally(() => { entry.settledAt = now() })
  return entry
}

const isLockError = (error) => error instanceof LockError && LOCK_ERROR_CODES.includes(error.code)

test('SIGKILL + empty restart under holders and waiters: all settle, lockers work, fences rise', async () => {
  const holders = new Locker(server.url, OPTIONS)
  const waiters = new Locker(server.url, OPTIONS)
  lockers.push(holders, waiters)
  const rounds = []

  for (let round = 0; round < ROUNDS; round++) {
    const keys = Array.from({ length: KEYS }, (_, i) => `restart:${round}:${i}`)
    const before = new Map()
    const note = (key, fence) => before.set(key, Math.max(before.get(key) ?? -Infinity, fence))

    // A few cycles per key first, so each has a fence history to stay above.
    for (const key of keys) for (let i = 0; i < 3; i++) { const lock = await holders.acquire(key); note(key, lock.fence); await lock.release() }
    const held = await Promise.all(keys.map((key) => holders.acquire(key, { ttl: 30000 })))
    for (const lock of held) note(lock.key, lock.fence)

    const bodies = Array.from({ length: USING_BODIES }, (_, i) => {
      const key = `restart:${round}:using:${i}`
      const entry = { key }
      return settleInto(entry, holders.using(key, { ttl: 2000 }, async (signal, lock) => {
        note(key, lock.fence)
        entry.abortedAt = await abortTime(signal, SETTLE_BOUND_MS)
        entry.reason = signal.reason
      }))
    })
    // Waiters in both lockers: the other locker's wait on the release channel, the holder's own
    // in its local queue. Each releases at once, so a queue moves as soon as Redis is back.
    const waiting = keys.flatMap((key) => Array.from({ length: WAITERS_PER_KEY }, (_, i) => {
      const entry = { key }
      const locker = i % 3 === 0 ? holders : waiters
      return settleInto(entry, locker.acquire(key, { ttl: 5000, wait: WAIT }).then(async (lock) => {
        entry.fence = lock.fence
        entry.acquiredAt = now()
        await lock.release().catch(() => {})
      }))
    }))
    await sleep(300)
    const settledEarly = waiting.filter((entry) => entry.settledAt !== undefined).length

    const killedAt = now()
    await server.kill('SIGKILL')
    await sleep(DOWN_MS)
    await server.restart()
    const restartedAt = now()
    const releases = held.map((lock) => settleInto({ key: lock.key }, lock.release()))

    const pending = [...waiting, ...bodies, ...releases]
    await within(Promise.all(pending.map((entry) => entry.promise)), SETTLE_BOUND_MS + 2000, 'the pending promises')

    // The lockers work again, and every key's next fence is above everything before the kill.
    const after = []
    for (const key of keys) {
      const lock = await within(holders.acquire(key, { wait: WAIT }), SETTLE_BOUND_MS, `acquire ${key} after the restart`)
      after.push({ key, fence: lock.fence })
      await lock.release()
    }
    const fresh = await within(waiters.acquire(`restart:${round}:fresh`), SETTLE_BOUND_MS, 'a fresh acquire')
    await fresh.release()

    const acquired = waiting.filter((entry) => entry.fence !== undefined)
    rounds.push({
      round,
      settledEarly,
      late: pending.filter((entry) => entry.settledAt - killedAt > SETTLE_BOUND_MS)
        .map((entry) => `${entry.key} after ${Math.round(entry.settledAt - killedAt)} ms`),
      unexpected: pending.filter((entry) => entry.error && !isLockError(entry.error))
        .map((entry) => `${entry.key}: ${describeError(entry.error)}`),
      waitersAcquired: acquired.length,
      waiterErrors: countCodes(waiting),
      slowestWaiterMs: Math.round(Math.max(...waiting.map((entry) => entry.settledAt - killedAt))),
      releasesOfWipedLocks: countOutcomes(releases),
      bodiesAbortedMsAfterRestart: bodies.map((entry) => (entry.abortedAt ? Math.round(entry.abortedAt - restartedAt) : null)),
      // A body is fine when its signal aborted with a LockLostError and using rejected with it.
      bodiesWrong: bodies.filter((entry) => !(entry.abortedAt && entry.reason instanceof LockLostError && entry.error === entry.reason))
        .map((entry) => `${entry.key}: reason ${entry.reason ? describeError(entry.reason) : 'none'}, using ${entry.error ? describeError(entry.error) : 'resolved'}`),
      fenceRegressions: few([
        ...acquired.filter((entry) => !(entry.fence > before.get(entry.key)))
          .map((entry) => `waiter ${entry.key}: ${entry.fence} <= ${before.get(entry.key)}`),
        ...after.filter((entry) => !(entry.fence > Math.max(before.get(entry.key), ...acquired.filter((w) => w.key === entry.key).map((w) => w.fence))))
          .map((entry) => `after ${entry.key}: ${entry.fence} <= ${before.get(entry.key)}`),
      ]),
      fenceExample: `${keys[0]}: before ≤ ${before.get(keys[0])}, after ${after[0].fence}`,
      restartMs: Math.round(restartedAt - killedAt),
    })
  }

  report('kill and empty restart', {
    keys: KEYS,
    waitersPerKey: WAITERS_PER_KEY,
    usingBodies: USING_BODIES,
    settleBoundMs: SETTLE_BOUND_MS,
    rounds: '\n    ' + rounds.map((round) => JSON.stringify(round)).join('\n    '),
  })

  for (const round of rounds) {
    // Nothing settled before the kill: the keys were held, so the waiting was real.
    expect(round.settledEarly).toBe(0)
    expect(round.late).toEqual([])
    expect(round.unexpected).toEqual([])
    // using bodies on wiped keys hear of it: signal aborted with LockLostError, using rejects so.
    expect(round.bodiesWrong).toEqual([])
    // The waiters' queues moved once Redis was back (the subscriber resubscribed and woke them).
    expect(round.waitersAcquired).toBeGreaterThan(0)
    expect(round.fenceRegressions).toEqual(none)
  }
}, ROUNDS * 30000 + 30000)

function countCodes(entries) {
  const counts = {}
  for (const { error } of entries) if (error) counts[error.code ?? error.name] = (counts[error.code ?? error.name] ?? 0) + 1
  return counts
}

function countOutcomes(entries) {
  const counts = {}
  for (const entry of entries) {
    const outcome = entry.error ? entry.error.code ?? entry.error.name : `released=${entry.value}`
    counts[outcome] = (counts[outcome] ?? 0) + 1
  }
  return counts
}
