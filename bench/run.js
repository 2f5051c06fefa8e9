'use strict'

// npm run bench -- [--only name1,name2] [--case uncontended,contended,contended-keys,contended-processes,foreign]
//                   [--topology single,redlock,cluster,replicated,sentinel] [--tasks 100] [--quick]
//
// Runs every lock implementation against the same throwaway redis-server(s) of
// each topology (topologies/), case by case, all in this one process (only the
// contended-across-processes case and the mixed fleets and rolling migration of
// the foreign-holder case run in child processes),
// then prints one table per case and writes bench/results.json.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { parseArgs } = require('node:util')
const { setTimeout: sleep } = require('node:timers/promises')
const adapters = require('./adapters')
const floor = require('./floor')
const topologies = require('./topologies')
const { runUncontended } = require('./scenarios/uncontended')
const { runContended, KEY: CONTENDED_KEY } = require('./scenarios/contended')
const { runContendedKeys } = require('./scenarios/contended-keys')
const { runContendedProcesses, contendedProcessesLimitMs } = require('./scenarios/contended-processes')
const { runForeignHandOff, runMixedFleets, FLEET } = require('./scenarios/foreign')
const { runRollingMigration, ROLLING } = require('./scenarios/rolling')
const { renderCase } = require('./report')
const { compareTopologies, renderComparison } = require('./topology-comparison')

const RESULTS_FILE = path.join(__dirname, 'results.json')
const OURS = 'ironlock'
const CASE_GROUPS = ['uncontended', 'contended', 'contended-keys', 'contended-processes', 'foreign']

const FULL = {
  uncontended: { workers: 32, warmupMs: 500, measureMs: 2000 },
  // The same loop with one worker alone: the latency of one cycle, nothing to batch.
  uncontendedAlone: { workers: 1 },
  contendedTasks: [10, 100, 1000],
  // Many keys at once, each held for one turn of the event loop.
  contendedKeys: { keys: 32, tasksPerKey: 8, rounds: 40 },
  // The same, with the waiters spread over child processes (same in --quick).
  contendedProcesses: { processes: 4, tasksPerProcess: 25 },
  holdMs: 5,
  // Long enough that no hold ever expires, so every hand-off is a real release.
  ttlMs: 30_000,
  // Waiters give up after this long and the case reports a timeout. Polling
  // peers need 25-45 s for 1000 Redlock waiters; waiting that out would blow
  // the ~3 minute budget of the whole bench.
  caseTimeoutMs: 20_000,
  foreign: {
    // Hand-offs from a foreign holder, per implementation and topology.
    rounds: 200,
    // Mixed-fleet runs per fleet, and the cap on one run (a capped run counts as the cap).
    fleetRuns: 5,
    fleetCapMs: 25_000,
    // A rolling migration on one key: old and ironlock workers, each a process.
    rolling: { workersPerSide: 4, windowMs: 5000, runs: 5 }
  }
}
const QUICK = {
  ...FULL,
  uncontended: { workers: 32, warmupMs: 200, measureMs: 1000 },
  contendedTasks: [10, 100],
  contendedKeys: { keys: 32, tasksPerKey: 8, rounds: 10 },
  caseTimeoutMs: 10_000,
  foreign: { rounds: 50, fleetRuns: 3, fleetCapMs: 25_000, rolling: { workersPerSide: 4, windowMs: 2000, runs: 3 } }
}
// A case that outlives its timeout by this factor is hung (waiters should have
// given up): abandon it rather than the whole bench.
const HARD_LIMIT_FACTOR = 1.5

function parseCli () {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      case: { type: 'string' },
      topology: { type: 'string' },
      tasks: { type: 'string' },
      quick: { type: 'boolean', default: false }
    }
  })
  const only = listOption(values.only, adapters.map((adapter) => adapter.name), 'implementation')
  const groups = listOption(values.case, CASE_GROUPS, 'case')
  const topologyKeys = listOption(values.topology, topologies.map((topology) => topology.key), 'topology')
  const tasks = values.tasks?.split(',').map((count) => {
    const tasks = Number(count)
    if (!Number.isInteger(tasks) || tasks < 1) throw new Error(`--tasks: not a positive integer: ${count}`)
    return tasks
  })
  return { only, groups, topologyKeys, tasks, quick: values.quick }
}

// A comma-separated option; all of `known` when it is not given.
function listOption (value, known, what) {
  const names = value ? value.split(',').map((name) => name.trim()) : known
  const unknown = names.filter((name) => !known.includes(name))
  if (unknown.length > 0) throw new Error(`unknown ${what}(s): ${unknown.join(', ')}; known: ${known.join(', ')}`)
  return names
}

