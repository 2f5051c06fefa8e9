'use strict'

// The contended case across processes: several child processes
// (contended-processes-child.js), each with its own adapter instance, queue for
// ONE key at once. Each task acquires, holds a few ms and releases, exactly as
// in contended.js; the hand-offs now also cross process boundaries, which an
// implementation cannot shortcut inside one process.
//
// The parent starts the children, waits until every one is warmed up, resets
// the command counts, lets them all go at once (an IPC message to each), PINGs
// the server(s) meanwhile for the round-trip floor, and puts the holds of all
// children on one time line (performance.timeOrigin + performance.now(), which
// is comparable across processes; the parent checks each child's offset).

const path = require('node:path')
const { setTimeout: sleep } = require('node:timers/promises')
const { latencySummary } = require('../stats')
const { Child, clockOffset } = require('../children')
const { resetCommandCounts, summarizeCalls, commandCallsWithoutPings } = require('../commands')
const { openPingers, closePingers, startPinging } = require('../ping')

const CHILD = path.join(__dirname, 'contended-processes-child.js')
const KEY = 'bench:contended-processes'
const WARMUP_KEY = 'bench:contended-processes:warmup'
// Starting a child, loading the libraries, connecting and warming up.
const STARTUP_MS = 15_000
// A child that was told to close and still runs after this left a connection or timer open.
const EXIT_GRACE_MS = 5_000

// Command counts per server, the parent's own PINGs taken out.
async function commandsPerServer (servers, pingsOf) {
  return Promise.all(servers.map(async (server) => summarizeCalls(await commandCallsWithoutPings(server, pingsOf))))
}

function mergeCalls (perServer) {
  const merged = {}
  for (const { byCommand } of perServer) {
    for (const [command, count] of Object.entries(byCommand)) merged[command] = (merged[command] ?? 0) + count
  }
  return merged
}

// All processes' holds on one time line, sorted by acquisition. A hand-off runs
// from one holder calling release() to the next acquire() resolving; it crosses
// processes when the two holders are in different ones. A holder that starts
// before the latest release has started overlaps, which a correct lock never allows.
function analyseHolds (holds) {
  holds.sort((a, b) => a.acquiredAt - b.acquiredAt)
  const handoffs = []
  const crossHandoffs = []
  let overlaps = 0
  let latest = null
  for (const hold of holds) {
    if (latest) {
      const gap = hold.acquiredAt - latest.releaseStartedAt
      if (gap < 0) overlaps++
      handoffs.push(gap)
      if (hold.process !== latest.process) crossHandoffs.push(gap)
    }
    if (!latest || hold.releaseStartedAt > latest.releaseStartedAt) latest = hold
  }
  return {
    handoffMs: latencySummary(handoffs),
    crossProcessHandoffs: crossHandoffs.length,
    crossProcessShare: handoffs.length > 0 ? crossHandoffs.length / handoffs.length : null,
    crossProcessHandoffMs: latencySummary(crossHandoffs),
    overlaps
  }
}

