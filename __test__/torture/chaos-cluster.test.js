'use strict'

// Multi-process exclusion on a Redis Cluster while its masters fail over: 6 processes hammer a key
// on each of the 3 masters, and hold another key on each past the TTL, while the test kills a
// master (SIGKILL: its replica takes over, and may have missed the last writes) and restarts it
// (it rejoins as a replica of the master that took its place), master after master. A separate
// observer Redis, never faulted, judges: who is inside each critical section, and a fenced resource.

const { startCluster } = require('../helpers/redis-cluster')
const { startRedis, stopAll } = require('../helpers/redis-server')
const { FencedResource } = require('./support/fenced-resource')
const { TTL, BOUNDS, startChaosPool, judge, judgeAborts } = require('./support/chaos')
const { SEED, size, random, now, sleep, report, few, none } = require('./support/torture')

const CHAOS_MS = size(15000, 600000)
const RECOVERY_MS = size(3000, 10000)
// How long a killed master stays down once its replica took over, and the calm after it rejoined.
const DOWN_MS = [200, 1000]
const CALM_MS = [300, 1500]
const FENCE_KEY = /^ironlock:fence:/

let pool
let resource
let cluster

afterAll(async () => {
  await pool?.kill()
  resource?.close()
  await cluster?.stop()
  await stopAll()
})

test('6 processes on a 3+3 Cluster whose masters fail over and rejoin: no overlap, signals abort in time, every call settles, no key left', async () => {
  const rng = random(SEED)
  cluster = await startCluster()
  const observer = await startRedis()
  resource = new FencedResource(observer.url)
  const keys = await cluster.keyOnEachMaster('chaos')
  const longKeys = await cluster.keyOnEachMaster('chaos:long')
  const allKeys = [...keys, ...longKeys]
  pool = await startChaosPool({ target: cluster.url, observer: observer.url, keys, longKeys, seed: SEED * 41 })

  // Each kill is a data-loss window for the keys of the killed master, until its replica serves.
  const kills = []
  const startedAt = now()
  // Long holds under way before the first kill.
  await sleep(rng.int(...CALM_MS))
  while (now() - startedAt < CHAOS_MS) {
    for (const victim of rng.shuffle(keys)) {
      if (now() - startedAt >= CHAOS_MS) break
      const master = await cluster.masterOf(victim)
      const onMaster = []
      for (const key of allKeys) if (await cluster.masterOf(key) === master) onMaster.push(key)
      const killedAt = now()
      const killed = await cluster.failOver(victim)
      const restartedAt = now()
      await sleep(rng.int(...DOWN_MS))
      await cluster.rejoin(killed)
      kills.push({ port: killed.port, keys: onMaster, killedAt, restartedAt, rejoinedAt: now() })
      await sleep(rng.int(...CALM_MS))
    }
  }
  // After the chaos the locks must simply work again.
  const acceptedAtCalm = await acceptedCount(resource, allKeys)
  await sleep(RECOVERY_MS)
  const acceptedInRecovery = (await acceptedCount(resource, allKeys)) - acceptedAtCalm

  const results = await pool.stop(BOUNDS.acquire + BOUNDS.release + 5000)
  // Every locker has closed: what is left on the masters is fencing counters, and locks whose
  // release failed mid-failover, which expire with their TTL.
  const leftAtClose = await lockKeysLeft(cluster)
  await sleep(TTL + 500)
  const leftAfterTtl = await lockKeysLeft(cluster)

  const verdict = await judge({ results, resource, keys: allKeys, kills })
  const lateAborts = await judgeAborts({ aborted: verdict.stats.aborted, resource, keys: allKeys, kills })
  const at = (time) => Math.round(time - startedAt)
  report('chaos on a Redis Cluster', {
    seconds: Math.round((now() - startedAt) / 1000),
    failovers: kills.map((kill) => `:${kill.port} ${kill.keys.join('+')} killed@${at(kill.killedAt)}ms replaced@${at(kill.restartedAt)}ms rejoined@${at(kill.rejoinedAt)}ms`).join(', '),
    ...verdict.stats.total,
    acceptedInRecovery,
    abortedHolds: verdict.stats.aborted.length,
    lateAborts: `${lateAborts.length} ${JSON.stringify(lateAborts.slice(0, 10))}`,
    overlapsSeen: verdict.stats.overlaps.length,
    overlapsExcused: `${verdict.excusedOverlaps} (${verdict.excusedByAbort} inside a holder whose signal had aborted)`,
    overlapsUnexcused: `${verdict.overlaps.length} ${JSON.stringify(verdict.overlaps.slice(0, 10))}`,
    refusedUnexcused: `${verdict.refused.length} ${JSON.stringify(verdict.refused.slice(0, 10))}`,
    fencesPerKey: Object.fromEntries(allKeys.map((key) => [key, `${verdict.history[key].length} accepted, ${verdict.history[key][0]?.fence} .. ${verdict.history[key].at(-1)?.fence}`])),
    leftAtClose,
    leftAfterTtl,
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
  // Never two holders inside one key at once whose signals had not aborted, except where a
  // failover lost the first one's lock with the writes its replica missed.
  expect(few(verdict.overlaps)).toEqual(none)
  // Every signal that aborted did so for a lost lock (ELOCKLOST), before the key's next holder
  // had it: before the lease could end.
  expect(few(lateAborts)).toEqual(none)
  // Fences rise across failovers: a write is refused only where its lock went with lost writes.
  expect(few(verdict.refused)).toEqual(none)
  // Lock keys expire: none is left once the TTL has passed after close.
  expect(leftAtClose.filter(({ pttl }) => pttl <= 0 || pttl > TTL)).toEqual([])
  expect(leftAfterTtl).toEqual([])
  // The run did real work, failed masters over, and works after it.
  expect(kills.length).toBeGreaterThan(0)
  expect(verdict.stats.total.acquired).toBeGreaterThan(100)
  expect(acceptedInRecovery).toBeGreaterThan(0)
}, CHAOS_MS + RECOVERY_MS + 120000)

async function acceptedCount(resource, keys) {
  const lengths = await Promise.all(keys.map((key) => resource.redis.llen(`fence:accepted:${key}`)))
  return lengths.reduce((sum, length) => sum + length, 0)
}

/** Every key on the masters but the fencing counters, with its PTTL (-1: none). */
async function lockKeysLeft(cluster) {
  const left = []
  for (const master of await cluster.masters()) {
    const admin = cluster.admin(master)
    for (const key of await admin.keys('*')) {
      if (!FENCE_KEY.test(key)) left.push({ key, pttl: await admin.pttl(key) })
    }
  }
  return left
}
