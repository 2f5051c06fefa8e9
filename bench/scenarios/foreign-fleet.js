'use strict'

// Child process of foreign.js: runs ONE mixed fleet and reports.
//
// Receives { urls, fleet: { ironlock, sesame }, key, rounds, holdMs, ttlMs, settings, capMs }
// and replies { wallMs, acquired, overlaps, longestGapMs, capped }. Each worker has its own
// ioredis clients, as separate processes would: redlock instances sharing a
// connection would see one consistent command order on every node, and split
// votes (the cause of redlock's stalls) would become artificially rare.
// At the cap it reports what it has and exits: redlock waiters with
// `retryCount: -1` cannot be called off any other way.

const { setTimeout: sleep } = require('node:timers/promises')
const Redis = require('ioredis')
const { Redlock: SesameRedlock } = require('@sesamecare-oss/redlock')
const IronlockRedlock = require('../../lib/redlock').default
const { nowMs } = require('../clock')

function sesameWorker (urls, settings) {
  const redlock = new SesameRedlock(urls.map((url) => new Redis(url)), settings)
  // Every lost round is emitted as 'error'; without a listener it would throw.
  redlock.on('error', () => {})
  return { kind: 'sesame-redlock', redlock, close: () => redlock.quit() }
}

function ironlockWorker (urls, settings) {
  // The shim only reads the clients' options and opens its own connections, so
  // its clients never need to connect.
  const clients = urls.map((url) => new Redis(url, { lazyConnect: true }))
  const redlock = new IronlockRedlock(clients, settings)
  return {
    kind: 'ironlock',
    redlock,
    // Not redlock.quit(): it would connect the lazy clients only to quit them.
    close: async () => {
      await redlock.locker.close()
      for (const client of clients) client.disconnect()
    }
  }
}

// Each worker: acquire, hold, release, `rounds` times. `state.inside` counts
// holders inside the critical section; a correct lock keeps it at 0 or 1.
async function work (worker, state, { key, rounds, holdMs, ttlMs }) {
  for (let round = 0; round < rounds; round++) {
    const lock = await worker.redlock.acquire([key], ttlMs)
    if (state.inside > 0) state.overlaps++
    state.inside++
    state.acquired++
    noteGap(state, nowMs())
    await sleep(holdMs)
    state.inside--
    await lock.release()
  }
}

// The longest time without any acquisition: a stall of about one TTL is split
// redlock votes waiting to expire.
function noteGap (state, at) {
  state.longestGapMs = Math.max(state.longestGapMs, at - state.lastAcquiredAt)
  state.lastAcquiredAt = at
}

// Connections and scripts, on a key of each worker's own: the measured run then
// starts with every worker ready, as a long-running fleet would be.
async function warmUp (workers, { key, ttlMs }) {
  await Promise.all(workers.map(async (worker, index) => {
    const lock = await worker.redlock.acquire([`${key}:warmup:${index}`], ttlMs)
    await lock.release()
  }))
}

async function runFleet ({ urls, fleet, key, rounds, holdMs, ttlMs, settings, capMs }) {
  const workers = [
    ...Array.from({ length: fleet.ironlock }, () => ironlockWorker(urls, settings)),
    ...Array.from({ length: fleet.sesame }, () => sesameWorker(urls, settings))
  ]
  await warmUp(workers, { key, ttlMs })

  const startedAt = nowMs()
  const state = { inside: 0, overlaps: 0, acquired: 0, lastAcquiredAt: startedAt, longestGapMs: 0 }
  const finished = Promise.all(workers.map((worker) => work(worker, state, { key, rounds, holdMs, ttlMs })))
  const cap = sleep(capMs, 'capped', { ref: false })
  if (await Promise.race([finished.then(() => 'done'), cap]) === 'capped') {
    noteGap(state, startedAt + capMs)
    await send({ wallMs: capMs, ...figures(state), capped: true })
    process.exit(0)
  }
  const wallMs = nowMs() - startedAt
  // Reported before closing: the parent gives the close a few seconds, and a
  // process that then still has not exited left a connection or timer open.
  await send({ wallMs, ...figures(state), capped: false })
  await Promise.all(workers.map((worker) => worker.close()))
  process.disconnect()
}

function figures ({ acquired, overlaps, longestGapMs }) {
  return { acquired, overlaps, longestGapMs }
}

function send (message) {
  return new Promise((resolve, reject) => process.send(message, (err) => (err ? reject(err) : resolve())))
}

process.once('message', (config) => {
  runFleet(config).catch(async (err) => {
    await send({ error: err.stack ?? String(err) }).catch(() => {})
    process.exit(1)
  })
})
