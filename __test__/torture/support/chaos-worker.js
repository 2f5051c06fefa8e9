'use strict'

// One of the processes that hammer a few keys while the test faults their Redis (chaos-*.test.js).
// argv[2]: JSON config (see the test). Every critical section registers itself on the observer,
// so an overlap is caught as it happens, and writes the fenced resource with `lock.fence`. A share
// of the operations (`longShare`) takes one of `longKeys` with `using` and holds it past the TTL
// (`longHoldMs`), so that its lease is extended while the test faults Redis; every `using` whose
// signal aborts is reported with when.
//
// Messages from the test: 'hold' (quiesce, then hold one key and wait: the test pauses this
// process past the TTL), 'go' (resumed: make the late write), 'inflight', 'stop'.
// Messages to the test: 'ready', 'holding', 'held', 'inflight', 'done' (the figures).

const { Locker, LockError } = require('../../..')
const { FencedResource } = require('./fenced-resource')
const { random, now, sleep, abortTime, LOCK_ERROR_CODES, describeError } = require('./torture')

const config = JSON.parse(process.argv[2])
const rng = random(config.seed)
const locker = new Locker(config.target, {
  connectTimeout: config.connectTimeout,
  commandTimeout: config.commandTimeout,
})
const resource = new FencedResource(config.observer)

const stats = {
  id: config.id,
  pid: process.pid,
  operations: 0,
  acquired: 0,
  errors: {},
  unexpected: [],
  late: [],
  overlaps: [],
  aborted: [],
  accepted: 0,
  refused: [],
  refusedTotal: 0,
  abortedInBody: 0,
  skippedWrites: 0,
  releasedFalse: 0,
  maxAcquireMs: 0,
  maxReleaseMs: 0,
}
const inflight = new Map()
let sequence = 0
let stopping = false
let quiesce = null
let holds = Promise.resolve()

function record(error) {
  if (error instanceof LockError && LOCK_ERROR_CODES.includes(error.code)) {
    stats.errors[error.code] = (stats.errors[error.code] ?? 0) + 1
  } else if (stats.unexpected.length < 20) {
    stats.unexpected.push(describeError(error))
  }
}

// `who` names the holder in the observer's logs: worker, sequence, fence, acquisition time.
function holder(op, lock, acquiredAt) {
  return `w${config.id}/${op}/f${lock.fence}/a${Math.round(acquiredAt)}`
}

// When and why a holder's signal aborted: the test holds it to the next holder of the key.
function watchAbort(signal, key, who, acquiredAt) {
  signal.addEventListener('abort', () => {
    if (stats.aborted.length < 500) stats.aborted.push({ key, who, acquiredAt, abortedAt: now(), reasonCode: signal.reason?.code ?? null })
  }, { once: true })
}

async function criticalSection(key, lock, signal, who, acquiredAt, holdMs) {
  const others = await resource.enter(key, who)
  if (others.length > 0 && stats.overlaps.length < 200) stats.overlaps.push({ key, who, others, at: now() })
  try {
    await sleep(holdMs)
    // A holder that knows it lost the lock does not write; one that does not know is fenced off.
    if (signal?.aborted) {
      stats.skippedWrites += 1
      return
    }
    const write = await resource.write(key, lock.fence, who)
    if (write.accepted) stats.accepted += 1
    else {
      stats.refusedTotal += 1
      if (stats.refused.length < 200) stats.refused.push({ key, fence: lock.fence, last: write.last, acquiredAt, writeAt: now(), who })
    }
  } finally {
    await resource.leave(key, who)
  }
}

