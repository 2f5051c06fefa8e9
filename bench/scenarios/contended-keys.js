'use strict'

// Contention on many keys at once, as in a busy service: every key has a few tasks queued for
// it, and each holder keeps the lock only for one turn of the event loop. Where the contended
// case measures hand-off latency, this one measures what waiting costs a busy process: locks
// per second, and the event loop's and the process's time per lock.

const { performance } = require('node:perf_hooks')
const { setImmediate: nextTurn } = require('node:timers/promises')
const { nowMs } = require('../clock')
const { resetCommandCounts, readCommandCounts } = require('../commands')

// Every task takes its key `rounds` times; `holding` counts the holders of each key, so an
// overlap (two holders at once) is seen.
async function runTasks (locks, { keys, tasksPerKey, rounds, ttlMs }, prefix) {
  const holding = new Map()
  let overlaps = 0
  let acquired = 0
  await Promise.all(Array.from({ length: keys * tasksPerKey }, async (_, task) => {
    const key = `${prefix}:${task % keys}`
    for (let round = 0; round < rounds; round++) {
      const handle = await locks.acquire(key, ttlMs)
      const holders = (holding.get(key) ?? 0) + 1
      holding.set(key, holders)
      if (holders > 1) overlaps++
      acquired++
      await nextTurn()
      holding.set(key, holding.get(key) - 1)
      await locks.release(handle)
    }
  }))
  return { acquired, overlaps }
}

async function runContendedKeys (locks, servers, settings) {
  await runTasks(locks, { ...settings, rounds: 2 }, 'bench:k:warmup')
  await resetCommandCounts(servers)
  const eluBefore = performance.eventLoopUtilization()
  const cpuBefore = process.cpuUsage()
  const startedAt = nowMs()
  const { acquired, overlaps } = await runTasks(locks, settings, 'bench:k')
  const elapsedMs = nowMs() - startedAt
  const elu = performance.eventLoopUtilization(eluBefore)
  const cpu = process.cpuUsage(cpuBefore)
  const commands = await readCommandCounts(servers)
  return {
    acquired,
    elapsedMs,
    acquisitionsPerSec: acquired / (elapsedMs / 1000),
    eluUsPerAcquisition: (elu.active * 1000) / acquired,
    cpuUsPerAcquisition: (cpu.user + cpu.system) / acquired,
    commandsPerAcquisition: commands.total / acquired,
    evalsPerAcquisition: commands.evals / acquired,
    overlaps,
    commandCalls: commands.byCommand
  }
}

module.exports = { runContendedKeys }
