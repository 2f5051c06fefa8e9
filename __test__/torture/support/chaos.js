'use strict'

// The faults the chaos tests apply to redis-server processes and to holder processes, and the
// bookkeeping that judges the run afterwards.

const path = require('node:path')
const Redis = require('ioredis')
const { ProcessPool } = require('./pool')
const { now, sleep } = require('./torture')

// The settings both chaos files give their worker processes.
const WORKER = path.join(__dirname, 'chaos-worker.js')
const WORKERS = 6
const TTL = 1000
const CONNECT_TIMEOUT = 1000
const COMMAND_TIMEOUT = 1000
const WAIT = 2000
// Scheduling slack on 2 busy cores; the bounds stay far below "hangs".
const MARGIN = 1500
const BOUNDS = {
  acquire: CONNECT_TIMEOUT + COMMAND_TIMEOUT + WAIT + MARGIN,
  release: CONNECT_TIMEOUT + COMMAND_TIMEOUT + MARGIN,
}
// A paused holder's watchdog runs as soon as the process does: the loss is due at once.
const ABORT_AFTER_RESUME_MS = 1000
// The share of operations that hold one of `longKeys` (if any) past the TTL, and for how long.
const LONG_SHARE = 0.2
const LONG_HOLD_MS = [TTL + 200, 3 * TTL]

/**
 * Starts the worker processes: each hammers `keys` on `target`, judged on `observer`, and now and
 * then holds one of `longKeys` for longer than the TTL.
 */
async function startChaosPool({ target, observer, keys, longKeys = [], seed }) {
  const pool = new ProcessPool(WORKER, WORKERS, (id) => ({
    id,
    target,
    observer,
    keys,
    longKeys,
    longShare: LONG_SHARE,
    longHoldMs: LONG_HOLD_MS,
    loops: 2,
    ttl: TTL,
    wait: WAIT,
    connectTimeout: CONNECT_TIMEOUT,
    commandTimeout: COMMAND_TIMEOUT,
    workMax: 5,
    acquireShare: 0.2,
    seed: seed + id,
    bounds: BOUNDS,
  }))
  await pool.ready()
  return pool
}

/** Pauses one random worker while it holds a key of `keys`, past the TTL. */
function pauseRandomHolder(pool, rng, { keys, holdId }) {
  return pauseHolder(pool, rng.int(0, WORKERS - 1), {
    key: rng.pick(keys),
    holdId,
    pauseMs: 2 * TTL + rng.int(0, 1000),
    holdingWithin: 2 * BOUNDS.acquire,
    heldWithin: TTL + COMMAND_TIMEOUT + 5000,
  })
}