async function operation() {
  const op = ++sequence
  const long = config.longKeys.length > 0 && rng() < config.longShare
  const key = rng.pick(long ? config.longKeys : config.keys)
  // A hold past the TTL needs the extensions only `using` makes.
  const useUsing = long || rng() >= config.acquireShare
  const holdMs = long ? rng.int(...config.longHoldMs) : rng.int(0, config.workMax)
  const startedAt = now()
  const state = { key, kind: useUsing ? 'using' : 'acquire', startedAt, phase: 'acquiring' }
  inflight.set(op, state)
  let acquiredAt = null
  let bodyEndedAt = null
  const options = { ttl: config.ttl, wait: config.wait }
  try {
    if (useUsing) {
      await locker.using(key, options, async (signal, lock) => {
        acquiredAt = now()
        state.phase = 'body'
        stats.acquired += 1
        const who = holder(op, lock, acquiredAt)
        watchAbort(signal, key, who, acquiredAt)
        try {
          await criticalSection(key, lock, signal, who, acquiredAt, holdMs)
        } finally {
          if (signal.aborted) stats.abortedInBody += 1
          bodyEndedAt = now()
          state.phase = 'releasing'
        }
      })
    } else {
      const lock = await locker.acquire(key, options)
      acquiredAt = now()
      state.phase = 'body'
      stats.acquired += 1
      try {
        await criticalSection(key, lock, null, holder(op, lock, acquiredAt), acquiredAt, holdMs)
      } finally {
        bodyEndedAt = now()
        state.phase = 'releasing'
        if (!(await locker.release(lock))) stats.releasedFalse += 1
      }
    }
  } catch (error) {
    record(error)
  } finally {
    inflight.delete(op)
  }
  const settledAt = now()
  stats.operations += 1
  const acquireMs = (acquiredAt ?? settledAt) - startedAt
  const releaseMs = acquiredAt === null ? 0 : settledAt - bodyEndedAt
  stats.maxAcquireMs = Math.max(stats.maxAcquireMs, acquireMs)
  stats.maxReleaseMs = Math.max(stats.maxReleaseMs, releaseMs)
  if ((acquireMs > config.bounds.acquire || releaseMs > config.bounds.release) && stats.late.length < 20) {
    stats.late.push({ key, kind: state.kind, startedAt: Math.round(startedAt), acquireMs: Math.round(acquireMs), releaseMs: Math.round(releaseMs) })
  }
}

async function loop() {
  while (!stopping) {
    if (quiesce) await quiesce.promise
    if (stopping) break
    await operation()
  }
}

// The late holder: it takes the key, tells the test, and is paused (SIGSTOP) past the TTL. Once
// resumed it writes without looking at the signal, as a holder that never learned of the pause
// would; the fenced resource must refuse that write, and the signal must have aborted.
async function hold({ key, holdId, waitForGo }) {
  const result = { type: 'held', holdId, key }
  try {
    await locker.using(key, { ttl: config.ttl, wait: config.wait * 2 }, async (signal, lock) => {
      result.fence = lock.fence
      result.acquiredAt = now()
      result.expiresAt = lock.expiresAt
      process.send({ type: 'holding', holdId, key, fence: lock.fence, acquiredAt: result.acquiredAt, expiresAt: lock.expiresAt })
      await waitForGo
      result.resumedAt = now()
      result.abortedBeforeWrite = signal.aborted
      result.write = await resource.write(key, lock.fence, `w${config.id}/hold${holdId}/f${lock.fence}/a${Math.round(result.acquiredAt)}`)
      result.abortedAt = await abortTime(signal, config.ttl + config.commandTimeout + 2000)
      result.reason = signal.reason ? describeError(signal.reason) : null
      result.reasonCode = signal.reason?.code ?? null
    })
    result.outcome = 'resolved'
  } catch (error) {
    result.outcome = error?.code ?? describeError(error)
    result.error = describeError(error)
    // Never got the lock: the test is waiting for 'holding' and must hear why not.
    if (result.fence === undefined) process.send({ type: 'holding', holdId, key, failed: result.error })
  }
  result.settledAt = now()
  process.send(result)
}

process.on('message', (message) => {
  if (message.type === 'hold') {
    let release
    quiesce = { promise: new Promise((resolve) => { release = resolve }) }
    let go
    const waitForGo = new Promise((resolve) => { go = resolve })
    quiesce.go = go
    holds = holds.then(async () => {
      // Nothing else of this process may be inside a critical section while it is paused.
      while (inflight.size > 0) await sleep(5)
      await hold({ key: message.key, holdId: message.holdId, waitForGo })
      quiesce = null
      release()
    })
  } else if (message.type === 'go') {
    quiesce?.go()
  } else if (message.type === 'inflight') {
    process.send({ type: 'inflight', operations: [...inflight.values()].map((state) => ({ ...state, ageMs: Math.round(now() - state.startedAt) })) })
  } else if (message.type === 'stop') {
    stopping = true
    quiesce?.go()
    finish()
  }
})

let loops
async function finish() {
  await loops
  await holds
  await locker.close()
  resource.close()
  process.send({ type: 'done', stats }, () => process.disconnect())
}

loops = Promise.all(Array.from({ length: config.loops }, loop))
process.send({ type: 'ready' })
