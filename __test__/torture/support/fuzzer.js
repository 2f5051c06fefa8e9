'use strict'

// A seeded fuzzer of ironlock's public API: random mixes of valid and invalid arguments to every
// entry point, on a memory:// locker and on a real redis-server. The invariant: every call settles
// within SETTLE_BOUND_MS with a value or a typed error (a LockError, or a TypeError / RangeError
// whose `code` starts with ERR_), or with what the input itself threw or aborted with; nothing is
// thrown where no caller can catch it (uncaughtException, unhandledRejection, warnings); and the
// valid "canary" lock cycles made in the same ticks as the bad calls all succeed.
//
// `node __test__/torture/support/fuzzer.js` runs it (fuzz.test.js does, in a process of its own:
// only there do process-wide recorders see anything, jest gives each test file a `process` of its
// own, and a crash shows as an exit code). IRONLOCK_FUZZ_SEED replays the calls of a run (their
// outcomes, and which handed-out lock a later call tries again, depend on timing too);
// IRONLOCK_FUZZ_CALLS sets its length (default 10000). The last line of output is
// `FUZZ-SUMMARY <json>`; the exit code is 0 when the invariant held.

const { randomInt } = require('node:crypto')
const { inspect } = require('node:util')
const { startRedis, stopAll, freePort } = require('../../helpers/redis-server')

// The default locker (top-level functions, after `close()`) comes from REDIS_URL: a store of its
// own, never the Redis on 6379.
process.env.REDIS_URL = 'memory://'
const ironlock = require('../../..')

const { Locker, Lock, LockError } = ironlock

const SETTLE_BOUND_MS = 15000
const CALLS = Number(process.env.IRONLOCK_FUZZ_CALLS || 10000)
const SEED = process.env.IRONLOCK_FUZZ_SEED ? Number(process.env.IRONLOCK_FUZZ_SEED) >>> 0 : randomInt(2 ** 32)
const MAX_FAILURES_SHOWN = 20

