'use strict'

// Leaks, measured from outside: a process's RSS, JS heap, file descriptors and threads, and the
// connections Redis sees (CLIENT LIST). (a) a million acquire/release cycles on one locker (in a
// plain child process), (b) thousands of lockers opened, used and closed, (c) worker threads
// terminated mid-operation.

const { execFile } = require('node:child_process')
const path = require('node:path')
const { promisify } = require('node:util')
const { Worker } = require('node:worker_threads')
const { startRedis, stopAll } = require('../helpers/redis-server')
const { rssMB, heapMB, collectGarbage, openFds, threads, connections, settle } = require('./support/measure')
const { SEED, size, random, now, sleep, within, report, few, none } = require('./support/torture')
const { Locker } = require('../..')

const CYCLES = size(1_000_000, 10_000_000)
// Bounded in time too: ~40,000 cycles/s on an idle 2-core machine, a fraction of that on a busy one.
const CYCLES_MS = size(60000, 900000)
const MIN_CYCLES = 200_000
const CONCURRENCY = 32
const SAMPLE_EVERY = 25_000
const WARM_UP_SHARE = 0.2
// Growth allowed over the last 80% of the cycles, measured after a full GC: malloc keeps some
// pages, but a native leak of even 64 bytes a cycle (51 MB over 800,000) does not fit.
const RSS_GROWTH_MB = 50
const HEAP_GROWTH_MB = 8
const LOCKERS = size(2000, 20000)
const LOCKER_BATCH = 100
const THREAD_ROUNDS = size(50, 500)
const THREADS_PER_ROUND = 4
const SETTLE_MS = 2000
const FD_TOLERANCE = 4
const THREAD_WORKER = path.join(__dirname, 'support', 'thread-worker.js')
const CYCLES_WORKER = path.join(__dirname, 'support', 'cycles-worker.js')

const run = promisify(execFile)

let server
let admin

beforeAll(async () => {
  server = await startRedis()
  admin = server.client()
})

afterAll(() => stopAll())

const describeConnections = (list) => list.map((client) => `${client.id}:${client.name || '-'}:${client.cmd}`).join(' ')

test(`up to ${CYCLES} acquire/release cycles on one locker: RSS flat after warm-up, connections constant`, async () => {
  // A server of its own: the connections it sees are the child's alone.
  const cyclesServer = await startRedis()
  const config = { url: cyclesServer.url, cycles: CYCLES, ms: CYCLES_MS, concurrency: CONCURRENCY, sampleEvery: SAMPLE_EVERY }
  const { stdout } = await run(process.execPath, ['--expose-gc', CYCLES_WORKER, JSON.stringify(config)], { timeout: CYCLES_MS + 30000 })
  const { done, seconds, samples } = JSON.parse(stdout)
  await cyclesServer.stop()
  const end = samples.at(-1)
  // Warm-up: the first 20% of the cycles this run managed (bounded in time on a busy machine).
  const warmUp = samples.find((entry) => entry.cycles >= WARM_UP_SHARE * done) ?? end
  const afterWarmUp = samples.filter((entry) => entry.cycles >= warmUp.cycles)

  report('acquire/release cycles', {
    cycles: done,
    concurrency: CONCURRENCY,
    seconds: Math.round(seconds * 10) / 10,
    cyclesPerSecond: Math.round(done / seconds),
    warmUpEndsAt: warmUp.cycles,
    rssGrowthAfterWarmUpMB: Math.round((end.rssMB - warmUp.rssMB) * 10) / 10,
    heapGrowthAfterWarmUpMB: Math.round((end.heapMB - warmUp.heapMB) * 10) / 10,
    maxRssAfterWarmUpMB: Math.max(...afterWarmUp.map((entry) => entry.rssMB)),
    samples: '\n    ' + samples.filter((entry, i) => i % Math.ceil(samples.length / 12) === 0 || entry === end)
      .map((entry) => JSON.stringify(entry)).join('\n    '),
  })

  // Enough cycles to judge (a leak of 64 bytes a cycle needs ~800,000 to cross the bound).
  expect(done).toBeGreaterThanOrEqual(Math.min(CYCLES, MIN_CYCLES))
  expect(end.rssMB - warmUp.rssMB).toBeLessThan(RSS_GROWTH_MB)
  // After a full GC the JS heap keeps nothing per cycle either (16 bytes a cycle would show).
  expect(end.heapMB - warmUp.heapMB).toBeLessThan(HEAP_GROWTH_MB)
  // The same connections all along: nothing opened per cycle, nothing reconnected.
  expect(afterWarmUp.map((entry) => entry.ids)).toEqual(afterWarmUp.map(() => warmUp.ids))
  expect(end.connections).toBeLessThanOrEqual(3)
  expect(end.fds).toBeLessThanOrEqual(warmUp.fds)
}, size(180000, 1800000))

