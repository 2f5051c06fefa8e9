'use strict'

// A rolling migration on one hot key: old workers (redlock 4 with its default
// settings, or a hand-rolled SET NX poller) still running next to ironlock
// workers, every worker a process of its own (rolling-worker.js), all on the
// same Redis and key, for a fixed window. Each worker takes the key, holds it
// a few ms, releases it, and again. Measured: acquisitions per second of each
// side, the old side's share, how long old workers wait, and whether two
// holders ever overlapped. Each mix also runs without one of the sides, so the
// rates can be compared with what the same workers get alone.
//
// The old workers poll: they find the key free only if their attempt lands
// while nobody holds it. ironlock's waiters are woken by the release itself and
// take the key within a round trip, so the old side's share is the question.

const path = require('node:path')
const { setTimeout: sleep } = require('node:timers/promises')
const { sharedNowMs } = require('../clock')
const { latencySummary } = require('../stats')
const { Child, clockOffset } = require('../children')
const { analyseHolds } = require('./contended')

const WORKER = path.join(__dirname, 'rolling-worker.js')
const KEY = 'bench:rolling'
const WARMUP_KEY = 'bench:rolling:warmup'
// Long enough that no hold ever expires: every hand-off is a real release.
const TTL_MS = 10_000
const HOLD_MS = 5
// Starting a worker, loading its library, connecting and warming up.
const STARTUP_MS = 15_000
// Between the start message and the window: every worker has it by then.
const START_LEAD_MS = 100
// After the window: a redlock 4 call under way cannot be called off and ends
// after its retries (10 × 200 ms ± 100 ms, up to 3 s), then the worker reports.
const REPORT_GRACE_MS = 10_000
// A worker that reported and still runs after this left a connection or timer open.
const EXIT_GRACE_MS = 5_000

const OLD_NAMES = { redlock: 'redlock 4', 'redlock-20ms': 'redlock 4 (20 ms retries)', 'nx-spin': 'nx-spin' }

// Which workers run together: `old` is the old workers' kind (or none), `ours`
// whether the ironlock workers run too. redlock 4 with 20 ms retries is the
// remedy for the first mix, so it runs beside ironlock only.
const MIXES = [
  { old: 'redlock', ours: true },
  { old: 'redlock', ours: false },
  { old: 'redlock-20ms', ours: true },
  { old: 'nx-spin', ours: true },
  { old: 'nx-spin', ours: false },
  { old: null, ours: true }
]

function mixName ({ old, ours }, workersPerSide) {
  const sides = [old && `${workersPerSide} × ${OLD_NAMES[old]}`, ours && `${workersPerSide} × ironlock`]
  return sides.filter(Boolean).join(' + ')
}

// The workers' processes and their clocks, each configured and warmed up.
async function startWorkers (url, kinds) {
  const children = kinds.map((kind, index) => Object.assign(new Child(WORKER, index), { kind }))
  try {
    await Promise.all(children.map((child) => {
      const ready = child.receive('ready', STARTUP_MS)
      child.send({
        type: 'config',
        kind: child.kind,
        url,
        key: KEY,
        warmupKey: `${WARMUP_KEY}:${child.index}`,
        holdMs: HOLD_MS,
        ttlMs: TTL_MS
      })
      return ready
    }))
    for (const child of children) child.clock = await clockOffset(child, STARTUP_MS)
    return children
  } catch (err) {
    await Promise.all(children.map((child) => child.kill()))
    throw err
  }
}

// The workers close their connections and exit by themselves after reporting;
// one still running after the grace period is killed and counted.
async function awaitExits (children) {
  let leftOpen = 0
  await Promise.all(children.map(async (child) => {
    const timer = new AbortController()
    const grace = sleep(EXIT_GRACE_MS, 'grace', { signal: timer.signal }).catch(() => 'exited')
    if (await Promise.race([child.exited.then(() => 'exited'), grace]) === 'grace') {
      leftOpen++
      await child.kill()
    }
    timer.abort()
  }))
  return leftOpen
}

function onParentClock ({ wantedAt, acquiredAt, releaseStartedAt }, offsetMs) {
  return { wantedAt: wantedAt - offsetMs, acquiredAt: acquiredAt - offsetMs, releaseStartedAt: releaseStartedAt - offsetMs }
}

// ironlock-to-ironlock hand-offs only: from one ironlock holder starting its
// release to the next holder, if that is an ironlock worker too, having the key.
function ourHandOffs (sortedHolds) {
  const gaps = []
  for (let index = 1; index < sortedHolds.length; index++) {
    const [previous, next] = [sortedHolds[index - 1], sortedHolds[index]]
    if (previous.kind === 'ironlock' && next.kind === 'ironlock') gaps.push(next.acquiredAt - previous.releaseStartedAt)
  }
  return gaps
}

