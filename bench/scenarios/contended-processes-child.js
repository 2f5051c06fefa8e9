'use strict'

// Child process of contended-processes.js: ONE of the processes that queue for
// the same key. Protocol (IPC messages, all with a `type`):
//
//   parent → { type: 'config', adapter, index, urls, cluster, sentinel, maxWaitMs, key, warmupKey, tasks, holdMs, ttlMs }
//   child  → { type: 'ready' }                 adapter created and warmed up
//   parent → { type: 'clock', t0 }             (a few times) child → { type: 'clock', t0, childNow }
//   parent → { type: 'start' }                 the barrier: every child starts its tasks now
//   child  → { type: 'result', ... }           holds, CPU, event-loop use
//   parent → { type: 'close' }                 the adapter is closed and the child disconnects
//
// Holds are timed with sharedNowMs() (performance.timeOrigin + performance.now()),
// which the parent compares across processes. The result is sent before the
// adapter is closed, so the parent can read the command counts without the
// closing QUITs in them.

const { performance } = require('node:perf_hooks')
const adapters = require('../adapters')
const { sharedNowMs } = require('../clock')
const { send, serve, closingByItself } = require('../child')
const { holdOnce, WARMUP_TASKS, WARMUP_HOLD_MS } = require('./contended')

let locks = null
let config = null

async function prepare (received) {
  config = received
  const adapter = adapters.find((candidate) => candidate.name === config.adapter)
  if (!adapter) throw new Error(`unknown adapter ${config.adapter}`)
  if (adapter.unavailable) throw new Error(`${adapter.name} unavailable: ${adapter.unavailable}`)
  const { urls, cluster, sentinel, maxWaitMs } = config
  locks = adapter.create({ urls, cluster, sentinel, maxWaitMs })
  // Connections, scripts and the waiting path, on a key of this process's own.
  await Promise.all(Array.from({ length: WARMUP_TASKS }, () =>
    holdOnce(locks, config.warmupKey, { ttlMs: config.ttlMs, holdMs: WARMUP_HOLD_MS }, sharedNowMs)))
  await send({ type: 'ready' })
}

async function run () {
  const { key, tasks, holdMs, ttlMs } = config
  const startedAt = sharedNowMs()
  const cpuBefore = process.cpuUsage()
  const eluBefore = performance.eventLoopUtilization()
  const outcomes = await Promise.allSettled(Array.from({ length: tasks }, () =>
    holdOnce(locks, key, { ttlMs, holdMs }, sharedNowMs)))
  const endedAt = sharedNowMs()
  const cpu = process.cpuUsage(cpuBefore)
  const elu = performance.eventLoopUtilization(eluBefore)
  const failures = outcomes.filter((outcome) => outcome.status === 'rejected')
  await send({
    type: 'result',
    startedAt,
    endedAt,
    holds: outcomes.filter((outcome) => outcome.status === 'fulfilled').map((outcome) => outcome.value),
    gaveUp: failures.length,
    firstError: failures[0]?.reason?.message,
    cpuMs: (cpu.user + cpu.system) / 1000,
    eluActiveMs: elu.active,
    eluUtilization: elu.utilization
  })
}

async function close () {
  closingByItself()
  await locks?.close()
  process.disconnect()
}

serve({ config: prepare, start: run, close })
