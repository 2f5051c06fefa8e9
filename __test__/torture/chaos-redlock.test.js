'use strict'

// Multi-process exclusion under chaos on 5 Redlock nodes, at most 2 of them faulted at any time.
// Phase 1 loses no data (pauses, CLIENT KILL, SCRIPT FLUSH, a paused holder process): exclusion
// holds and fences rise strictly per key. Phase 2 also kills nodes and restarts them empty,
// after staying down longer than the TTL (Redlock's "delayed restart", without which no Redlock
// can keep exclusion): exclusion still holds; fences are best effort there (README), so only
// reported.

const { startRedisSet, startRedis, stopAll } = require('../helpers/redis-server')
const { FencedResource } = require('./support/fenced-resource')
const {
  TTL, BOUNDS, ABORT_AFTER_RESUME_MS, startChaosPool, pauseRandomHolder, faultServer, judge, judgeHold, describeTimeline,
} = require('./support/chaos')
const { SEED, size, random, now, sleep, report, few, none } = require('./support/torture')

const NODES = 5
const MAX_FAULTED = 2
const KEYS = ['redlock:a', 'redlock:b', 'redlock:c']
const PHASE_MS = { clean: size(14000, 300000), lossy: size(12000, 300000) }
const RECOVERY_MS = size(2000, 10000)
const NODE_FAULTS = {
  clean: ['pause-redis', 'client-kill-normal', 'client-kill-pubsub', 'script-flush'],
  lossy: ['pause-redis', 'kill-restart', 'client-kill-normal', 'script-flush'],
}
// Delayed restart: a node that lost its data stays away longer than any lock it held can live.
const DOWN_MS = [TTL + 300, TTL + 700]

let pool
let resource

afterAll(async () => {
  await pool?.kill()
  resource?.close()
  await stopAll()
})

test('6 processes on 5 Redlock nodes, ≤ 2 faulted: no overlap; strictly rising fences while no node loses data', async () => {
  const rng = random(SEED)
  const nodes = await startRedisSet(NODES)
  const observer = await startRedis()
  resource = new FencedResource(observer.url)
  pool = await startChaosPool({ target: nodes.map((node) => node.url), observer: observer.url, keys: KEYS, seed: SEED * 37 })

  const timeline = []
  const t0 = now()
  let lossyFrom = null
  let holdId = 0
  for (const phase of ['clean', 'lossy']) {
    const phaseStart = now()
    if (phase === 'lossy') lossyFrom = phaseStart
    // Each phase opens with the fault it exists to show (a paused holder while no data is lost, a
    // node killed and restarted empty after that), so no seed leaves it out; the rest is random.
    let opening = true
    while (now() - phaseStart < PHASE_MS[phase]) {
      if (opening ? phase === 'clean' : rng() < 0.2) {
        timeline.push({
          phase,
          ...await pauseRandomHolder(pool, rng, { keys: KEYS, holdId: ++holdId }),
        })
      } else {
        // One or two distinct nodes, each with its own fault, at the same time.
        const victims = rng.shuffle(nodes).slice(0, rng.int(1, MAX_FAULTED))
        const faults = await Promise.all(victims.map((node, index) =>
          faultServer(opening && index === 0 ? 'kill-restart' : rng.pick(NODE_FAULTS[phase]), node, { rng, downMs: DOWN_MS })))
        timeline.push({ phase, fault: 'nodes', startedAt: Math.min(...faults.map((f) => f.startedAt)), faults })
      }
      opening = false
      await sleep(rng.int(200, 600))
    }
  }
  const acceptedAtCalm = await acceptedCount(resource, KEYS)
  await sleep(RECOVERY_MS)
  const acceptedInRecovery = (await acceptedCount(resource, KEYS)) - acceptedAtCalm

  const results = await pool.stop(BOUNDS.acquire + BOUNDS.release + 5000)
  // No kill excuses anything here: delayed restarts keep Redlock exclusive.
  const verdict = await judge({ results, resource, keys: KEYS, kills: [] })
  const refusedClean = verdict.refused.filter((write) => write.acquiredAt < lossyFrom)
  const refusedLossy = verdict.refused.filter((write) => write.acquiredAt >= lossyFrom)
  const holds = timeline.filter((entry) => entry.fault === 'pause-holder' && !entry.skipped)
    .map((entry) => ({ phase: entry.phase, ...judgeHold(entry, { abortWithinMs: ABORT_AFTER_RESUME_MS, expectRefused: entry.phase === 'clean' }) }))
  const acceptedPerPhase = acceptedByPhase(verdict.history, KEYS, lossyFrom)

  report('chaos on 5 Redlock nodes', {
    seconds: Math.round((now() - t0) / 1000),
    faults: describeTimeline(timeline, t0),
    lossyPhaseFromMs: Math.round(lossyFrom - t0),
    ...verdict.stats.total,
    acceptedInRecovery,
    overlaps: `${verdict.overlaps.length} ${JSON.stringify(verdict.overlaps.slice(0, 10))}`,
    refusedWhileNoDataLost: `${refusedClean.length} ${JSON.stringify(refusedClean.slice(0, 10))}`,
    refusedAfterKills: `${refusedLossy.length} (best effort under Redlock) ${JSON.stringify(refusedLossy.slice(0, 5))}`,
    fencesPerKey: Object.fromEntries(KEYS.map((key) => [key, `${verdict.history[key][0]?.fence} .. ${verdict.history[key].at(-1)?.fence}`])),
    acceptedPerPhase,
    holds,
    unexpectedErrors: verdict.stats.unexpected,
    lateSettles: verdict.stats.late,
    exits: verdict.exits.map(({ index, exitedBy, exit, problem }) => `w${index}: ${exitedBy} ${exit?.code ?? exit?.signal}${problem ? ' ' + problem : ''}`).join('; '),
  })

  expect(verdict.badExits).toEqual([])
  expect(few(verdict.stats.unexpected)).toEqual(none)
  expect(few(verdict.stats.late)).toEqual(none)
  // Exclusion in both phases.
  expect(few(verdict.overlaps)).toEqual(none)
  // While no node loses data, every legitimate write is accepted: fences strictly rise per key.
  expect(few(refusedClean)).toEqual(none)
  expect(holds.length).toBeGreaterThan(0)
  expect(holds.filter((hold) => hold.wrong.length > 0)).toEqual([])
  expect(timeline.some((entry) => entry.faults?.some((fault) => fault.fault === 'kill-restart'))).toBe(true)
  expect(verdict.stats.total.acquired).toBeGreaterThan(100)
  expect(acceptedInRecovery).toBeGreaterThan(0)
}, PHASE_MS.clean + PHASE_MS.lossy + RECOVERY_MS + 120000)

async function acceptedCount(resource, keys) {
  const lengths = await Promise.all(keys.map((key) => resource.redis.llen(`fence:accepted:${key}`)))
  return lengths.reduce((sum, length) => sum + length, 0)
}

// Accepted writes per key and phase (a regressed fence shows up as a refused write instead).
function acceptedByPhase(history, keys, lossyFrom) {
  return Object.fromEntries(keys.map((key) => {
    const clean = history[key].filter(({ who }) => Number(who.split('/a')[1]) < lossyFrom).length
    return [key, `${clean} accepted before the first kill, ${history[key].length - clean} after`]
  }))
}
