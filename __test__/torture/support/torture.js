'use strict'

// What every torture test shares: the size it runs at, a seeded random source, one clock for
// every process, and a way to print figures that shows up in jest's output.
//
// Sizes: `npm test` runs the default sizes (the whole directory in a few minutes);
// `npm run torture` sets IRONLOCK_TORTURE=soak and the same files run longer and bigger.
// IRONLOCK_TORTURE_SEED=<n> replays one run's choices of faults, keys and timings.

const { performance } = require('node:perf_hooks')

const SOAK = process.env.IRONLOCK_TORTURE === 'soak'

/** `normal` under `npm test`, `soak` under `npm run torture`. */
function size(normal, soak) {
  return SOAK ? soak : normal
}

const SEED = Number(process.env.IRONLOCK_TORTURE_SEED) || (Math.floor(Math.random() * 0x7fffffff) + 1)

/** mulberry32: small, fast, and the same sequence for the same seed in every process. */
function random(seed = SEED) {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  next.int = (min, max) => min + Math.floor(next() * (max - min + 1))
  next.pick = (items) => items[Math.floor(next() * items.length)]
  next.shuffle = (items) => {
    const copy = [...items]
    for (let i = copy.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1))
      ;[copy[i], copy[j]] = [copy[j], copy[i]]
    }
    return copy
  }
  next.seed = seed
  return next
}

/** Epoch ms with sub-ms precision; comparable between the processes of one machine. */
function now() {
  return performance.timeOrigin + performance.now()
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Prints one block of figures; jest shows a test's stdout, so a run leaves its numbers behind. */
function report(title, figures) {
  const lines = Object.entries(figures).map(([name, value]) =>
    `  ${name}: ${typeof value === 'string' ? value : JSON.stringify(value)}`)
  process.stdout.write(`\n[torture] ${title} (seed ${SEED}${SOAK ? ', soak' : ''})\n${lines.join('\n')}\n`)
}

/** Rejects with `what` if `promise` has not settled after `ms`; the timer never outlives it. */
function within(promise, ms, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Resolves the time at which `signal` aborted, or null if it has not after `ms`. */
function abortTime(signal, ms) {
  if (signal.aborted) return Promise.resolve(now())
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve(null)
    }, ms)
    const onAbort = () => {
      clearTimeout(timer)
      resolve(now())
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

// The codes a lock operation may end with besides success: anything else is a bug.
const LOCK_ERROR_CODES = ['ELOCKBUSY', 'ELOCKLOST', 'ECONNECTION', 'EQUORUM']

/** A short description of an unexpected error for a report. */
function describeError(error) {
  if (error === null || typeof error !== 'object') return String(error)
  return `${error.constructor?.name ?? 'Object'}(${error.code ?? '-'}): ${error.message}`
}

// What a list of violations is compared with: a failure shows how many and the first few, not
// thousands of lines. `expect(few(list)).toEqual(none)`.
const none = { count: 0, first: [] }
function few(list) {
  return { count: list.length, first: list.slice(0, 5) }
}

module.exports = { SOAK, SEED, size, random, now, sleep, report, within, abortTime, LOCK_ERROR_CODES, describeError, few, none }
