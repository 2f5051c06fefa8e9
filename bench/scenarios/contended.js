'use strict'

// Many tasks queue for ONE key; each holds it for a few ms. Measures how
// quickly and how cheaply the lock is handed from holder to holder.

const { performance } = require('node:perf_hooks')
const { setTimeout: sleep } = require('node:timers/promises')
const { nowMs } = require('../clock')
const { latencySummary } = require('../stats')
const { resetCommandCounts, readCommandCounts } = require('../commands')
const { openPingers, closePingers, startPinging } = require('../ping')

const KEY = 'bench:contended'
const WARMUP_KEY = 'bench:contended:warmup'
const WARMUP_TASKS = 10
const WARMUP_HOLD_MS = 1

// `clock` is nowMs, or sharedNowMs when holds from several processes are compared.
async function holdOnce (locks, key, { ttlMs, holdMs }, clock = nowMs) {
  const handle = await locks.acquire(key, ttlMs)
  const acquiredAt = clock()
  await sleep(holdMs)
  const releaseStartedAt = clock()
  await locks.release(handle)
  return { acquiredAt, releaseStartedAt }
}

// Loads scripts and opens connections; also exercises the waiting path once.
async function warmUp (locks, ttlMs) {
  await Promise.all(Array.from({ length: WARMUP_TASKS }, () =>
    holdOnce(locks, WARMUP_KEY, { ttlMs, holdMs: WARMUP_HOLD_MS })))
}

// Holds sorted by acquisition. A hand-off runs from one holder calling
// release() to the next holder's acquire() resolving; a negative gap means two
// holders overlapped, which a correct lock never allows.
function analyseHolds (holds) {
  holds.sort((a, b) => a.acquiredAt - b.acquiredAt)
  const handoffs = []
  let overlaps = 0
  let latestReleaseStart = -Infinity
  for (const hold of holds) {
    if (hold.acquiredAt < latestReleaseStart) overlaps++
    if (latestReleaseStart !== -Infinity) handoffs.push(hold.acquiredAt - latestReleaseStart)
    latestReleaseStart = Math.max(latestReleaseStart, hold.releaseStartedAt)
  }
  return { handoffMs: latencySummary(handoffs), overlaps }
}

// `deployment`: a topology's (topologies/index.js); the floor PINGs the servers of the key.
async function runContended (locks, deployment, { tasks, holdMs, ttlMs }) {
  const { servers } = deployment
  await warmUp(locks, ttlMs)
  const pinged = await deployment.serversOf(KEY)
  const pingers = await openPingers(pinged)
  try {
    await resetCommandCounts(servers)
    const cpuBefore = process.cpuUsage()
    const eluBefore = performance.eventLoopUtilization()
    const pinging = startPinging(pingers)
    const startedAt = nowMs()
    const outcomes = await Promise.allSettled(Array.from({ length: tasks }, () =>
      holdOnce(locks, KEY, { ttlMs, holdMs })))
    const wallMs = nowMs() - startedAt
    const cpu = process.cpuUsage(cpuBefore)
    const elu = performance.eventLoopUtilization(eluBefore)
    const pingMsList = await pinging.stop()
    const commands = await readCommandCounts(servers, { pings: pingMsList.length, pinged })

    const holds = outcomes.filter((o) => o.status === 'fulfilled').map((o) => o.value)
    const failures = outcomes.filter((o) => o.status === 'rejected')
    const idealMs = tasks * holdMs
    const analysis = analyseHolds(holds)
    const pingMs = latencySummary(pingMsList)
    return {
      tasks,
      acquired: holds.length,
      gaveUp: failures.length,
      firstError: failures[0]?.reason?.message,
      wallMs,
      idealMs,
      wallOverIdeal: wallMs / idealMs,
      ...analysis,
      pingMs,
      p50OverPing: analysis.handoffMs.p50 / pingMs.p50,
      // Per lock actually obtained, so tasks that gave up still charge their polling.
      commandsPerAcquisition: commands.total / holds.length,
      evalsPerAcquisition: commands.evals / holds.length,
      // Includes the PINGs' share of the event loop, as small as a timer every 5 ms.
      cpuMs: (cpu.user + cpu.system) / 1000,
      // The event loop's busy time per lock obtained: what waiting costs the JS thread.
      eluUsPerAcquisition: (elu.active * 1000) / holds.length,
      commandCalls: commands.byCommand
    }
  } finally {
    closePingers(pingers)
  }
}

module.exports = { runContended, holdOnce, analyseHolds, KEY, WARMUP_TASKS, WARMUP_HOLD_MS }
