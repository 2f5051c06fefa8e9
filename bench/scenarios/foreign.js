'use strict'

// Holders that are not ironlock's: a hand-rolled `SET NX PX` lock, or the
// `@sesamecare-oss/redlock` package. They never announce their release, so an
// ironlock waiter behind them polls (4 ms backing off to 16 ms, jittered)
// instead of sleeping until their TTL; behind a Redlock holder it first checks
// read-only (EXISTS) on every node, so as not to split redlock's votes.
//
// Two measurements:
// - hand-off: one foreign holder, one waiter; how soon after the holder's
//   delete does the waiter hold the lock, next to a PING round trip;
// - mixed fleet: sesamecare instances alone vs. half of them replaced by
//   ironlock's redlock shim, all on one key.

const { fork } = require('node:child_process')
const { randomBytes } = require('node:crypto')
const path = require('node:path')
const { setTimeout: sleep } = require('node:timers/promises')
const Redis = require('ioredis')
const { Redlock } = require('@sesamecare-oss/redlock')
const { nowMs } = require('../clock')
const { latencySummary } = require('../stats')
const { resetCommandCounts, readCommandCounts } = require('../commands')

const KEY = 'bench:foreign'
// Far beyond any hand-off: a waiter that only wakes at the holder's TTL would
// show up as 10 s, not as a few ms.
const HOLDER_TTL_MS = 10_000
const WAITER_TTL_MS = 10_000
// The holder lets go this long after the waiter started: long enough that the
// waiter is really waiting (its first attempt failed), random so the delete
// does not line up with one step of a fixed poll schedule.
const HOLD_MIN_MS = 10
const HOLD_MAX_MS = 30
// Opens connections and loads scripts on both sides before anything is measured.
const WARMUP_ROUNDS = 5

const COMPARE_AND_DELETE = `if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end`

// ----------------------------------------------------------------------------
// Hand-off

// A lock as an application writes it without a library: SET NX PX with a
// random value, compare-and-delete to let go.
function handRolledHolder ([url]) {
  const client = new Redis(url)
  client.defineCommand('compareAndDelete', { numberOfKeys: 1, lua: COMPARE_AND_DELETE })
  return {
    async hold (key) {
      const token = randomBytes(16).toString('hex')
      if (await client.set(key, token, 'PX', HOLDER_TTL_MS, 'NX') !== 'OK') throw new Error(`holder: ${key} was not free`)
      // true if the key was still ours when it was deleted.
      return async () => (await client.compareAndDelete(key, token)) === 1
    },
    ping: () => client.ping(),
    close: () => client.quit()
  }
}

// A redlock package holder on every node. Its release() resolves as soon as a
// quorum of nodes has deleted, which is what its user would take as "released";
// the last node may still be deleting.
function redlockHolder (urls) {
  const clients = urls.map((url) => new Redis(url))
  // retryCount 0: the key is free when the holder takes it; a failure is a bench bug.
  const redlock = new Redlock(clients, { retryCount: 0 })
  redlock.on('error', () => {})
  return {
    async hold (key) {
      const lock = await redlock.acquire([key], HOLDER_TTL_MS)
      // It rejects unless a quorum still held our value.
      return () => redlock.release(lock).then(() => true, () => false)
    },
    // The floor of one Redlock round: every node answers, in parallel.
    ping: () => Promise.all(clients.map((client) => client.ping())),
    close: () => redlock.quit()
  }
}

// acquire() with its settling time taken where it happens, not where it is
// awaited, and no unhandled rejection while the holder is still sleeping.
function startWaiting (locks, key) {
  const outcome = { at: null, handle: null, error: null }
  outcome.done = locks.acquire(key, WAITER_TTL_MS).then(
    (handle) => { outcome.at = nowMs(); outcome.handle = handle },
    (err) => { outcome.at = nowMs(); outcome.error = err })
  return outcome
}

async function handOffOnce (locks, holder) {
  // A plain round trip on the holder's connection(s), right before each round:
  // the physical floor under the same load as the round itself.
  const pingStartedAt = nowMs()
  await holder.ping()
  const pingMs = nowMs() - pingStartedAt

  const letGo = await holder.hold(storedKey(locks, KEY))
  const waiter = startWaiting(locks, KEY)
  await sleep(HOLD_MIN_MS + Math.random() * (HOLD_MAX_MS - HOLD_MIN_MS))
  const deleteSentAt = nowMs()
  // The waiter must not hold the lock before the holder even let go.
  const early = waiter.at !== null && !waiter.error
  const stillOurs = await letGo()
  const deletedAt = nowMs()
  await waiter.done
  if (waiter.error) throw waiter.error
  await locks.release(waiter.handle)
  return {
    pingMs,
    // Can be slightly negative: the waiter's reply may be handled before the holder's.
    fromReplyMs: waiter.at - deletedAt,
    fromSendMs: waiter.at - deleteSentAt,
    overlap: early || !stillOurs
  }
}

// The waiter's key as its library stores it in Redis (redis-semaphore prefixes
// its own), so the foreign holder takes exactly what the waiter is after.
const storedKey = (locks, key) => locks.storedKey?.(key) ?? key