async function runMixOnce (url, mix, { workersPerSide, windowMs }) {
  const kinds = [
    ...Array(mix.old ? workersPerSide : 0).fill(mix.old),
    ...Array(mix.ours ? workersPerSide : 0).fill('ironlock')
  ]
  const children = await startWorkers(url, kinds)
  try {
    const startsAt = sharedNowMs() + START_LEAD_MS
    const endsAt = startsAt + windowMs
    const results = children.map((child) => child.receive('result', START_LEAD_MS + windowMs + REPORT_GRACE_MS))
    // Each child reads the shared clock with an offset of its own (several ms
    // between processes started under load), so times cross on the parent's clock.
    for (const child of children) {
      const offsetMs = child.clock.offsetMs
      child.send({ type: 'start', startsAt: startsAt + offsetMs, endsAt: endsAt + offsetMs })
    }
    const reported = await Promise.all(results)
    const leftOpen = await awaitExits(children)

    const holds = reported.flatMap((result, index) => result.holds.map((hold) => ({
      ...onParentClock(hold, children[index].clock.offsetMs),
      kind: children[index].kind,
      process: index
    })))
    // Sorts the holds by acquisition.
    const { overlaps } = analyseHolds(holds)
    const inWindow = holds.filter((hold) => hold.acquiredAt >= startsAt && hold.acquiredAt < endsAt)
    const oldHolds = inWindow.filter((hold) => hold.kind !== 'ironlock')
    const seconds = windowMs / 1000
    const oldSide = reported.filter((_, index) => children[index].kind !== 'ironlock')
    return {
      oldPerSec: mix.old ? oldHolds.length / seconds : null,
      oursPerSec: mix.ours ? (inWindow.length - oldHolds.length) / seconds : null,
      // Old workers' lock() calls that ran out of retries (redlock 4), per second.
      oldGaveUpPerSec: mix.old ? oldSide.reduce((sum, result) => sum + result.gaveUp, 0) / seconds : null,
      oldWaitsMs: oldHolds.map((hold) => hold.acquiredAt - hold.wantedAt),
      ourHandOffsMs: ourHandOffs(holds.filter((hold) => hold.acquiredAt < endsAt)),
      overlaps,
      leftOpen,
      clockOffsetsMs: children.map((child) => child.clock.offsetMs)
    }
  } finally {
    await Promise.all(children.map((child) => child.kill()))
  }
}

const median = (values) => latencySummary(values.filter((value) => value !== null)).p50

function summariseMix (mix, runs, workersPerSide) {
  const both = mix.old && mix.ours
  return {
    impl: mixName(mix, workersPerSide),
    mix,
    runs,
    oldPerSec: mix.old ? median(runs.map((run) => run.oldPerSec)) : null,
    oursPerSec: mix.ours ? median(runs.map((run) => run.oursPerSec)) : null,
    // Medians of the per-run figures. A run in which the old side got nothing
    // has an infinite ratio; the median holds as long as most runs did not.
    oldShare: both ? median(runs.map((run) => run.oldPerSec / (run.oldPerSec + run.oursPerSec))) : null,
    oursOverOld: both ? median(runs.map((run) => run.oursPerSec / run.oldPerSec)) : null,
    oldGaveUpPerSec: mix.old ? median(runs.map((run) => run.oldGaveUpPerSec)) : null,
    oldWaitMs: latencySummary(runs.flatMap((run) => run.oldWaitsMs)),
    ourHandOffMs: latencySummary(runs.flatMap((run) => run.ourHandOffsMs)),
    overlaps: runs.reduce((sum, run) => sum + run.overlaps, 0),
    leftOpen: runs.reduce((sum, run) => sum + run.leftOpen, 0)
  }
}

// Mixes alternate run by run, so that a slow spell of the machine hits all of them.
async function runRollingMigration (servers, { workersPerSide, windowMs, runs }) {
  const [url] = servers.map((server) => server.url)
  const byMix = MIXES.map(() => [])
  for (let run = 0; run < runs; run++) {
    for (const [index, mix] of MIXES.entries()) {
      await Promise.all(servers.map((server) => server.reset()))
      byMix[index].push(await runMixOnce(url, mix, { workersPerSide, windowMs }))
    }
  }
  return MIXES.map((mix, index) => summariseMix(mix, byMix[index], workersPerSide))
}

module.exports = { runRollingMigration, ROLLING: { holdMs: HOLD_MS, ttlMs: TTL_MS } }