// `deployment`: a topology's (topologies/index.js); the parent PINGs the servers of the key.
async function runContendedProcesses (adapter, deployment, { processes, tasksPerProcess, holdMs, ttlMs, maxWaitMs, runCapMs }) {
  const { servers, urls, cluster, sentinel } = deployment
  const pinged = await deployment.serversOf(KEY)
  const pingers = await openPingers(pinged)
  const children = Array.from({ length: processes }, (_, index) => new Child(CHILD, index))
  try {
    await Promise.all(children.map((child) => {
      const ready = child.receive('ready', STARTUP_MS)
      child.send({
        type: 'config',
        adapter: adapter.name,
        index: child.index,
        urls,
        cluster,
        sentinel,
        maxWaitMs,
        key: KEY,
        warmupKey: `${WARMUP_KEY}:${child.index}`,
        tasks: tasksPerProcess,
        holdMs,
        ttlMs
      })
      return ready
    }))
    const clocks = []
    for (const child of children) clocks.push(await clockOffset(child, STARTUP_MS))

    await resetCommandCounts(servers)
    const pinging = startPinging(pingers)
    const results = children.map((child) => child.receive('result', runCapMs).then(
      (result) => ({ child, result }),
      (err) => ({ child, err })))
    for (const child of children) child.send({ type: 'start' })
    const outcomes = await Promise.all(results)
    const pingMsList = await pinging.stop()
    const perServer = await commandsPerServer(servers, { pings: pingMsList.length, pinged })

    // A child past the cap is killed; one that failed otherwise fails the row.
    const failed = outcomes.find((outcome) => outcome.err && !outcome.err.timedOut)
    if (failed) throw failed.err
    const hung = outcomes.filter((outcome) => outcome.err)
    await Promise.all(hung.map(({ child }) => child.kill()))

    // Closed only now, so that the closing QUITs are not in the counts.
    const reported = outcomes.filter((outcome) => outcome.result)
    for (const { child } of reported) child.send({ type: 'close' })
    let leftOpen = 0
    await Promise.all(reported.map(async ({ child }) => {
      const timer = new AbortController()
      const grace = sleep(EXIT_GRACE_MS, 'grace', { signal: timer.signal }).catch(() => 'exited')
      if (await Promise.race([child.exited.then(() => 'exited'), grace]) === 'grace') {
        leftOpen++
        await child.kill()
      }
      timer.abort()
    }))

    const holds = reported.flatMap(({ child, result }) =>
      result.holds.map((hold) => ({ ...hold, process: child.index })))
    const tasks = processes * tasksPerProcess
    const idealMs = tasks * holdMs
    const startedAt = Math.min(...reported.map(({ result }) => result.startedAt))
    const wallMs = Math.max(...reported.map(({ result }) => result.endedAt)) - startedAt
    const total = perServer.reduce((sum, counts) => sum + counts.total, 0)
    const evals = perServer.reduce((sum, counts) => sum + counts.evals, 0)
    const analysis = analyseHolds(holds)
    const pingMs = latencySummary(pingMsList)
    const gaveUp = reported.reduce((sum, { result }) => sum + result.gaveUp, 0) + hung.length * tasksPerProcess
    return {
      processes,
      tasksPerProcess,
      tasks,
      acquired: holds.length,
      gaveUp,
      firstError: reported.find(({ result }) => result.firstError)?.result.firstError,
      killed: hung.length,
      leftOpen,
      wallMs,
      idealMs,
      wallOverIdeal: wallMs / idealMs,
      // How far apart the children started after the barrier message.
      startSkewMs: Math.max(...reported.map(({ result }) => result.startedAt)) - startedAt,
      ...analysis,
      pingMs,
      pings: pingMsList.length,
      p50OverPing: analysis.handoffMs.p50 / pingMs.p50,
      commandsPerAcquisition: total / holds.length,
      evalsPerAcquisition: evals / holds.length,
      // Per master, Redlock's or the Cluster's (one entry on a single node).
      commandsPerAcquisitionByServer: perServer.map((counts) => counts.total / holds.length),
      cpuMs: reported.reduce((sum, { result }) => sum + result.cpuMs, 0),
      eluActiveMs: reported.reduce((sum, { result }) => sum + result.eluActiveMs, 0),
      perProcess: outcomes.map(({ child, result, err }) => result
        ? {
            process: child.index,
            acquired: result.holds.length,
            gaveUp: result.gaveUp,
            cpuMs: result.cpuMs,
            eluActiveMs: result.eluActiveMs,
            eluUtilization: result.eluUtilization,
            clockOffsetMs: clocks[child.index].offsetMs,
            clockProbeRoundTripMs: clocks[child.index].roundTripMs
          }
        : { process: child.index, killed: true, error: err.message }),
      commandCalls: mergeCalls(perServer),
      commandCallsByServer: perServer.map((counts) => counts.byCommand)
    }
  } finally {
    await Promise.all(children.map((child) => child.kill()))
    closePingers(pingers)
  }
}

// Time the case may take at most, for the runner's hard limit: startup, the
// run's cap and the exit grace, with room to spare.
function contendedProcessesLimitMs (runCapMs) {
  return STARTUP_MS + runCapMs + EXIT_GRACE_MS + 10_000
}

module.exports = { runContendedProcesses, contendedProcessesLimitMs }