async function runForeignHandOff (locks, servers, { rounds }) {
  const urls = servers.map((server) => server.url)
  const holder = urls.length === 1 ? handRolledHolder(urls) : redlockHolder(urls)
  try {
    for (let round = 0; round < WARMUP_ROUNDS; round++) await handOffOnce(locks, holder)
    await resetCommandCounts(servers)
    const measured = []
    for (let round = 0; round < rounds; round++) measured.push(await handOffOnce(locks, holder))
    const commands = await readCommandCounts(servers)

    const handoffMs = latencySummary(measured.map((m) => m.fromReplyMs))
    const pingMs = latencySummary(measured.map((m) => m.pingMs))
    return {
      rounds,
      handoffMs,
      fromSendMs: latencySummary(measured.map((m) => m.fromSendMs)),
      pingMs,
      p50OverPing: handoffMs.p50 / pingMs.p50,
      overlaps: measured.filter((m) => m.overlap).length,
      // Everything in the window, holder and PINGs included: the waiter's share is
      // what differs between rows.
      commandsPerRound: commands.total / rounds,
      commandCalls: commands.byCommand
    }
  } finally {
    await holder.close().catch(() => {})
  }
}

// ----------------------------------------------------------------------------
// Mixed fleet

const FLEET_KEY = 'stock'
const FLEET_WORKERS = 40
const FLEET_ROUNDS = 5
const FLEET_HOLD_MS = 2
const FLEET_TTL_MS = 10_000
// As an application configures redlock to wait for ever. retryJitter is left
// at redlock's default (100 ms), as such an application would leave it.
const FLEET_SETTINGS = { retryCount: -1, retryDelay: 5 }
// Time allowed on top of the cap for the child to start, connect and warm up.
const FLEET_STARTUP_MS = 15_000
// A child that reported but does not exit by itself left a connection or timer open.
const FLEET_EXIT_GRACE_MS = 5_000

const FLEETS = [
  { name: `A: ${FLEET_WORKERS} × sesame-redlock`, ironlock: 0, sesame: FLEET_WORKERS },
  { name: `B: ${FLEET_WORKERS / 2} × ironlock shim + ${FLEET_WORKERS / 2} × sesame-redlock`, ironlock: FLEET_WORKERS / 2, sesame: FLEET_WORKERS / 2 }
]

// One fleet run in its own process (foreign-fleet.js): a run past its cap can
// then be ended by exiting, whatever its waiters are doing, and nothing of it
// stays in the bench process.
function runFleetProcess (urls, fleet, capMs) {
  return new Promise((resolve, reject) => {
    const child = fork(path.join(__dirname, 'foreign-fleet.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    let result = null
    let exitTimer = null
    const startupTimer = setTimeout(() => child.kill('SIGKILL'), capMs + FLEET_STARTUP_MS)
    child.on('message', (message) => {
      result = message
      exitTimer = setTimeout(() => { result.leftOpen = true; child.kill('SIGKILL') }, FLEET_EXIT_GRACE_MS)
    })
    child.once('error', reject)
    child.once('exit', (code, signal) => {
      clearTimeout(startupTimer)
      clearTimeout(exitTimer)
      if (result?.error) reject(new Error(result.error))
      else if (result) resolve(result)
      else reject(new Error(`fleet process ended without a result (${signal ?? `exit ${code}`})`))
    })
    child.send({
      urls,
      fleet,
      key: FLEET_KEY,
      rounds: FLEET_ROUNDS,
      holdMs: FLEET_HOLD_MS,
      ttlMs: FLEET_TTL_MS,
      settings: FLEET_SETTINGS,
      capMs
    })
  })
}

function summariseFleet (fleet, runs) {
  const acquisitions = FLEET_WORKERS * FLEET_ROUNDS
  const wallMs = latencySummary(runs.map((run) => run.wallMs))
  const totalSeconds = runs.reduce((sum, run) => sum + run.wallMs, 0) / 1000
  const totalAcquired = runs.reduce((sum, run) => sum + run.acquired, 0)
  return {
    impl: fleet.name,
    fleet,
    acquisitions,
    runs,
    wallMs,
    // At the median run, and over all runs together (stalls included).
    acquisitionsPerSecMedian: acquisitions / (wallMs.p50 / 1000),
    acquisitionsPerSec: totalAcquired / totalSeconds,
    capped: runs.filter((run) => run.capped).length,
    overlaps: runs.reduce((sum, run) => sum + run.overlaps, 0),
    longestGapMs: Math.max(...runs.map((run) => run.longestGapMs)),
    commandsPerAcquisition: runs.reduce((sum, run) => sum + run.commands, 0) / totalAcquired,
    leftOpen: runs.filter((run) => run.leftOpen).length
  }
}

// Fleets alternate (A, B, A, B, ...) so that a slow spell of the machine hits both.
async function runMixedFleets (servers, { runs, capMs }) {
  const urls = servers.map((server) => server.url)
  const byFleet = FLEETS.map(() => [])
  for (let run = 0; run < runs; run++) {
    for (const [index, fleet] of FLEETS.entries()) {
      await Promise.all(servers.map((server) => server.reset()))
      const result = await runFleetProcess(urls, fleet, capMs)
      const commands = await readCommandCounts(servers)
      result.commands = commands.total
      result.commandCalls = commands.byCommand
      byFleet[index].push(result)
    }
  }
  return FLEETS.map((fleet, index) => summariseFleet(fleet, byFleet[index]))
}

module.exports = {
  runForeignHandOff,
  runMixedFleets,
  FLEET: { workers: FLEET_WORKERS, rounds: FLEET_ROUNDS, holdMs: FLEET_HOLD_MS, ttlMs: FLEET_TTL_MS, settings: FLEET_SETTINGS }
}