// mulberry32: small, fast and good enough to pick test cases; the same seed, the same calls.
function mulberry32(seed) {
  let state = seed
  return () => {
    state = (state + 0x6d2b79f5) | 0
    let t = Math.imul(state ^ (state >>> 15), 1 | state)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const random = mulberry32(SEED)
const int = (n) => Math.floor(random() * n)
const pick = (list) => list[int(list.length)]
const chance = (p) => random() < p

// ---------------------------------------------------------------------------------------------
// What the input throws or aborts with: an outcome, not a failure, when it comes back.

class Planted extends Error {}
const planted = new Set()
// Not from `random`: some are made late (in timers, in getters the code may or may not read), and
// the calls a seed makes must not depend on that.
let plantedCount = 0
function plant() {
  const kinds = [() => new Planted('thrown by the fuzz input'), () => Symbol('planted'), () => ({ planted: true })]
  const value = kinds[plantedCount++ % kinds.length]()
  planted.add(value)
  return value
}

// Touching a revoked Proxy is a TypeError from the engine itself, whoever touches it.
let revokedInArgs = false
function revokedProxy() {
  const { proxy, revoke } = Proxy.revocable(pick([{}, []]), {})
  revoke()
  revokedInArgs = true
  return proxy
}

// ---------------------------------------------------------------------------------------------
// Input

const LONG = 'x'.repeat(100_000)
const KEYS = ['a', 'b', 'c', '{t}a', '{t}b', 'ключ', '\uD83D\uDE00']

function throwingGetters() {
  const value = {}
  const fields = ['ttl', 'wait', 'signal', 'autoExtend', 'host', 'port', 'password', 'keyPrefix', 'options', 'length', '0', 'aborted']
  for (const field of fields) {
    Object.defineProperty(value, field, { enumerable: true, get: () => { throw plant() } })
  }
  return value
}

function throwingProxy() {
  const trap = () => { throw plant() }
  const traps = { get: trap, has: trap, ownKeys: trap, getOwnPropertyDescriptor: trap, getPrototypeOf: trap, apply: trap }
  return new Proxy(pick([{}, ['a'], () => {}]), traps)
}

const WEIRD = [
  () => undefined, () => null, () => true, () => false,
  () => 0, () => -0, () => 1, () => -1, () => 0.5, () => 1.5, () => NaN, () => Infinity, () => -Infinity,
  () => 2 ** 31, () => 2 ** 32, () => 2 ** 53, () => Number.MAX_VALUE, () => Number.MIN_VALUE, () => 1e21,
  () => 10n, () => -1n, () => 2n ** 64n, () => Symbol('fuzz'), () => Symbol.iterator,
  () => '', () => ' ', () => 'k', () => '\uD800', () => '\uDFFF', () => 'a\uDBFFb', () => '\uDE00\uD83D', () => '\0',
  () => 'a\r\nSET pwned 1\r\n', () => '{', () => '}{', () => LONG, () => (chance(0.1) ? 'y'.repeat(1_000_000) : 'z'.repeat(1000)),
  () => ({}), () => [], () => [,], () => new Array(3), () => ['a', , 'b'], () => [1, 2], () => [['a']], () => ['a', '\uD800'],
  () => Array.from({ length: 1 + int(2000) }, (_, i) => `many:${i}`),
  () => Object.create(null), () => Object.assign(Object.create(null), { ttl: 5, wait: 0 }),
  () => throwingGetters(), () => new Proxy(pick([{}, ['a', 'b'], { ttl: 10 }]), {}), () => throwingProxy(), () => revokedProxy(),
  () => function named() {}, () => () => { throw plant() }, () => async () => { throw plant() },
  () => new Date(), () => new Map([['a', 1]]), () => /re/, () => Buffer.from('k'), () => new Uint8Array(2), () => new String('k'),
  () => Promise.resolve('k'), () => ({ then: (resolve) => resolve('k') }), () => new Error('an error as an argument'),
  () => signal(), () => lockish(),
]
const weird = () => pick(WEIRD)()

const VALID_TTLS = [1, 5, 50, 1000, 30000, 0.5, 2 ** 31, Number.MAX_SAFE_INTEGER]
const VALID_WAITS = [0, 0, 1, 5, 20, 0.5, Infinity]

/** Valid most of the time, else anything. */
const sometimesWeird = (valid, p = 0.15) => (chance(p) ? weird() : valid())

function keys() {
  if (chance(0.4)) return weird()
  if (chance(0.5)) return pick(KEYS)
  return Array.from({ length: 1 + int(3) }, () => sometimesWeird(() => pick(KEYS), 0.1))
}

/** A value for `signal`: real ones that abort before, during or never, and fakes of every sort. */
function signal() {
  return pick([
    () => undefined,
    () => new AbortController().signal,
    () => AbortSignal.abort(),
    () => AbortSignal.abort(plant()),
    () => AbortSignal.timeout(int(30)),
    () => {
      const controller = new AbortController()
      setTimeout(() => controller.abort(plant()), int(20)).unref()
      return controller.signal
    },
    () => ({ aborted: false, addEventListener() {}, removeEventListener() {} }),
    () => ({ aborted: false, addEventListener() {} }),
    () => ({ aborted: false, addEventListener() { throw plant() }, removeEventListener() {} }),
    () => ({ aborted: false, addEventListener() {}, removeEventListener() { throw plant() } }),
    () => ({ aborted: true, reason: plant(), addEventListener() {}, removeEventListener() {} }),
    () => ({ get aborted() { throw plant() }, addEventListener() {} }),
    // Aborts from inside addEventListener, with a reason that throws when read.
    () => ({
      aborted: false,
      get reason() { throw plant() },
      addEventListener(type, listener) { listener() },
      removeEventListener() {},
    }),
    () => ({ aborted: false, reason: plant(), addEventListener(type, listener) { listener() }, removeEventListener() {} }),
  ])()
}

function options() {
  if (chance(0.15)) return weird()
  const given = chance(0.1) ? Object.create(null) : {}
  if (chance(0.7)) given.ttl = sometimesWeird(() => pick(VALID_TTLS))
  if (chance(0.7)) given.wait = sometimesWeird(() => pick(VALID_WAITS))
  if (chance(0.3)) given.signal = signal()
  if (chance(0.2)) given.autoExtend = sometimesWeird(() => chance(0.5))
  if (chance(0.1)) given[pick(['tll', 'retries', 'onBusy', '__proto__x'])] = weird()
  return chance(0.05) ? new Proxy(given, {}) : given
}

function fn() {
  return pick([
    () => () => 'done',
    () => () => { throw plant() },
    () => () => Promise.reject(plant()),
    () => {
      const delay = int(5)
      return async (signal, lock) => {
        await new Promise((resolve) => setTimeout(resolve, delay))
        return lock && lock.key
      }
    },
    () => () => ({ then(resolve, reject) { reject(plant()) } }),
    () => () => ({ get then() { throw plant() } }),
    () => weird(),
  ])()
}

// ---------------------------------------------------------------------------------------------
// Lockers and locks

let server
let deadUrl
const lockers = {} // the two that the canaries use, open from start to end
const throwaways = []
const held = [] // live locks the fuzzer holds, on keys nobody waits for
const released = []
let serial = 0

/** Targets whose lockers may be used: their keys (a prefix of their own) collide with nobody's. */
function safeTarget() {
  return pick([
    () => 'memory://',
    () => `memory://fuzz-${++serial}`,
    () => ({ host: '127.0.0.1', port: server.port, db: int(3), keyPrefix: `throwaway-${++serial}:` }),
    () => deadUrl,
  ])()
}

/** Targets of every sort, valid or not: their lockers are closed unused (one might be 6379). */
function anyTarget() {
  return pick([
    () => weird(),
    () => pick(['redis://', 'redis://:%ZZ@127.0.0.1:1', 'redis://127.0.0.1:0', 'redis://127.0.0.1:1/99999999999', 'rediss://h:1',
      'redis://u:p/w@h:1', 'redis:\uD800', 'memory:x', 'memory://\uD800', 'http://h', `redis://127.0.0.1:${server.port}/-1`]),
    () => ({
      host: sometimesWeird(() => '127.0.0.1'),
      port: sometimesWeird(() => 1),
      db: sometimesWeird(() => 0),
      password: sometimesWeird(() => 'pw'),
      tls: sometimesWeird(() => undefined),
    }),
    () => ({ options: { host: '127.0.0.1', port: sometimesWeird(() => 1) }, duplicate() {} }),
    () => ({ cluster: [{ host: '127.0.0.1', port: 1 }] }),
    () => ({ sentinels: [{ host: '127.0.0.1', port: 1 }], name: 'm' }),
    () => Array.from({ length: int(4) }, () => sometimesWeird(() => `redis://127.0.0.1:${1 + int(100)}`, 0.3)),
    () => new Array(1 + int(3)),
    () => undefined,
  ])()
}

function defaults() {
  if (chance(0.2)) return weird()
  const given = {}
  for (const [field, valid] of [
    ['ttl', () => pick(VALID_TTLS)], ['wait', () => pick(VALID_WAITS)], ['autoExtend', () => chance(0.5)],
    ['connectTimeout', () => pick([1, 50, 500, 2000, 2 ** 31, 2 ** 40])],
    ['commandTimeout', () => pick([1, 50, 2000, 2 ** 31, 2 ** 40])],
    ['keyPrefix', () => pick(['', 'app:', '{p}', '\uD83D\uDE00'])], ['driftFactor', () => pick([0, 0.01, 0.5, 0.999])],
  ]) {
    if (chance(0.3)) given[field] = sometimesWeird(valid, 0.3)
  }
  if (chance(0.1)) given.tll = 5
  return given
}

function usableLocker() {
  return pick([lockers.memory, lockers.memory, lockers.redis, lockers.redis, ...throwaways])
}

function lockish() {
  return pick([
    () => pick(held),
    () => pick(held),
    () => pick(released),
    () => ({ key: 'k', keys: ['k'], token: 'forged', fence: 1, expiresAt: Date.now() + 1000 }),
    () => Object.create(Lock.prototype),
    () => (held.length > 0 ? new Proxy(pick(held), {}) : undefined),
    () => forgedLock(),
  ])()
}

/** A Lock made by hand, with the id of a lock someone may hold. */
function forgedLock() {
  try {
    return new Lock(pick([lockers.memory, lockers.redis]), 1 + int(64), ['a'], 'forged', 1, Date.now() + 1000)
  } catch {
    return Object.create(Lock.prototype)
  }
}

// ---------------------------------------------------------------------------------------------
// Calls and outcomes

const figures = { calls: 0, outcomes: {}, canaries: 0 }
const failures = []
const uncaught = []
const unhandled = []
const warnings = []
let round = 0

const TIMED_OUT = Symbol('timed out')

function within(promise, ms = SETTLE_BOUND_MS) {
  let timer
  const bound = new Promise((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms)
  })
  return Promise.race([promise, bound]).finally(() => clearTimeout(timer))
}

/** An unexpected outcome for the report: its class, code, message and top stack frames. */
function describeError(error) {
  if (error === null || typeof error !== 'object') return String(typeof error === 'symbol' ? error.toString() : error)
  try {
    const code = error.code === undefined ? '' : ` [${error.code}]`
    const frames = String(error.stack).split('\n').filter((line) => /^\s+at /.test(line)).slice(0, 3)
    const where = frames.length === 0 ? '' : ` (${frames.map((line) => line.trim().replace(/^at /, '')).join(' < ')})`
    return `${error.constructor && error.constructor.name}${code}: ${String(error.message).slice(0, 300)}${where}`
  } catch {
    return 'a value that throws when looked at'
  }
}

function fail(name, detail) {
  failures.push({ round, call: name, detail })
}

/** The class of an outcome; null when it breaks the invariant. */
function outcomeClass(error, revoked) {
  if (planted.has(error)) return 'thrown by the input'
  if (error instanceof LockError) return error.constructor.name
  if ((error instanceof TypeError || error instanceof RangeError) && typeof error.code === 'string' && error.code.startsWith('ERR_')) {
    return `${error.name} ${error.code}`
  }
  if (error instanceof DOMException && (error.name === 'AbortError' || error.name === 'TimeoutError')) return `aborted (${error.name})`
  if (revoked && error instanceof TypeError && /revoked/.test(error.message)) return 'thrown by the input'
  return null
}

/** What a call gave back must show in a log: util.inspect of it must not throw. */
function inspectable(name, value) {
  try {
    inspect(value, { depth: 3 })
  } catch (error) {
    fail(name, `util.inspect of what it gave threw ${describeError(error)}`)
  }
}

function count(outcome) {
  figures.outcomes[outcome] = (figures.outcomes[outcome] ?? 0) + 1
}

/**
 * Makes one call and resolves once it has settled (or SETTLE_BOUND_MS passed), and whatever
 * `onValue(value)` returns for its value (the clean-up of a lock or locker it made) has too.
 */
function call(name, thunk, onValue = disposeOf, revoked = false) {
  figures.calls++
  const settled = (outcome) => {
    inspectable(name, 'value' in outcome ? outcome.value : outcome.error)
    if ('value' in outcome) {
      count('value')
      return onValue(outcome.value)
    }
    const kind = outcomeClass(outcome.error, revoked)
    if (kind === null) fail(name, `${outcome.sync ? 'threw' : 'rejected with'} ${describeError(outcome.error)}`)
    else count(kind)
    return undefined
  }
  let result
  try {
    result = thunk()
  } catch (error) {
    return Promise.resolve(settled({ error, sync: true }))
  }
  if (!(result instanceof Promise)) return Promise.resolve(settled({ value: result }))
  return within(result).then(
    (value) => (value === TIMED_OUT ? fail(name, `did not settle within ${SETTLE_BOUND_MS} ms`) : settled({ value })),
    (error) => settled({ error }),
  )
}

/** Gives back a lock a call handed out, so that nobody waits for it; later calls may try it again. */
function disposeOf(value) {
  if (!(value instanceof Lock)) return undefined
  released.push(value)
  return call('lock.release() of a lock handed out', () => value.release(), noop)
}
const noop = () => undefined

/** A valid acquire-release cycle that must succeed whatever the bad calls around it do. */
function canary(locker, where) {
  figures.canaries++
  const key = `canary:${round}:${where}`
  return within(locker.acquire(key, { ttl: 10000, wait: 10000 }))
    .then((lock) => {
      if (!(lock instanceof Lock)) {
        throw new Error(lock === TIMED_OUT ? 'its acquire did not settle' : `its acquire gave ${describeError(lock)}`)
      }
      return within(lock.release())
    })
    .then((released) => {
      if (released !== true) {
        throw new Error(released === TIMED_OUT ? 'its release did not settle' : `its release gave ${String(released)}`)
      }
    })
    .catch((error) => fail(`canary on ${where}`, describeError(error)))
}

function keepThrowaway(locker) {
  throwaways.push(locker)
  return throwaways.length > 6 ? throwaways.shift().close() : undefined
}

// Each entry: [weight, name, make] where `make()` builds the arguments and returns the call.
const CALL_KINDS = [
  [10, 'acquire', () => {
    const locker = usableLocker()
    const args = [keys(), options()]
    return () => locker.acquire(...args)
  }],
  [4, 'acquire of a busy key, valid', () => {
    const locker = pick([lockers.memory, lockers.redis])
    const args = [pick(KEYS), { ttl: pick([5, 50, 1000]), wait: pick([0, 5, 50]) }]
    return () => locker.acquire(...args)
  }],
  [6, 'tryAcquire', () => {
    const locker = usableLocker()
    const args = [keys(), options()]
    return () => locker.tryAcquire(...args)
  }],
  [4, 'release', () => {
    const locker = usableLocker()
    const lock = sometimesWeird(lockish, 0.3)
    return () => locker.release(lock)
  }],
  [4, 'extend', () => {
    const locker = usableLocker()
    const lock = sometimesWeird(lockish, 0.3)
    const args = chance(0.3) ? [lock] : [lock, sometimesWeird(() => pick(VALID_TTLS), 0.4)]
    return () => locker.extend(...args)
  }],
  [6, 'using', () => {
    const locker = usableLocker()
    const args = pick([
      () => [keys(), options(), fn()],
      () => [keys(), fn()],
      () => [keys()],
      () => [keys(), options(), fn(), weird()],
    ])()
    return () => locker.using(...args)
  }],
  [3, 'lock.release()', () => {
    const lock = sometimesWeird(lockish, 0.1)
    return () => Lock.prototype.release.call(lock)
  }],
  [3, 'lock.extend()', () => {
    const lock = sometimesWeird(lockish, 0.1)
    const ttl = chance(0.5) ? undefined : sometimesWeird(() => pick(VALID_TTLS), 0.4)
    return () => Lock.prototype.extend.call(lock, ttl)
  }],
  [2, 'a Locker method called on something else', () => {
    const method = pick(['acquire', 'tryAcquire', 'release', 'extend', 'using', 'close'])
    const self = sometimesWeird(() => pick([undefined, Object.create(Locker.prototype), new Proxy(lockers.memory, {})]), 0.5)
    const args = [keys(), options(), fn()]
    return () => Locker.prototype[method].call(self, ...args)
  }],
  [2, 'new Lock()', () => {
    const args = Array.from({ length: int(7) }, () => sometimesWeird(() => pick([lockers.memory, 1, ['a'], 'token']), 0.5))
    return () => new Lock(...args)
  }],
  [3, 'a top-level function', () => {
    const [name, args] = pick([
      () => ['acquire', [keys(), options()]],
      () => ['tryAcquire', [keys(), options()]],
      () => ['using', [keys(), options(), fn()]],
      () => ['release', [sometimesWeird(lockish, 0.3)]],
      () => ['extend', [sometimesWeird(lockish, 0.3), sometimesWeird(() => pick(VALID_TTLS), 0.4)]],
    ])()
    return () => ironlock[name](...args)
  }],
  [3, 'new Locker() on a target of any sort', () => {
    const args = chance(0.2) ? [] : chance(0.5) ? [anyTarget()] : [anyTarget(), defaults()]
    return [() => new Locker(...args), closeUnused]
  }],
  [2, 'new Locker() on a usable target', () => {
    const args = [safeTarget(), defaults()]
    return [() => new Locker(...args), keepThrowaway]
  }],
  [2, 'configure()', () => {
    // A locker on a target of any sort is replaced at once, before any top-level call can use it.
    const safe = chance(0.5)
    const args = [safe ? safeTarget() : anyTarget(), defaults()]
    return [() => ironlock.configure(...args), () => (safe ? undefined : ironlock.configure('memory://'))]
  }],
  [1, 'close()', () => {
    const target = pick([...throwaways, ironlock])
    return [() => target.close(), () => {
      const index = throwaways.indexOf(target)
      if (index >= 0) throwaways.splice(index, 1)
    }]
  }],
]
const TOTAL_WEIGHT = CALL_KINDS.reduce((sum, [weight]) => sum + weight, 0)

function randomCall() {
  let roll = int(TOTAL_WEIGHT)
  for (const [weight, name, make] of CALL_KINDS) {
    roll -= weight
    if (roll >= 0) continue
    const made = make()
    const revoked = revokedInArgs
    revokedInArgs = false
    const [thunk, onValue] = typeof made === 'function' ? [made, undefined] : made
    return () => call(name, thunk, onValue, revoked)
  }
  throw new Error('unreachable')
}

function closeUnused(value) {
  if (value instanceof Locker) return value.close()
  return undefined
}

/** Keeps a few live locks on keys of their own, for release / extend / lock.release() to find. */
async function refillHeld() {
  const releasing = []
  for (let i = held.length - 1; i >= 0; i--) {
    if (chance(0.2)) releasing.push(...held.splice(i, 1))
  }
  await Promise.all(releasing.map((lock) => lock.release().catch(() => {})))
  released.push(...releasing)
  released.splice(0, released.length - 16)
  while (held.length < 8) {
    const locker = pick([lockers.memory, lockers.redis])
    held.push(await locker.acquire(`\u0001held:${++serial}`, { ttl: 20000, wait: 0 }))
  }
}

async function main() {
  process.on('uncaughtException', (error) => uncaught.push(describeError(error)))
  process.on('unhandledRejection', (reason) => unhandled.push(describeError(reason)))
  process.on('warning', (warning) => warnings.push(`${warning.name}: ${warning.message}`))
  const started = Date.now()
  server = await startRedis()
  deadUrl = `redis://127.0.0.1:${await freePort()}`
  lockers.memory = new Locker('memory://')
  lockers.redis = new Locker(server.url, { connectTimeout: 2000, commandTimeout: 2000 })

  while (figures.calls < CALLS) {
    round++
    await refillHeld()
    const pending = []
    const calls = Array.from({ length: 4 + int(20) }, randomCall)
    const canaries = [[lockers.memory, 'memory'], [lockers.redis, 'redis']]
    // The canaries go in the same tick, between the bad calls.
    for (const [index, each] of calls.entries()) {
      if (canaries.length > 0 && chance(2 / (calls.length - index))) pending.push(canary(...canaries.shift()))
      pending.push(each())
    }
    for (const [locker, where] of canaries) pending.push(canary(locker, where))
    await Promise.all(pending)
  }

  await Promise.all(held.splice(0).map((lock) => call('release at the end', () => lock.release(), noop)))
  const open = [lockers.memory, lockers.redis, ironlock, ...throwaways.splice(0)]
  await Promise.all(open.map((each) => call('close() at the end', () => each.close(), noop)))
  await stopAll()
  // Give late throws (microtasks, timers, the native side) a moment to surface.
  await new Promise((resolve) => setTimeout(resolve, 200))
  report(Date.now() - started)
}

/** Failures grouped by call and detail (numbers aside), most frequent first. */
function failureKinds() {
  const kinds = new Map()
  for (const { round: at, call: name, detail } of failures) {
    const kind = `${name}: ${detail.replace(/\d+/g, 'N')}`
    const seen = kinds.get(kind) ?? { n: 0, first: at }
    seen.n++
    kinds.set(kind, seen)
  }
  return [...kinds].sort(([, a], [, b]) => b.n - a.n)
}

function report(durationMs) {
  const kinds = failureKinds().slice(0, MAX_FAILURES_SHOWN)
  const summary = {
    seed: SEED,
    calls: figures.calls,
    canaries: figures.canaries,
    rounds: round,
    durationMs,
    outcomes: Object.fromEntries(Object.entries(figures.outcomes).sort(([, a], [, b]) => b - a)),
    failures: failures.length,
    failureKinds: kinds.map(([kind, { n }]) => `${n}x ${kind}`),
    uncaught,
    unhandled,
    warnings,
  }
  const lines = [
    `ironlock fuzz: seed ${SEED} (replay with IRONLOCK_FUZZ_SEED=${SEED}), ${figures.calls} calls in ${round} rounds, ` +
      `${figures.canaries} canaries, ${(durationMs / 1000).toFixed(1)} s`,
    ...Object.entries(summary.outcomes).map(([kind, n]) => `  ${String(n).padStart(6)}  ${kind}`),
    `  failures: ${failures.length}, uncaught exceptions: ${uncaught.length}, ` +
      `unhandled rejections: ${unhandled.length}, warnings: ${warnings.length}`,
    ...kinds.map(([kind, { n, first }]) => `  FAIL ${n}x (first in round ${first}) ${kind}`),
    ...[...uncaught, ...unhandled, ...warnings].slice(0, MAX_FAILURES_SHOWN).map((each) => `  FAIL ${each}`),
  ]
  process.stdout.write(`${lines.join('\n')}\nFUZZ-SUMMARY ${JSON.stringify(summary)}\n`)
  const clean = failures.length === 0 && uncaught.length === 0 && unhandled.length === 0 && warnings.length === 0
  process.exitCode = clean ? 0 : 1
}

main().catch((error) => {
  process.stdout.write(`the fuzzer itself failed: ${error.stack}\n`)
  process.exitCode = 2
})
