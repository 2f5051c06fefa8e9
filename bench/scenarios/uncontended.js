'use strict'

// Throughput without contention: every worker loops acquire+release on its own key.

const { performance } = require('node:perf_hooks')
const { nowMs } = require('../clock')
const { latencySummary } = require('../stats')
const { resetCommandCounts, readCommandCounts, serverCpuSeconds } = require('../commands')

async function cycleUntil (locks, key, ttlMs, stopAt, latencies) {
  while (nowMs() < stopAt) {
    const startedAt = nowMs()
    await locks.release(await locks.acquire(key, ttlMs))
    latencies.push(nowMs() - startedAt)
  }
}

// Returns every cycle's latency in ms once all workers have finished their last cycle.
async function runWorkers (locks, { workers, ttlMs }, durationMs) {
  const stopAt = nowMs() + durationMs
  const latencies = []
  await Promise.all(Array.from({ length: workers }, (_, worker) =>
    cycleUntil(locks, `bench:u:${worker}`, ttlMs, stopAt, latencies)))
  return latencies
}

async function runUncontended (locks, servers, settings) {
  await runWorkers(locks, settings, settings.warmupMs)
  await resetCommandCounts(servers)

  const eluBefore = performance.eventLoopUtilization()
  const cpuBefore = process.cpuUsage()
  const redisCpuBefore = await serverCpuSeconds(servers)
  const startedAt = nowMs()
  const latencies = await runWorkers(locks, settings, settings.measureMs)
  const elapsedMs = nowMs() - startedAt
  const elu = performance.eventLoopUtilization(eluBefore)
  const cpu = process.cpuUsage(cpuBefore)
  const redisCpuSeconds = (await serverCpuSeconds(servers)) - redisCpuBefore
  const commands = await readCommandCounts(servers)

  const cycles = latencies.length
  return {
    cycles,
    elapsedMs,
    cyclesPerSec: cycles / (elapsedMs / 1000),
    latencyMs: latencySummary(latencies),
    // Main-thread time only: work a library pushes to other threads does not show here...
    eluUsPerCycle: (elu.active * 1000) / cycles,
    eventLoopUtilization: elu.utilization,
    // ...so process CPU time (all threads, user + system) is reported next to it.
    cpuUsPerCycle: (cpu.user + cpu.system) / cycles,
    // The other side of the bill: Redis's own CPU (all servers), which Lua scripts and
    // unbatched round trips drive up.
    redisCpuUsPerCycle: (redisCpuSeconds * 1e6) / cycles,
    commandsPerCycle: commands.total / cycles,
    evalsPerCycle: commands.evals / cycles,
    commandCalls: commands.byCommand
  }
}

module.exports = { runUncontended }
