'use strict'

// npm run bench -- [--only name1,name2] [--quick]
//
// Runs every lock implementation against the same throwaway redis-server(s),
// case by case, all in this one process, then prints one table per case and
// writes bench/results.json.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { parseArgs } = require('node:util')
const { setTimeout: sleep } = require('node:timers/promises')
const adapters = require('./adapters')
const { startRedisServers } = require('./redis')
const { runUncontended } = require('./scenarios/uncontended')
const { runContended } = require('./scenarios/contended')
const { renderCase } = require('./report')

const RESULTS_FILE = path.join(__dirname, 'results.json')
const REDLOCK_NODES = 3

const FULL = {
  uncontended: { workers: 32, warmupMs: 500, measureMs: 2000 },
  contendedTasks: [10, 100, 1000],
  holdMs: 5,
  // Long enough that no hold ever expires, so every hand-off is a real release.
  ttlMs: 30_000,
  // Waiters give up after this long and the case reports a timeout. Polling
  // peers need 25-45 s for 1000 Redlock waiters; waiting that out would blow
  // the ~3 minute budget of the whole bench.
  caseTimeoutMs: 20_000
}
const QUICK = {
  ...FULL,
  uncontended: { workers: 32, warmupMs: 200, measureMs: 1000 },
  contendedTasks: [10, 100],
  caseTimeoutMs: 10_000
}
// A case that outlives its timeout by this factor is hung (waiters should have
// given up): abandon it rather than the whole bench.
const HARD_LIMIT_FACTOR = 1.5

function parseCli () {
  const { values } = parseArgs({
    options: { only: { type: 'string' }, quick: { type: 'boolean', default: false } }
  })
  const known = adapters.map((adapter) => adapter.name)
  const only = values.only ? values.only.split(',').map((name) => name.trim()) : known
  const unknown = only.filter((name) => !known.includes(name))
  if (unknown.length > 0) throw new Error(`unknown implementation(s): ${unknown.join(', ')}; known: ${known.join(', ')}`)
  return { only, quick: values.quick }
}

function casesFor (settings) {
  const { workers, measureMs } = settings.uncontended
  const uncontended = {
    kind: 'uncontended',
    title: `uncontended: ${workers} workers, one key each, ${measureMs / 1000} s`,
    run: (locks, servers) => runUncontended(locks, servers, { ...settings.uncontended, ttlMs: settings.ttlMs })
  }
  const contended = settings.contendedTasks.map((tasks) => ({
    kind: 'contended',
    title: `contended: ${tasks} tasks on one key, hold ${settings.holdMs} ms (ideal ${tasks * settings.holdMs} ms)`,
    run: (locks, servers) => runContended(locks, servers, { tasks, holdMs: settings.holdMs, ttlMs: settings.ttlMs })
  }))
  return [uncontended, ...contended]
}

async function withHardLimit (promise, ms) {
  const timer = new AbortController()
  const hung = sleep(ms, undefined, { signal: timer.signal }).then(() => {
    throw new Error(`abandoned after ${Math.round(ms / 1000)} s`)
  })
  try {
    return await Promise.race([promise, hung])
  } finally {
    timer.abort()
  }
}

// One implementation, one case, on freshly flushed servers with zeroed stats.
async function runCase (adapter, servers, testCase, settings) {
  await Promise.all(servers.map((server) => server.reset()))
  let locks = null
  try {
    locks = adapter.create({ urls: servers.map((server) => server.url), maxWaitMs: settings.caseTimeoutMs })
    const figures = await withHardLimit(testCase.run(locks, servers), settings.caseTimeoutMs * HARD_LIMIT_FACTOR)
    return { impl: adapter.name, ...figures }
  } catch (err) {
    return { impl: adapter.name, error: err.message }
  } finally {
    await locks?.close().catch(() => {})
  }
}

async function machineInfo (servers) {
  const cpus = os.cpus()
  return {
    date: new Date().toISOString(),
    node: process.version,
    redis: await servers[0].version(),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpus: cpus.length,
    cpuModel: cpus[0]?.model,
    totalMemGiB: Math.round(os.totalmem() / 2 ** 30)
  }
}

async function main () {
  const { only, quick } = parseCli()
  const settings = quick ? QUICK : FULL
  const selected = adapters.filter((adapter) => only.includes(adapter.name))
  for (const adapter of selected.filter((a) => a.unavailable)) {
    console.log(`note: skipping ${adapter.name}: ${adapter.unavailable}`)
  }
  const runnable = selected.filter((adapter) => !adapter.unavailable)
  const skipped = Object.fromEntries(selected.filter((a) => a.unavailable).map((a) => [a.name, a.unavailable]))

  const servers = await startRedisServers(1 + REDLOCK_NODES)
  try {
    const meta = { ...(await machineInfo(servers)), quick, settings, skipped }
    console.log(`node ${meta.node}, redis ${meta.redis}, ${meta.cpus} × ${meta.cpuModel}`)
    const topologies = [
      { name: 'single node', servers: servers.slice(0, 1) },
      { name: `redlock (${REDLOCK_NODES} masters)`, servers: servers.slice(1) }
    ]
    const results = []
    for (const topology of topologies) {
      const multiNode = topology.servers.length > 1
      const participants = runnable.filter((adapter) => !multiNode || adapter.multiNode)
      for (const adapter of runnable.filter((a) => !participants.includes(a))) {
        console.log(`\nnote: ${adapter.name} has no multi-node mode; skipped for ${topology.name}`)
      }
      if (participants.length === 0) continue
      for (const testCase of casesFor(settings)) {
        const rows = []
        for (const adapter of participants) rows.push(await runCase(adapter, topology.servers, testCase, settings))
        console.log(renderCase(`${topology.name} · ${testCase.title}`, testCase.kind, rows))
        results.push({ topology: topology.name, scenario: testCase.kind, title: testCase.title, rows })
      }
    }
    fs.writeFileSync(RESULTS_FILE, JSON.stringify({ meta, results }, null, 2) + '\n')
    console.log(`\nwrote ${path.relative(process.cwd(), RESULTS_FILE)}`)
  } finally {
    await Promise.all(servers.map((server) => server.stop()))
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
