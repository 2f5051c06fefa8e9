'use strict'

// Multi-process exclusion under chaos on one Redis: 6 processes hammer 3 keys with `using` and
// `acquire` while the test pauses, kills (data lost) and restarts the Redis, kills its clients,
// flushes its scripts, and pauses a holder process past its TTL. A separate observer Redis,
// never faulted, judges: who is inside each critical section, and a fenced resource.

const { startRedis, stopAll } = require('../helpers/redis-server')
const { FencedResource } = require('./support/fenced-resource')
const {
  BOUNDS, ABORT_AFTER_RESUME_MS, startChaosPool, pauseRandomHolder, faultServer, judge, judgeHold, describeTimeline,
} = require('./support/chaos')
const { SEED, size, random, now, sleep, report, few, none } = require('./support/torture')

const KEYS = ['chaos:a', 'chaos:b', 'chaos:c']
const CHAOS_MS = size(25000, 600000)
const RECOVERY_MS = size(3000, 10000)
const FAULTS = ['pause-redis', 'kill-restart', 'client-kill-normal', 'client-kill-pubsub', 'script-flush', 'pause-holder']

let pool
let resource

afterAll(async () => {
  await pool?.kill()
  resource?.close()
  await stopAll()
})

test('6 processes, 3 keys, one faulted Redis: no overlap, fences rise across restarts, a paused holder is fenced off', async () => {
  const rng = random(SEED)
  const lockServer = await startRedis()
  const observer = await startRedis()
  resource = new FencedResource(observer.url)
  pool = await startChaosPool({ target: lockServer.url, observer: observer.url, keys: KEYS, seed: SEED * 31 })

  const timeline = []
  const startedAt = now()
  let holdId = 0
  while (now() - startedAt < CHAOS_MS) {
    // Every fault once per round, in a random order, so that even a short run sees each one.
    for (const fault of rng.shuffle(FAULTS)) {
      if (now() - startedAt >= CHAOS_MS) break
      if (fault === 'pause-holder') {
        timeline.push(await pauseRandomHolder(pool, rng, { keys: KEYS, holdId: ++holdId }))
      } else {
        timeline.push(await faultServer(fault, lockServer, { rng }))
      }
      await sleep(rng.int(200, 800))
    }
  }
  // After the chaos the locks must simply work again.
  const acceptedAtCalm = await acceptedCount(resource, KEYS)
  await sleep(RECOVERY_MS)
  const acceptedInRecovery = (await acceptedCount(resource, KEYS)) - acceptedAtCalm

  const results = await pool.stop(BOUNDS.acquire + BOUNDS.release + 5000)
  const kills = timeline.filter((entry) => entry.fault === 'kill-restart')
  const verdict = await judge({ results, resource, keys: KEYS, kills })
  const holds = timeline.filter((entry) => entry.fault === 'pause-holder' && !entry.skipped)
    .map((entry) => judgeHold(entry, { abortWithinMs: ABORT_AFTER_RESUME_MS, expectRefused: true }))

  report('chaos on one Redis', {
    seconds: Math.round((now() - startedAt) / 1000),
    faults: describeTimeline(timeline, startedAt),
    ...verdict.stats.total,
    acceptedInRecovery,
    overlapsSeen: verdict.stats.overlaps.length,
    overlapsExcused: verdict.excusedOverlaps,
    overlapsUnexcused: `${verdict.overlaps.length} ${JSON.stringify(verdict.overlaps.slice(0, 10))}`,
    refusedUnexcused: `${verdict.refused.length} ${JSON.stringify(verdict.refused.slice(0, 10))}`,
    fencesAcrossRestarts: verdict.acrossKills.map(({ key, killedAt, lastBefore, firstAfter }) =>
      `${key} kill@${Math.round(killedAt - startedAt)}ms: ${lastBefore} -> ${firstAfter}`).join(', '),
    fencesPerKey: Object.fromEntries(KEYS.map((key) => [key, `${verdict.history[key].length} accepted, ${verdict.history[key][0]?.fence} .. ${verdict.history[key].at(-1)?.fence}`])),
    holds,
    unexpectedErrors: verdict.stats.unexpected,
    lateSettles: verdict.stats.late,
    exits: verdict.exits.map(({ index, exitedBy, exit, problem }) => `w${index}: ${exitedBy} ${exit?.code ?? exit?.signal}${problem ? ' ' + problem : ''}`).join('; '),
  })

  // Workers finished every operation, closed, and exited by themselves.
  expect(verdict.badExits).toEqual([])
  // Every rejection was a LockError with one of the four codes.
  expect(few(verdict.stats.unexpected)).toEqual(none)
  // Every operation settled within connectTimeout + commandTimeout + wait (+ margin).
  expect(few(verdict.stats.late)).toEqual(none)
  // Never two holders inside one key at once, except where Redis lost the first one's lock.
  expect(few(verdict.overlaps)).toEqual(none)
  // Every write of a holder whose lock was not lost with Redis's data was accepted: fences of
  // one Redis rise strictly, across kills and restarts too (a fence that fell back after a
  // restart is refused, and its holder took the lock after the restart: not excused).
  expect(few(verdict.refused)).toEqual(none)
  // A paused holder's late write was refused, its signal aborted on resume, using rejected ELOCKLOST.
  expect(holds.length).toBeGreaterThan(0)
  expect(holds.filter((hold) => hold.wrong.length > 0)).toEqual([])
  // The run did real work, met every fault, and works after it.
  expect(kills.length).toBeGreaterThan(0)
  expect(verdict.stats.total.acquired).toBeGreaterThan(200)
  expect(acceptedInRecovery).toBeGreaterThan(0)
}, CHAOS_MS + RECOVERY_MS + 120000)

async function acceptedCount(resource, keys) {
  const lengths = await Promise.all(keys.map((key) => resource.redis.llen(`fence:accepted:${key}`)))
  return lengths.reduce((sum, length) => sum + length, 0)
}