// The cases of one topology (its `key`). A case with `run` is run once per
// implementation; one with `runAll` compares fleets rather than implementations
// and runs once. `needsOurs`: the case measures ironlock, so it runs only when
// ironlock does. `topologies`: where the case runs, when not everywhere.
function casesFor (settings, topology) {
  const { measureMs } = settings.uncontended
  const uncontended = [settings.uncontended, { ...settings.uncontended, ...settings.uncontendedAlone }].map((loop) => ({
    kind: 'uncontended',
    group: 'uncontended',
    title: loop.workers === 1
      ? `uncontended: 1 worker alone, ${measureMs / 1000} s`
      : `uncontended: ${loop.workers} workers, one key each, ${measureMs / 1000} s`,
    run: (locks, deployment) => runUncontended(locks, deployment.servers, { ...loop, ttlMs: settings.ttlMs })
  }))
  const contended = settings.contendedTasks.map((tasks) => ({
    kind: 'contended',
    group: 'contended',
    title: `contended: ${tasks} tasks on one key, hold ${settings.holdMs} ms (ideal ${tasks * settings.holdMs} ms)`,
    // Measured first, as what the implementations' walls are compared with; it
    // PINGs the servers of the key the case contends.
    reference: floor,
    key: CONTENDED_KEY,
    run: (locks, deployment) => runContended(locks, deployment, { tasks, holdMs: settings.holdMs, ttlMs: settings.ttlMs })
  }))
  const many = settings.contendedKeys
  const contendedKeys = {
    kind: 'contended-keys',
    group: 'contended-keys',
    title: `contended on many keys: ${many.keys} keys × ${many.tasksPerKey} tasks × ${many.rounds} rounds, ` +
      'each held for one event-loop turn',
    run: (locks, deployment) => runContendedKeys(locks, deployment.servers, { ...settings.contendedKeys, ttlMs: settings.ttlMs })
  }
  const { processes, tasksPerProcess } = settings.contendedProcesses
  const runCapMs = settings.caseTimeoutMs * HARD_LIMIT_FACTOR
  const contendedProcesses = {
    kind: 'contended-processes',
    group: 'contended-processes',
    title: `contended across processes: ${processes} processes × ${tasksPerProcess} waiters on one key, ` +
      `hold ${settings.holdMs} ms (ideal ${processes * tasksPerProcess * settings.holdMs} ms)`,
    // The children own their adapters, so the runner creates none; the scenario
    // kills a child still running at runCapMs itself, well before this limit.
    limitMs: contendedProcessesLimitMs(runCapMs),
    runAdapter: (adapter, deployment) => runContendedProcesses(adapter, deployment, {
      processes,
      tasksPerProcess,
      holdMs: settings.holdMs,
      ttlMs: settings.ttlMs,
      maxWaitMs: settings.caseTimeoutMs,
      runCapMs
    })
  }
  const { rounds, fleetRuns, fleetCapMs } = settings.foreign
  const holder = topology === 'redlock' ? 'an @sesamecare-oss/redlock holder' : 'a hand-rolled SET NX PX holder'
  const handOff = {
    kind: 'foreign',
    group: 'foreign',
    needsOurs: true,
    // Its holders and fleets are built on node URLs, not on a Cluster client.
    topologies: ['single', 'redlock'],
    title: `foreign holders: hand-off from ${holder}, ${rounds} rounds`,
    // Rounds run one after another, each some 20-50 ms: allow far more than that.
    limitMs: Math.max(settings.caseTimeoutMs * HARD_LIMIT_FACTOR, rounds * 250),
    run: (locks, deployment) => runForeignHandOff(locks, deployment.servers, { rounds })
  }
  const fleet = {
    kind: 'fleet',
    group: 'foreign',
    needsOurs: true,
    topologies: ['redlock'],
    title: `foreign holders: mixed fleet, ${FLEET.workers} workers × ${FLEET.rounds} rounds on one key, ` +
      `hold ${FLEET.holdMs} ms, ${fleetRuns} runs per fleet, cap ${fleetCapMs / 1000} s`,
    runAll: (deployment) => runMixedFleets(deployment.servers, { runs: fleetRuns, capMs: fleetCapMs })
  }
  const { workersPerSide, windowMs, runs } = settings.foreign.rolling
  const rolling = {
    kind: 'rolling',
    group: 'foreign',
    needsOurs: true,
    topologies: ['single'],
    title: `foreign holders: rolling migration, ${workersPerSide} old + ${workersPerSide} ironlock processes on one key, ` +
      `hold ${ROLLING.holdMs} ms, ${windowMs / 1000} s windows, ${runs} runs per mix`,
    runAll: (deployment) => runRollingMigration(deployment.servers, settings.foreign.rolling)
  }
  return [...uncontended, ...contended, contendedKeys, contendedProcesses, handOff, fleet, rolling]
    .filter((testCase) => !testCase.topologies || testCase.topologies.includes(topology))
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

// The adapter's connection options: the deployment's, except that a reference
// (the floor) reaches only the servers of the case's key, as a plain client.
async function connectionFor (adapter, deployment, testCase) {
  if (!adapter.reference) return { urls: deployment.urls, cluster: deployment.cluster, sentinel: deployment.sentinel }
  const servers = await deployment.serversOf(testCase.key)
  return { urls: servers.map((server) => server.url), cluster: false }
}

// One implementation, one case, on freshly flushed servers with zeroed stats.
async function runCase (adapter, deployment, testCase, settings) {
  await Promise.all(deployment.servers.map((server) => server.reset()))
  let locks = null
  try {
    const limitMs = testCase.limitMs ?? settings.caseTimeoutMs * HARD_LIMIT_FACTOR
    let running
    if (testCase.runAdapter) {
      running = testCase.runAdapter(adapter, deployment)
    } else {
      const connection = await connectionFor(adapter, deployment, testCase)
      locks = adapter.create({ ...connection, maxWaitMs: settings.caseTimeoutMs })
      running = testCase.run(locks, deployment)
    }
    const figures = await withHardLimit(running, limitMs)
    return { impl: adapter.name, ...figures }
  } catch (err) {
    return { impl: adapter.name, error: err.message }
  } finally {
    await locks?.close().catch(() => {})
  }
}

async function runEach (participants, deployment, testCase, settings) {
  const rows = []
  const reference = testCase.reference && await runCase(testCase.reference, deployment, testCase, settings)
  for (const adapter of participants) rows.push(await runCase(adapter, deployment, testCase, settings))
  if (!reference) return rows
  const floorMs = reference.error ? undefined : reference.wallMs
  for (const row of [reference, ...rows]) row.wallOverFloor = row.wallMs / floorMs
  return [{ ...reference, reference: true }, ...rows]
}

// A case that is not per implementation: its rows are its own, or one error row.
async function runFleets (deployment, testCase) {
  try {
    return await testCase.runAll(deployment)
  } catch (err) {
    return [{ impl: testCase.kind, error: err.message }]
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

// ironlock on each topology that says which ones it should match, against each of them that
// ran too: printed, and returned for results.json.
function compareRanTopologies (topologyKeys, results) {
  const ran = topologies.filter((topology) => topologyKeys.includes(topology.key))
  return ran.flatMap((topology) => ran.filter((base) => topology.comparedWith?.includes(base.key)).map((base) => {
    const cases = compareTopologies(results, topology, base)
    console.log(renderComparison(topology, base, cases))
    return { topology: topology.key, comparedWith: base.key, impl: OURS, cases }
  }))
}

async function main () {
  const { only, groups, topologyKeys, tasks, quick } = parseCli()
  const settings = { ...(quick ? QUICK : FULL), ...(tasks && { contendedTasks: tasks }) }
  const selected = adapters.filter((adapter) => only.includes(adapter.name))
  for (const adapter of selected.filter((a) => a.unavailable)) {
    console.log(`note: skipping ${adapter.name}: ${adapter.unavailable}`)
  }
  const runnable = selected.filter((adapter) => !adapter.unavailable)
  const skipped = Object.fromEntries(selected.filter((a) => a.unavailable).map((a) => [a.name, a.unavailable]))

  let meta = null
  const results = []
  for (const topology of topologies.filter((each) => topologyKeys.includes(each.key))) {
    const participants = runnable.filter((adapter) => topology.admits(adapter))
    for (const adapter of runnable.filter((a) => !participants.includes(a))) {
      console.log(`\nnote: ${adapter.name} does not run on ${topology.name}; skipped there`)
    }
    const cases = casesFor(settings, topology.key).filter((testCase) => groups.includes(testCase.group))
    if (participants.length === 0 || cases.length === 0) continue
    // Each topology's servers run only while its cases do.
    const deployment = await topology.start()
    try {
      if (!meta) {
        meta = { ...(await machineInfo(deployment.servers)), quick, cases: groups, topologies: topologyKeys, settings, skipped }
        console.log(`node ${meta.node}, redis ${meta.redis}, ${meta.cpus} × ${meta.cpuModel}`)
      }
      for (const testCase of cases) {
        if (testCase.needsOurs && !participants.some((adapter) => adapter.name === OURS)) {
          console.log(`\nnote: ${topology.name} · ${testCase.title}: measures ${OURS}, which is not running; skipped`)
          continue
        }
        const rows = testCase.runAll
          ? await runFleets(deployment, testCase)
          : await runEach(participants, deployment, testCase, settings)
        console.log(renderCase(`${topology.name} · ${testCase.title}`, testCase.kind, rows))
        results.push({ topology: topology.name, topologyKey: topology.key, scenario: testCase.kind, title: testCase.title, rows })
      }
    } finally {
      await deployment.stop()
    }
  }
  if (!meta) {
    console.log('\nnothing to run: no selected implementation or case runs on the selected topologies')
    return
  }
  const comparisons = compareRanTopologies(topologyKeys, results)
  fs.writeFileSync(RESULTS_FILE, JSON.stringify({ meta, results, comparisons }, null, 2) + '\n')
  console.log(`\nwrote ${path.relative(process.cwd(), RESULTS_FILE)}`)
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
