'use strict'

// Child process of rolling.js: ONE worker of a fleet in the middle of a rolling
// migration. It takes the hot key, holds it, releases it, and again, until the
// window ends. Protocol (IPC messages, all with a `type`):
//
//   parent → { type: 'config', kind, url, key, warmupKey, holdMs, ttlMs }
//   child  → { type: 'ready' }                 connected, scripts loaded
//   parent → { type: 'clock', t0 }             (a few times) child → { type: 'clock', t0, childNow }
//   parent → { type: 'start', startsAt, endsAt }   the window, on the shared clock
//   child  → { type: 'result', holds, calls, gaveUp }
//
// Then it closes its connections and exits by itself. `kind` is one of:
// - `redlock`: redlock 4 with its default settings (10 retries, 200 ms apart,
//   ±100 ms of jitter), as an old worker runs it; a lock() that runs out of
//   retries is counted and called again, as a job queue would retry the job;
// - `redlock-20ms`: the same with 100 retries 20 ms apart (±10 ms);
// - `nx-spin`: the hand-rolled poller (SET NX PX, 20 ms sleep), adapters/nx-spin.js;
// - `ironlock`: a Locker; its wait ends with the window (an AbortSignal).

const { setTimeout: sleep } = require('node:timers/promises')
const Redis = require('ioredis')
const Redlock = require('redlock')
const nxSpin = require('../adapters/nx-spin')
const { sharedNowMs } = require('../clock')
const { send, serve, closingByItself } = require('../child')

// A wait never needs longer than the window; the signal ends it at the window's end.
const LONGEST_WAIT_MS = 60_000

// redlock 4 on one node, with `settings` over its defaults.
function redlockWorker (url, settings) {
  const client = new Redis(url)
  const redlock = new Redlock([client], settings)
  return {
    async lock (key, ttlMs) {
      try {
        const lock = await redlock.lock(key, ttlMs)
        return () => lock.unlock()
      } catch (err) {
        if (err instanceof Redlock.LockError) return null
        throw err
      }
    },
    close: () => client.quit()
  }
}

// Each kind: { lock(key, ttlMs, signal) → release function, or null when the
// call gave up (out of retries); close() }. A lock() the signal ended rejects.
const KINDS = {
  redlock: ({ url }) => redlockWorker(url, {}),
  // What a migration under way can do: the old fleet polls ten times as often,
  // for as long in all (100 retries, 20 ms apart, ±10 ms).
  'redlock-20ms': ({ url }) => redlockWorker(url, { retryCount: 100, retryDelay: 20, retryJitter: 10 }),
  'nx-spin' ({ url }) {
    const locks = nxSpin.create({ urls: [url], maxWaitMs: LONGEST_WAIT_MS })
    return {
      async lock (key, ttlMs, signal) {
        const handle = await locks.acquire(key, ttlMs, signal)
        return () => locks.release(handle)
      },
      close: () => locks.close()
    }
  },
  ironlock ({ url }) {
    const { Locker } = require('../..')
    const locker = new Locker(url)
    return {
      async lock (key, ttlMs, signal) {
        const lock = await locker.acquire(key, { ttl: ttlMs, wait: LONGEST_WAIT_MS, signal })
        return () => lock.release()
      },
      close: () => locker.close()
    }
  }
}

let worker = null
let config = null

async function prepare (received) {
  config = received
  const create = KINDS[config.kind]
  if (!create) throw new Error(`unknown worker kind ${config.kind}`)
  worker = create(config)
  // Connections and scripts, on a key of this worker's own.
  const release = await worker.lock(config.warmupKey, config.ttlMs)
  await release()
  await send({ type: 'ready' })
}

// Acquire, hold, release until the window ends. A hold records when the worker
// started wanting the lock (its first lock() call, however many gave up), when
// it got it and when it started releasing it.
async function run ({ startsAt, endsAt }) {
  const { key, holdMs, ttlMs } = config
  const windowEnd = new AbortController()
  const stopAt = setTimeout(() => windowEnd.abort(), endsAt - sharedNowMs())
  await sleep(Math.max(0, startsAt - sharedNowMs()))
  const holds = []
  let calls = 0
  let gaveUp = 0
  while (!windowEnd.signal.aborted) {
    const wantedAt = sharedNowMs()
    let release = null
    while (!release && !windowEnd.signal.aborted) {
      calls++
      release = await worker.lock(key, ttlMs, windowEnd.signal).catch((err) => {
        if (windowEnd.signal.aborted) return null
        throw err
      })
      if (!release && !windowEnd.signal.aborted) gaveUp++
    }
    if (!release) break
    // A redlock 4 call cannot be called off: it may win after the window.
    if (windowEnd.signal.aborted) {
      await release()
      break
    }
    const acquiredAt = sharedNowMs()
    await sleep(holdMs)
    const releaseStartedAt = sharedNowMs()
    await release()
    holds.push({ wantedAt, acquiredAt, releaseStartedAt })
  }
  clearTimeout(stopAt)
  await send({ type: 'result', holds, calls, gaveUp })
  closingByItself()
  await worker.close()
  process.disconnect()
}

serve({ config: prepare, start: run })