/** Runs one command on `server` over a connection of its own, which it closes again. */
async function admin(server, ...args) {
  const client = new Redis({
    host: server.host,
    port: server.port,
    lazyConnect: true,
    connectTimeout: 2000,
    commandTimeout: 2000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  client.on('error', () => {})
  try {
    await client.connect()
    return await client.call(...args)
  } finally {
    client.disconnect()
  }
}

/**
 * Applies one fault to one redis-server and resolves what was done, with its start and end.
 * `kill-restart` loses every key (`save ""`); `downMs` is how long the server stays dead.
 */
async function faultServer(name, server, { rng, pauseMs = [300, 1500], downMs = [100, 600] }) {
  const startedAt = now()
  const detail = {}
  switch (name) {
    case 'pause-redis':
      detail.ms = rng.int(...pauseMs)
      server.pause()
      try {
        await sleep(detail.ms)
      } finally {
        server.resume()
      }
      break
    case 'kill-restart':
      detail.downMs = rng.int(...downMs)
      await server.kill('SIGKILL')
      detail.killedAt = now()
      await sleep(detail.downMs)
      await server.restart()
      detail.restartedAt = now()
      break
    case 'client-kill-normal':
      detail.killed = await admin(server, 'CLIENT', 'KILL', 'TYPE', 'normal')
      break
    case 'client-kill-pubsub':
      detail.killed = await admin(server, 'CLIENT', 'KILL', 'TYPE', 'pubsub')
      break
    case 'script-flush':
      await admin(server, 'SCRIPT', 'FLUSH')
      break
    default:
      throw new Error(`unknown fault ${name}`)
  }
  return { fault: name, port: server.port, startedAt: Math.round(startedAt), endedAt: Math.round(now()), ...detail }
}

/**
 * Makes worker `index` of `pool` take `key` and pauses the whole process (SIGSTOP) for `pauseMs`,
 * longer than the TTL, then resumes it and lets it write late. Resolves the worker's report.
 */
async function pauseHolder(pool, index, { key, holdId, pauseMs, holdingWithin, heldWithin }) {
  const worker = pool.workers[index]
  worker.send({ type: 'hold', key, holdId })
  const holding = await worker.next('holding', holdingWithin)
  if (holding.failed) return { fault: 'pause-holder', worker: index, key, skipped: holding.failed }
  pool.pause(index)
  const pausedAt = now()
  await sleep(pauseMs)
  pool.resume(index)
  const resumedAt = now()
  worker.send({ type: 'go' })
  const held = await worker.next('held', heldWithin)
  return {
    fault: 'pause-holder',
    worker: index,
    key,
    pauseMs,
    startedAt: Math.round(pausedAt),
    endedAt: Math.round(resumedAt),
    pausedAt,
    resumedAt,
    held,
  }
}

/** `w<worker>/<op>/f<fence>/a<acquiredAt>` back into its parts. */
function parseWho(who) {
  const [worker, op, fence, acquiredAt] = who.split('/')
  return { worker, op, fence: Number(fence.slice(1)), acquiredAt: Number(acquiredAt.slice(1)) }
}

/**
 * True if a lock on `key` taken at `acquiredAt` may have been wiped by a kill of its Redis before
 * `at`: it was taken before that server came back empty (or a replica that may have missed it
 * took over), and `at` is after the kill. Such a lock is no lock any more, and only fencing
 * protects what its holder does. A kill with `keys` wiped only those.
 */
function lostWithData(acquiredAt, at, kills, key) {
  return kills.some(({ killedAt, restartedAt, keys }) =>
    (!keys || keys.includes(key)) && acquiredAt < restartedAt && at > killedAt)
}

/** The workers' figures summed, with the lists concatenated. */
function sumStats(stats) {
  const total = { operations: 0, acquired: 0, accepted: 0, refusedTotal: 0, abortedInBody: 0, skippedWrites: 0, releasedFalse: 0, errors: {}, maxAcquireMs: 0, maxReleaseMs: 0 }
  for (const one of stats) {
    for (const name of ['operations', 'acquired', 'accepted', 'refusedTotal', 'abortedInBody', 'skippedWrites', 'releasedFalse']) total[name] += one[name]
    for (const [code, count] of Object.entries(one.errors)) total.errors[code] = (total.errors[code] ?? 0) + count
    total.maxAcquireMs = Math.max(total.maxAcquireMs, Math.round(one.maxAcquireMs))
    total.maxReleaseMs = Math.max(total.maxReleaseMs, Math.round(one.maxReleaseMs))
  }
  const all = (name) => stats.flatMap((one) => one[name].map((entry) => ({ worker: one.id, ...(typeof entry === 'object' ? entry : { entry }) })))
  return { total, unexpected: all('unexpected'), late: all('late'), overlaps: all('overlaps'), refused: all('refused'), aborted: all('aborted') }
}


/**
 * Everything the chaos tests judge, from the workers' reports, the fault timeline and the
 * fenced resource's logs. `kills` are the data-loss windows that excuse an overlap or a refused
 * write (pass [] where no kill may excuse anything). Nor is it an overlap to enter while a holder
 * is still inside whose signal had aborted: it knows it lost the lock, and writes nothing.
 */
async function judge({ results, resource, keys, kills }) {
  const exits = results.map(({ index, done, problem, exitedBy, exit, output }) => ({
    index, done: done !== null, problem, exitedBy, exit, output: done && exitedBy === 'self' && exit?.code === 0 ? '' : output,
  }))
  const badExits = exits.filter((entry) => !entry.done || entry.exitedBy !== 'self' || entry.exit?.code !== 0)
  const stats = sumStats(results.filter((result) => result.done).map((result) => result.done.stats))
  const abortedAt = new Map(stats.aborted.map(({ who, abortedAt }) => [who, abortedAt]))
  const othersAborted = (overlap) => overlap.others.every((other) => abortedAt.get(other) <= overlap.at)
  const excusedOverlap = (overlap) => overlap.others.every((other) =>
    abortedAt.get(other) <= overlap.at || lostWithData(parseWho(other).acquiredAt, overlap.at, kills, overlap.key))
  const overlaps = stats.overlaps.filter((overlap) => !excusedOverlap(overlap))
  const refused = stats.refused.filter((write) => !lostWithData(write.acquiredAt, write.writeAt, kills, write.key))
  // Fences the resource accepted, per key: increasing by construction of the script, so what
  // judges the locks is who was refused; this is for the report (how fences jumped at a restart).
  const history = {}
  const acrossKills = []
  for (const key of keys) {
    history[key] = await resource.accepted(key)
    const entries = history[key].map(({ fence, who }) => ({ fence, acquiredAt: parseWho(who).acquiredAt }))
    for (const { killedAt, restartedAt } of kills.filter((kill) => !kill.keys || kill.keys.includes(key))) {
      const before = entries.filter((entry) => entry.acquiredAt < killedAt).map((entry) => entry.fence)
      const after = entries.filter((entry) => entry.acquiredAt > restartedAt).map((entry) => entry.fence)
      if (before.length > 0 && after.length > 0) {
        acrossKills.push({ key, killedAt: Math.round(killedAt), lastBefore: Math.max(...before), firstAfter: Math.min(...after) })
      }
    }
  }
  return {
    exits,
    badExits,
    stats,
    overlaps,
    excusedOverlaps: stats.overlaps.length - overlaps.length,
    excusedByAbort: stats.overlaps.filter(othersAborted).length,
    refused,
    history,
    acrossKills,
  }
}

/**
 * The `using` holders whose signal aborted too late, or for another reason than a lost lock. Until
 * a holder's lease ends nobody else can take its key, so its signal must abort (ELOCKLOST) before
 * the key's next holder got it, unless the lock was lost with Redis's data (`kills`). Who held a
 * key when is read from the fenced resource's logs and from the aborted holders themselves.
 */
async function judgeAborts({ aborted, resource, keys, kills }) {
  const holders = {}
  for (const key of keys) {
    const accepted = (await resource.accepted(key)).map(({ who }) => who)
    const refused = (await resource.refused(key)).map((entry) => entry.split(' ')[1])
    const abortedHere = aborted.filter((hold) => hold.key === key).map(({ who }) => who)
    holders[key] = [...accepted, ...refused, ...abortedHere].map((who) => ({ who, acquiredAt: parseWho(who).acquiredAt }))
  }
  const wrong = []
  for (const hold of aborted) {
    const { acquiredAt } = parseWho(hold.who)
    const next = holders[hold.key]
      .filter((other) => other.who !== hold.who && other.acquiredAt > acquiredAt)
      .reduce((first, other) => (first === null || other.acquiredAt < first.acquiredAt ? other : first), null)
    if (hold.reasonCode !== 'ELOCKLOST') {
      wrong.push({ ...hold, why: `aborted with ${hold.reasonCode}` })
    } else if (next && next.acquiredAt < hold.abortedAt && !lostWithData(acquiredAt, next.acquiredAt, kills, hold.key)) {
      wrong.push({ ...hold, why: `${next.who} had the key ${Math.round(hold.abortedAt - next.acquiredAt)} ms before the abort` })
    }
  }
  return wrong
}

/** The report of one paused holder, and what was wrong with it. */
function judgeHold(entry, { abortWithinMs, expectRefused }) {
  const { held } = entry
  const wrong = []
  if (!held.write) wrong.push(`made no late write (${held.error ?? held.outcome})`)
  else if (expectRefused && held.write.accepted) wrong.push(`late write with fence ${held.fence} was accepted (last accepted ${held.write.last})`)
  if (held.abortedAt === null || held.abortedAt === undefined) wrong.push('signal never aborted after the resume')
  else if (held.abortedAt - entry.resumedAt > abortWithinMs) wrong.push(`signal aborted ${Math.round(held.abortedAt - entry.resumedAt)} ms after the resume`)
  if (held.abortedAt && held.reasonCode !== 'ELOCKLOST') wrong.push(`signal reason ${held.reason}`)
  if (held.outcome !== 'ELOCKLOST') wrong.push(`using ended with ${held.error ?? held.outcome}, not ELOCKLOST`)
  return {
    worker: entry.worker,
    key: entry.key,
    fence: held.fence,
    pauseMs: entry.pauseMs,
    lateWrite: held.write ? (held.write.accepted ? 'accepted' : `refused (last ${held.write.last})`) : null,
    abortedAfterResumeMs: held.abortedAt ? Math.round(held.abortedAt - entry.resumedAt) : null,
    outcome: held.outcome,
    wrong,
  }
}

/** One line per fault, times relative to `t0`: `kill-restart@5378ms :6380 down 388ms`. */
function describeTimeline(timeline, t0) {
  const one = (entry) => {
    const at = `${entry.fault}@${Math.round(entry.startedAt - t0)}ms`
    if (entry.fault === 'pause-holder') {
      return `${at} w${entry.worker} ${entry.key}${entry.skipped ? ` skipped (${entry.skipped})` : ` ${entry.pauseMs}ms`}`
    }
    const what = entry.ms !== undefined ? `${entry.ms}ms` : entry.downMs !== undefined ? `down ${entry.downMs}ms` : entry.killed !== undefined ? `${entry.killed} killed` : ''
    return `${at} :${entry.port} ${what}`.trim()
  }
  return timeline.map((entry) => (entry.faults ? `[${entry.faults.map(one).join(' + ')}]` : one(entry))).join(', ')
}

module.exports = {
  TTL,
  BOUNDS,
  ABORT_AFTER_RESUME_MS,
  startChaosPool,
  pauseRandomHolder,
  admin, faultServer, pauseHolder, parseWho, lostWithData, sumStats, judge, judgeAborts, judgeHold, describeTimeline }