test(`${LOCKERS} lockers used once and closed leave no connection and no fd behind`, async () => {
  // The first locker of the process loads the addon and its runtime; measure after that.
  const first = new Locker(server.url)
  await (await first.acquire('lockers:warm')).release()
  await first.close()
  await settle(() => connections(admin), (list) => list.length === 0, SETTLE_MS)
  collectGarbage()
  const start = { fds: openFds(), threads: threads(), rssMB: rssMB() }
  let peakConnections = 0
  let peakFds = 0
  const started = now()
  for (let batch = 0; batch < LOCKERS / LOCKER_BATCH; batch++) {
    const lockers = Array.from({ length: LOCKER_BATCH }, () => new Locker(server.url))
    await Promise.all(lockers.map(async (locker, i) => {
      const lock = await locker.acquire(`lockers:${batch}:${i}`, { ttl: 5000 })
      await locker.release(lock)
    }))
    peakFds = Math.max(peakFds, openFds())
    if (batch % 5 === 0) peakConnections = Math.max(peakConnections, (await connections(admin)).length)
    await Promise.all(lockers.map((locker) => locker.close()))
  }
  const seconds = (now() - started) / 1000
  const left = await settle(() => connections(admin), (list) => list.length === 0, SETTLE_MS)
  const fds = await settle(async () => openFds(), (count) => count <= start.fds + FD_TOLERANCE, SETTLE_MS)
  collectGarbage()
  const end = { fds: fds.value, threads: threads(), rssMB: rssMB() }

  report('lockers opened, used, closed', {
    lockers: LOCKERS,
    batch: LOCKER_BATCH,
    seconds: Math.round(seconds * 10) / 10,
    peakConnections,
    peakFds,
    connectionsLeft: `${left.value.length} after ${left.waitedMs} ms ${describeConnections(left.value.slice(0, 20))}`,
    fds: `${start.fds} -> ${end.fds} (settled after ${fds.waitedMs} ms)`,
    threads: `${start.threads} -> ${end.threads}`,
    rssMB: `${start.rssMB} -> ${end.rssMB}`,
  })

  expect(peakConnections).toBeGreaterThan(0)
  expect(few(left.value.map((client) => `${client.id}:${client.name || '-'}:${client.cmd}`))).toEqual(none)
  expect(end.fds).toBeLessThanOrEqual(start.fds + FD_TOLERANCE)
  expect(end.threads).toBeLessThanOrEqual(start.threads + FD_TOLERANCE)
}, size(120000, 1200000))

test(`${THREAD_ROUNDS} rounds × ${THREADS_PER_ROUND} worker threads terminated mid-operation leave no connection and no fd behind`, async () => {
  const rng = random(SEED)
  // One worker run to the end first: loading the addon in a worker costs what it costs once.
  await runWorker({ maxCycles: 20 }).finished
  await settle(() => connections(admin), (list) => list.length === 0, SETTLE_MS)
  collectGarbage()
  const start = { fds: openFds(), threads: threads(), rssMB: rssMB() }
  let peakConnections = 0
  let terminated = 0
  let notRunning = 0
  const started = now()
  for (let round = 0; round < THREAD_ROUNDS; round++) {
    const workers = Array.from({ length: THREADS_PER_ROUND }, (_, i) => runWorker({ prefix: `threads:${round}:${i}`, maxCycles: 100000 }))
    await within(Promise.all(workers.map((worker) => worker.running)), 10000, `round ${round}: the workers' first cycles`)
    notRunning += workers.filter((worker) => !worker.sawRunning).length
    // Mid-operation: the loops are acquiring, waiting and releasing right now.
    await sleep(rng.int(0, 30))
    if (round % 10 === 0) peakConnections = Math.max(peakConnections, (await connections(admin)).length)
    await Promise.all(workers.map((worker) => worker.thread.terminate()))
    terminated += workers.length
  }
  const seconds = (now() - started) / 1000
  const left = await settle(() => connections(admin), (list) => list.length === 0, SETTLE_MS)
  const fds = await settle(async () => openFds(), (count) => count <= start.fds + FD_TOLERANCE, SETTLE_MS)
  collectGarbage()
  const end = { fds: fds.value, threads: threads(), rssMB: rssMB() }

  report('worker threads terminated mid-operation', {
    rounds: THREAD_ROUNDS,
    terminated,
    exitedBeforeTheirFirstCycles: notRunning,
    seconds: Math.round(seconds * 10) / 10,
    peakConnections,
    connectionsLeft: `${left.value.length} after ${left.waitedMs} ms ${describeConnections(left.value.slice(0, 20))}`,
    fds: `${start.fds} -> ${end.fds} (settled after ${fds.waitedMs} ms)`,
    threads: `${start.threads} -> ${end.threads}`,
    rssMB: `${start.rssMB} -> ${end.rssMB}`,
  })

  expect(notRunning).toBe(0)
  expect(peakConnections).toBeGreaterThan(0)
  expect(few(left.value.map((client) => `${client.id}:${client.name || '-'}:${client.cmd}`))).toEqual(none)
  expect(end.fds).toBeLessThanOrEqual(start.fds + FD_TOLERANCE)
  expect(end.threads).toBeLessThanOrEqual(start.threads + FD_TOLERANCE)
}, size(120000, 1200000))

function runWorker({ prefix = 'threads:warm', maxCycles }) {
  const thread = new Worker(THREAD_WORKER, { workerData: { url: server.url, prefix, loops: 4, maxCycles } })
  let running
  const worker = { thread, sawRunning: false, running: new Promise((resolve) => { running = resolve }) }
  worker.finished = new Promise((resolve, reject) => {
    thread.on('message', (message) => {
      if (message === 'running') {
        worker.sawRunning = true
        running()
      }
      else if (message === 'finished') resolve()
      else reject(new Error(message))
    })
    thread.on('error', reject)
    thread.on('exit', (code) => {
      running()
      resolve(code)
    })
  })
  // A terminated worker's promise is never awaited; its rejection must not go unhandled.
  worker.finished.catch(() => {})
  return worker
}
