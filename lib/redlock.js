'use strict'

// require('ironlock/redlock'): a drop-in `Redlock` class with the API of `redlock` 5
// (`@sesamecare-oss/redlock`, the maintained fork) and redlock 4's (bluebird-style promises,
// callbacks, `Lock` objects), on one ironlock Locker. It is built from Redis clients like
// `redlock` is, but only reads their connection options: the locks go through ironlock's own
// native connections (lib/redlock-clients.js).
//
// What differs from `redlock`, and why, is in the README ("Differences from `redlock`").

const { EventEmitter } = require('node:events')
const { inspect } = require('node:util')
const { Locker } = require('./locker')
const { targetOf, addressOf, labelOf, releaseByValue, extendByValue } = require('./redlock-clients')
const { legacy } = require('./redlock-promise')
const { CONNECTION_DEFAULTS } = require('./defaults')
const {
  LockError: IronlockError,
  LockBusyError,
  LockLostError,
  QuorumError,
} = require('./errors')

// redlock's defaults (the same in v4 and v5; `db` is @sesamecare-oss/redlock's).
const DEFAULT_SETTINGS = Object.freeze({
  driftFactor: 0.01,
  retryCount: 10,
  retryDelay: 200,
  retryJitter: 100,
  automaticExtensionThreshold: 500,
  db: 0,
})

const NO_QUORUM = 'The operation was unable to achieve a quorum during its retry window.'

/** redlock's rule: a number overrides the default, anything else is ignored. */
function pickSettings(given, base) {
  const settings = { ...base }
  if (given === null || typeof given !== 'object') return settings
  for (const field of Object.keys(DEFAULT_SETTINGS)) {
    if (field !== 'db' && typeof given[field] === 'number') settings[field] = given[field]
  }
  if (isDbIndex(given.db)) settings.db = given.db
  return settings
}

function isDbIndex(db) {
  return typeof db === 'number' && Number.isInteger(db) && db >= 0 && db <= 15
}

/** How many attempts redlock makes with these settings: `retryCount` retries after the first. */
function attemptLimit({ retryCount }) {
  if (retryCount === -1 || retryCount === Infinity) return Infinity
  return Math.max(0, Math.floor(retryCount) || 0) + 1
}

/** ms between two attempts: `retryDelay` ± up to `retryJitter`, spread evenly, as in redlock. */
function retrySlot({ retryDelay, retryJitter }) {
  const delay = Math.max(0, retryDelay || 0) + Math.floor((Math.random() * 2 - 1) * Math.max(0, retryJitter || 0))
  return Number.isFinite(delay) ? Math.max(0, delay) : 0
}

// ms a call may take to start its first attempt (the event loop, the runtime, a loaded machine):
// a lock whose winning attempt started within it, or within half the first retry slot if that is
// longer, was taken at the first attempt, not after a wait.
const FIRST_ATTEMPT_LATENCY = 20

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))

function integerDuration(duration) {
  if (Math.floor(duration) !== duration) throw new Error('Duration must be an integer value in milliseconds.')
}

function resourceList(resources) {
  if (typeof resources === 'string') return [resources]
  if (Array.isArray(resources)) return resources.slice()
  if (resources != null && typeof resources[Symbol.iterator] === 'function' && typeof resources !== 'function') {
    return [...resources]
  }
  return resources // ironlock rejects it with a TypeError naming `key`
}

function sameKeys(a, b) {
  return a.length === b.length && a.every((key, i) => key === b[i])
}

/** Warns once that redlock 4's script options are not run (see the README's differences). */
let warnedScripts = false
function warnScriptOptions(settings) {
  if (warnedScripts || settings === null || typeof settings !== 'object') return
  if (!['lockScript', 'unlockScript', 'extendScript'].some((name) => typeof settings[name] === 'function')) return
  warnedScripts = true
  process.emitWarning(
    'ironlock/redlock does not run custom lockScript / unlockScript / extendScript: the locks are taken by ironlock\'s own scripts, whose fencing tokens and release announcements a changed script would break.',
    { type: 'IronlockWarning', code: 'IRONLOCK_REDLOCK_SCRIPTS' },
  )
}

// ---------------------------------------------------------------------------------------------
// Errors

/** redlock 4's error (`Redlock.LockError`): a lock, unlock or extend failed. */
class LockError extends Error {
  constructor(message, attempts, options) {
    super(message || 'Failed to lock the resource.', options)
    this.name = 'LockError'
    this.attempts = attempts
  }
}

/**
 * redlock 5's error: an operation did not win a quorum within its retry window. It extends the
 * v4 `LockError`, so `instanceof Redlock.LockError` holds whichever API failed.
 */
class ExecutionError extends LockError {
  constructor(message, attempts, options) {
    super(message, attempts, options)
    this.name = 'ExecutionError'
  }
}

/** redlock 5's per-node vote: another lock holds one or more of the resources. */
class ResourceLockedError extends Error {
  constructor(message) {
    super(message)
    this.name = 'ResourceLockedError'
  }
}

// ---------------------------------------------------------------------------------------------
// Votes

// redlock 5 keys its votes by the user's clients, whose options hold their passwords: these
// collections stay what redlock's are, but show each client by its address.

class ClientSet extends Set {
  [inspect.custom](depth, options) {
    return inspect(new Set([...this].map(labelOf)), { ...options, depth })
  }
}

class ClientMap extends Map {
  [inspect.custom](depth, options) {
    return inspect(new Map([...this].map(([client, vote]) => [labelOf(client), vote])), { ...options, depth })
  }
}

// ---------------------------------------------------------------------------------------------
// Lock

/**
 * What the shim knows of each Lock it made: the ironlock lock behind it, whether it is a v4 lock
 * (`extend` updates it in place, failures are `LockError`s), and the Redlock that made it. Found
 * through the prototype chain too, so that `Object.create(lock)` copies are known.
 */
const RECORDS = new WeakMap()

function recordOf(lock) {
  for (let each = lock; each !== null && typeof each === 'object'; each = Object.getPrototypeOf(each)) {
    const record = RECORDS.get(each)
    if (record !== undefined) return record
  }
  return undefined
}

/**
 * A held lock, in the shape of the API that made it. redlock 5:
 * `new Lock(redlock, resources, value, attempts, expiration, settings)`, with `release()` and
 * `extend(duration)`. redlock 4: `new Lock(redlock, resource, value, expiration, attempts,
 * attemptsRemaining)`, with `unlock(callback)` and `extend(ttl, callback)`. A Lock built from
 * stored values can be released and extended: only if its value still holds the resources.
 */
class Lock {
  constructor(redlock, resources, value, attemptsOrExpiration, expirationOrAttempts, settingsOrRemaining) {
    this.redlock = redlock
    if (Array.isArray(attemptsOrExpiration)) {
      this.resources = resources
      this.value = value
      this.attempts = attemptsOrExpiration
      this.expiration = expirationOrAttempts
      this.settings = settingsOrRemaining
    } else {
      this.resource = resources
      this.value = value
      this.expiration = attemptsOrExpiration
      this.attempts = expirationOrAttempts
      this.attemptsRemaining = settingsOrRemaining
      RECORDS.set(this, { inner: undefined, legacy: true, owner: redlock })
    }
  }

  /** ironlock's fencing token for this acquisition (an extension of the redlock API). */
  get fence() {
    return recordOf(this)?.inner?.fence
  }

  release() {
    return this.redlock.release(this)
  }

  unlock(callback) {
    return this.redlock.unlock(this, callback)
  }

  extend(duration, callback) {
    if (typeof callback === 'function' || isLegacy(this)) return this.redlock.extend(this, duration, callback)
    return this.redlock.extend(this, duration, this.settings)
  }

  // Without the Redlock and its clients (whose options may hold a password).
  [inspect.custom](depth, options) {
    const { resource, resources, value, expiration } = this
    const shown = isLegacy(this) ? { resource, value, expiration } : { resources, value, expiration }
    return `Lock ${inspect(shown, options)}`
  }
}

/** A v4 lock: made by v4's API or constructor, or a plain object with `resource` but no `resources`. */
function isLegacy(lock) {
  const record = recordOf(lock)
  return record !== undefined ? record.legacy : lock !== null && typeof lock === 'object' && !('resources' in lock)
}

// ---------------------------------------------------------------------------------------------
// Redlock

class Redlock extends EventEmitter {
  #locker
  #closed = false
  #addresses
  #lockerDrift

  /**
   * @param clients Redis clients (ioredis 4/5, node-redis 3/4), one per independent Redis; their
   *   connection options are read and the locker opens its own connections. One client: a
   *   single-Redis lock; 2+: Redlock (majority).
   * @param settings driftFactor, retryCount (-1 = forever), retryDelay, retryJitter,
   *   automaticExtensionThreshold, db
   */
  constructor(clients, settings = {}) {
    super()
    // Like redlock 5: an 'error' nobody listens to must not crash the process.
    this.on('error', () => {})

    if (clients == null || typeof clients[Symbol.iterator] !== 'function' || typeof clients === 'string') {
      const error = new TypeError('The "clients" argument must be an array of Redis clients.')
      error.code = 'ERR_INVALID_ARG_TYPE'
      throw error
    }
    this.clients = new ClientSet(clients)
    if (this.clients.size === 0) throw new Error('Redlock must be instantiated with at least one redis client.')
    this.settings = pickSettings(settings, DEFAULT_SETTINGS)
    warnScriptOptions(settings)

    // Without a `db` setting each client's own database holds its locks, as in redlock 4.
    const db = settings !== null && typeof settings === 'object' && isDbIndex(settings.db) ? settings.db : undefined
    const targets = [...this.clients].map((client, index) => targetOf(client, index, db, this.clients.size))
    this.#addresses = [...this.clients].map(addressOf)
    this.#lockerDrift = this.settings.driftFactor
    const locker = new Locker(targets.length === 1 ? targets[0] : targets, { driftFactor: this.settings.driftFactor })
    // Closing the locker itself (`redlock.locker.close()`, as tests do to keep their clients) ends
    // the retries as quit() does: the next attempt could only fail again.
    const close = locker.close
    Object.defineProperty(locker, 'close', {
      value: () => {
        this.#closed = true
        return close.call(locker)
      },
    })
    this.#locker = locker
  }

  // redlock 4 kept its settings (and clients) as properties of the instance.
  get servers() {
    return [...this.clients]
  }

  get driftFactor() {
    return this.settings.driftFactor
  }

  set driftFactor(value) {
    this.settings.driftFactor = value
  }

  get retryCount() {
    return this.settings.retryCount
  }

  set retryCount(value) {
    this.settings.retryCount = value
  }

  get retryDelay() {
    return this.settings.retryDelay
  }

  set retryDelay(value) {
    this.settings.retryDelay = value
  }

  get retryJitter() {
    return this.settings.retryJitter
  }

  set retryJitter(value) {
    this.settings.retryJitter = value
  }

  /** The ironlock Locker underneath (for fencing tokens and ironlock's own API). */
  get locker() {
    return this.#locker
  }

  // ----- redlock 5 --------------------------------------------------------------------------

  /**
   * v5: locks `resources` for `duration` ms; rejects `ExecutionError` if no attempt of the retry
   * window wins them. v4 calls (`acquire('key', ttl)`, `acquire(r, ttl, callback)`) are served
   * as `lock`.
   */
  acquire(resources, duration, settings) {
    if (typeof settings === 'function') return this.#lockV4(resources, duration, {}, settings)
    if (typeof resources === 'string') return this.#lockV4(resources, duration, settings, undefined)
    return this.#acquireV5(resources, duration, settings)
  }

  /**
   * v5: releases the lock; resolves `{ attempts, start }`, rejects `ExecutionError` if it was no
   * longer held. v4 calls (`release(lock, callback)`, or a v4 lock) are served as `unlock`.
   */
  release(lock, settings) {
    if (typeof settings === 'function' || isLegacy(lock)) return this.unlock(lock, settings)
    return this.#releaseV5(lock)
  }

  /**
   * v5: gives the lock `duration` ms from now and resolves a new `Lock` (the old one is
   * invalidated). v4 calls (`extend(lock, ttl, callback)`, or a v4 lock) update the lock in place
   * and resolve it.
   */
  extend(lock, duration, settings) {
    if (typeof settings === 'function' || isLegacy(lock)) return this.#extendV4(lock, duration, settings)
    return this.#extendV5(lock, duration, settings)
  }

  /**
   * v5: acquires, runs `routine(signal, context)` and always releases. ironlock extends the lock
   * from native code while the routine runs; if it is lost anyway `signal` aborts and
   * `signal.error` is an `ExecutionError`.
   */
  async using(resources, duration, settingsOrRoutine, optionalRoutine) {
    integerDuration(duration)
    const given = typeof settingsOrRoutine === 'function' ? undefined : settingsOrRoutine
    const settings = given ? pickSettings(given, this.settings) : this.settings
    const routine = optionalRoutine ?? settingsOrRoutine
    if (typeof routine !== 'function') throw new Error('INVARIANT: routine is not a function.')
    if (settings.automaticExtensionThreshold > duration - 100) {
      throw new Error('A lock `duration` must be at least 100ms greater than the `automaticExtensionThreshold` setting.')
    }
    const keys = resourceList(resources)
    let signal = null
    let signalError = null
    let routineFailure = null
    const body = (won) => async (abortSignal, inner) => {
      signal = abortSignal
      Object.defineProperty(signal, 'error', {
        configurable: true,
        enumerable: true,
        get: () => {
          if (!signal.aborted) return undefined
          signalError ??= this.#executionError(signal.reason, [this.#votes(signal.reason, keys)])
          return signalError
        },
      })
      const lock = this.#wrap(inner, keys, duration, given, won(inner), false)
      try {
        return await routine(signal, { lock, extensions: 0 })
      } catch (error) {
        routineFailure = { error }
        throw error
      }
    }
    // Once the routine has started, an error is the routine's or the hold's, never a failed attempt.
    const outcome = await this.#attempts(keys, settings, duration, (wait, won) =>
      this.#locker.using(keys, { ttl: duration, wait, autoExtend: true }, body(won)).then(
        (result) => ({ result }),
        (error) => {
          if (signal === null) throw error
          return { error }
        },
      ))
    if (outcome.error !== undefined) throw this.#executionError(outcome.error, outcome.attempts)
    const { result, error } = outcome.value
    if (!('error' in outcome.value)) return result
    if (signal.aborted && error === signal.reason) throw signal.error
    if (routineFailure !== null && error === routineFailure.error) throw error
    if (error instanceof IronlockError) throw this.#executionError(error, [this.#votes(error, keys)])
    throw error
  }

  /**
   * Closes ironlock's connections and, as redlock 4 and 5 do, calls `quit()` on every client given
   * to the constructor, resolving their replies (as redlock 4 does), so that a script that ends
   * with it exits.
   */
  quit(callback) {
    const closing = this.#closed ? Promise.resolve() : this.#locker.close()
    this.#closed = true
    const replies = Promise.all([...this.clients].map((client) => (typeof client.quit === 'function' ? client.quit() : undefined)))
    return legacy(Promise.all([closing, replies]).then(([, answered]) => answered), callback)
  }

  // ----- redlock 4 --------------------------------------------------------------------------

  /** v4: locks `resource` (a string or an array) for `ttl` ms; rejects `Redlock.LockError` when busy. */
  lock(resource, ttl, callback) {
    return this.#lockV4(resource, ttl, {}, callback)
  }

  /** v4: `lock` with per-call `{ retryCount, retryDelay, retryJitter }`. */
  lockWithOptions(resource, ttl, options, callback) {
    return this.#lockV4(resource, ttl, options, callback)
  }

  acquireWithOptions(resource, ttl, options, callback) {
    return this.#lockV4(resource, ttl, options, callback)
  }

  /** v4: releases the lock; rejects `Redlock.LockError` if it was no longer held. */
  unlock(lock, callback) {
    return legacy(this.#unlockV4(lock), callback)
  }

  /** v4: a bluebird disposer that locks `resource` and unlocks it after `Promise.using`. */
  disposer(resource, ttl, errorHandler) {
    const handler = typeof errorHandler === 'function' ? errorHandler : () => {}
    return legacy(this.lock(resource, ttl)).disposer((lock) => lock.unlock().catch(handler))
  }

  /**
   * v4's internal entry point, which some code calls: `value` null locks `resource`; a value
   * extends the lock that value holds, and resolves a new v4 Lock.
   */
  _lock(resource, value, ttl, options, callback) {
    if (typeof options === 'function' && callback === undefined) return this._lock(resource, value, ttl, {}, options)
    if (value === null || value === undefined) return this.#lockV4(resource, ttl, options, callback)
    return this.#extendV4(new Lock(this, resourceList(resource), value, Infinity, 0), ttl, callback)
  }

  // Without the clients (whose options may hold a password).
  [inspect.custom](depth, options) {
    return `Redlock ${inspect({ locker: this.#locker, settings: this.settings }, options)}`
  }

  // ----- internals --------------------------------------------------------------------------

  /**
   * redlock's attempts around `attempt(wait, won)`: up to `retryCount + 1`, each after the last
   * one ended and a `retrySlot` passed. A busy lock is waited for in one wait, through the slots
   * of every attempt left, woken by a release (one queued waiter, that does not write while an
   * old `redlock` holder is polled); the slots that passed before the winning attempt started
   * count as attempts that found it busy. An unreachable node or a server error fails the
   * attempt, and the next one starts after its slot. A lost lock ends the loop.
   * `won(inner)` records the winning attempt of ironlock lock `inner` (of `ttl` ms) and returns
   * the attempts. Resolves `{ value, attempts }` or `{ error, attempts }`, one entry of votes
   * per attempt.
   */
  async #attempts(keys, settings, ttl, attempt) {
    const limit = attemptLimit(settings)
    const attempts = []
    const slots = [] // slots[i]: the pause after attempt i (at least 1 ms, as a timer's)
    const slotAfter = (index) => {
      while (slots.length <= index) slots.push(Math.max(1, retrySlot(settings)))
      return slots[index]
    }
    // What is left of the window from attempt `index` on: the slots before each later attempt.
    const windowFrom = (index) => {
      if (limit === Infinity) return Infinity
      let total = 0
      for (let each = index; each < limit - 1; each++) total += slotAfter(each)
      return total
    }
    // The attempts whose slots passed from `since` to `until` while a wait was on: they found it busy.
    const countBusy = (since, until, upTo) => {
      let time = since
      while (attempts.length < upTo && (time += slotAfter(attempts.length)) <= until) {
        attempts.push(Promise.resolve(this.#busyVotes(keys)))
      }
    }
    let callStart = 0
    let won = false
    const win = (inner) => {
      if (!won) {
        won = true
        // When the winning attempt started (ironlock's expiresAt is that start + ttl − drift). A
        // start later than a call takes to reach Redis at all means its first attempt found the
        // lock busy and it waited: then every slot that passed meanwhile was an attempt too.
        const started = inner.expiresAt - ttl + ttl * this.#lockerDrift + 2
        const latency = Math.max(FIRST_ATTEMPT_LATENCY, slotAfter(attempts.length) / 2)
        if (started - callStart > latency && attempts.length < limit - 1) {
          const waitedFrom = attempts.length
          attempts.push(Promise.resolve(this.#busyVotes(keys)))
          countBusy(callStart + slotAfter(waitedFrom), started, limit - 1)
        }
        attempts.push(Promise.resolve(this.#stats(new ClientSet(this.clients), new ClientMap())))
      }
      return attempts
    }
    for (;;) {
      const last = attempts.length + 1 >= limit || this.#closed
      const wait = last ? 0 : windowFrom(attempts.length)
      callStart = Date.now()
      try {
        const value = await attempt(wait, win)
        return { value, attempts: win(value) }
      } catch (error) {
        if (!(error instanceof IronlockError)) throw error
        if (error instanceof LockBusyError) {
          // The wait ran out with the window: every attempt left found the lock busy.
          countBusy(callStart, Infinity, limit === Infinity ? attempts.length + 1 : limit)
          if (attempts.length >= limit || this.#closed || last) return { error, attempts }
          continue
        }
        // A split vote under Redlock (some nodes busy) that ran out with the window was the wait.
        const splitVote = error instanceof QuorumError && error.votes?.against > 0
        const windowOver = splitVote && Date.now() - callStart >= wait
        if (windowOver) countBusy(callStart, Infinity, limit - 1)
        attempts.push(Promise.resolve(this.#votes(error, keys)))
        if (windowOver || attempts.length >= limit || this.#closed || error instanceof LockLostError) return { error, attempts }
        await sleep(slotAfter(attempts.length - 1))
      }
    }
  }

  async #acquireV5(resources, duration, given) {
    integerDuration(duration)
    const settings = pickSettings(given, this.settings)
    const keys = resourceList(resources)
    const outcome = await this.#attempts(keys, settings, duration, (wait) => this.#locker.acquire(keys, { ttl: duration, wait }))
    if (outcome.error !== undefined) throw this.#executionError(outcome.error, outcome.attempts)
    return this.#wrap(outcome.value, keys, duration, given, outcome.attempts, false)
  }

  async #releaseV5(lock) {
    const { keys, value, inner } = this.#held(lock)
    lock.expiration = 0
    const start = Date.now()
    let released
    try {
      released = inner !== undefined ? await this.#locker.release(inner) : await this.#releaseByValue(keys, value)
    } catch (error) {
      if (error instanceof IronlockError) throw this.#executionError(error, [this.#votes(error, keys)])
      throw error
    }
    if (!released) {
      const lost = new LockLostError(`lock "${keys[0]}" had expired or been taken before it was released`, { key: keys[0] })
      throw this.#executionError(lost, [this.#votes(lost, keys)])
    }
    return { attempts: this.#wonAtOnce(), start }
  }

  async #extendV5(lock, duration, settings) {
    integerDuration(duration)
    const { keys, value, inner } = this.#held(lock)
    if (lock.expiration < Date.now()) throw new ExecutionError('Cannot extend an already-expired lock.', [])
    const start = Date.now()
    try {
      if (inner !== undefined) await this.#locker.extend(inner, duration)
      else await this.#extendByValue(keys, value, duration)
    } catch (error) {
      if (error instanceof IronlockError) throw this.#executionError(error, [this.#votes(error, keys)])
      throw error
    }
    lock.expiration = 0
    const attempts = this.#wonAtOnce()
    if (inner !== undefined) return this.#wrap(inner, keys, duration, settings ?? lock.settings, attempts, false)
    const extended = new Lock(this, keys, value, attempts, start + duration - this.#drift(duration, settings), settings ?? lock.settings)
    RECORDS.set(extended, { inner: undefined, legacy: false, owner: this })
    return extended
  }

  #lockV4(resource, ttl, options, callback) {
    const settings = pickSettings(options, this.settings)
    const keys = resourceList(resource)
    const run = async () => {
      const duration = Math.ceil(ttl)
      const outcome = await this.#attempts(keys, settings, duration, (wait) => this.#locker.acquire(keys, { ttl: duration, wait }))
      const count = outcome.attempts.length
      if (outcome.error !== undefined) {
        throw new LockError(`Exceeded ${settings.retryCount} attempts to lock the resource "${keys}".`, count, { cause: outcome.error })
      }
      const lock = this.#wrap(outcome.value, keys, duration, undefined, count, true)
      lock.attemptsRemaining = settings.retryCount - count
      return lock
    }
    return legacy(run(), callback)
  }

  async #unlockV4(lock) {
    const { keys, value, inner } = this.#held(lock)
    lock.expiration = 0
    let released
    let failure
    try {
      released = inner !== undefined ? await this.#locker.release(inner) : await this.#releaseByValue(keys, value)
    } catch (error) {
      if (!(error instanceof IronlockError)) throw error
      this.#votes(error, keys)
      released = false
      failure = error
    }
    if (!released) {
      throw new LockError(`Unable to fully release the lock on resource "${lock.resource}".`, undefined,
        failure === undefined ? undefined : { cause: failure })
    }
  }

  #extendV4(lock, ttl, callback) {
    const run = async () => {
      const { keys, value, inner } = this.#held(lock)
      if (lock.expiration < Date.now()) {
        throw new LockError(`Cannot extend lock on resource "${lock.resource}" because the lock has already expired.`, 0)
      }
      const duration = Math.ceil(ttl)
      const start = Date.now()
      try {
        if (inner !== undefined) {
          await this.#locker.extend(inner, duration)
          lock.expiration = this.#expiration(inner, duration, undefined)
        } else {
          await this.#extendByValue(keys, value, duration)
          lock.expiration = start + duration - this.#drift(duration, undefined)
        }
      } catch (error) {
        if (!(error instanceof IronlockError)) throw error
        this.#votes(error, keys)
        throw new LockError(`Exceeded ${this.settings.retryCount} attempts to lock the resource "${lock.resource}".`, 1, { cause: error })
      }
      return lock
    }
    return legacy(run(), callback)
  }

  /**
   * Releases a lock ironlock's connections did not take (one rebuilt from stored values, or a copy
   * whose resources were changed) through the clients: true if a majority released every resource.
   * A node's failure is reported as redlock reports it (`clientError`, `error`).
   */
  async #releaseByValue(keys, value) {
    return this.#byValue(keys, (client) => releaseByValue(client, keys, value, CONNECTION_DEFAULTS.commandTimeout))
  }

  /** Extends such a lock through the clients; rejects LockLostError unless a majority extended every resource. */
  async #extendByValue(keys, value, duration) {
    const extended = await this.#byValue(keys, (client) => extendByValue(client, keys, value, duration, CONNECTION_DEFAULTS.commandTimeout))
    if (!extended) throw new LockLostError(`lock "${keys[0]}" is no longer held by this value`, { key: keys[0] })
  }

  async #byValue(keys, run) {
    const clients = [...this.clients]
    const replies = await Promise.allSettled(clients.map(run))
    let complete = 0
    replies.forEach((reply, index) => {
      if (reply.status === 'fulfilled') {
        if (reply.value === keys.length) complete += 1
        return
      }
      const failure = new Error(`${labelOf(clients[index])}: ${reply.reason?.message ?? reply.reason}`, { cause: reply.reason })
      this.emit('clientError', failure)
      this.emit('error', failure)
    })
    return complete >= Math.floor(clients.length / 2) + 1
  }

  /** Our Lock around ironlock's `inner`. */
  #wrap(inner, keys, duration, settings, attempts, isV4) {
    const expiration = this.#expiration(inner, duration, settings)
    const lock = isV4
      ? new Lock(this, keys, inner.token, expiration, attempts)
      : new Lock(this, keys, inner.token, attempts, expiration, settings)
    RECORDS.set(lock, { inner, legacy: isV4, owner: this })
    return lock
  }

  /** ironlock's drift-adjusted `expiresAt`, adjusted again for a per-call (or changed) `driftFactor`. */
  #expiration(inner, duration, settings) {
    return inner.expiresAt + Math.round(this.#lockerDrift * duration) - Math.round(this.#driftFactor(settings) * duration)
  }

  /** redlock's drift: `driftFactor × duration`, plus 2 ms for Redis's expiry precision. */
  #drift(duration, settings) {
    return Math.round(this.#driftFactor(settings) * duration) + 2
  }

  #driftFactor(settings) {
    return settings && typeof settings.driftFactor === 'number' ? settings.driftFactor : this.settings.driftFactor
  }

  /**
   * The resources and value `lock` stands for now, and the ironlock lock holding them, if this
   * Redlock's connections took them (a Lock rebuilt from stored values, or a copy whose resources
   * or value were changed, has none and goes through the clients).
   */
  #held(lock) {
    const keys = lock !== null && typeof lock === 'object' ? resourceList(isLegacy(lock) ? lock.resource : lock.resources) : undefined
    if (typeof lock?.value !== 'string' || !Array.isArray(keys) || keys.length === 0 || keys.some((key) => typeof key !== 'string')) {
      const error = new TypeError('The "lock" argument must be a Lock, or an object with its resource(s) and value.')
      error.code = 'ERR_INVALID_ARG_TYPE'
      throw error
    }
    const record = recordOf(lock)
    const inner = record?.inner
    const ours = inner !== undefined && record.owner === this && inner.token === lock.value && sameKeys(inner.keys, keys)
    return { keys, value: lock.value, inner: ours ? inner : undefined }
  }

  #stats(votesFor, votesAgainst) {
    const membershipSize = this.clients.size
    return { membershipSize, quorumSize: Math.floor(membershipSize / 2) + 1, votesFor, votesAgainst }
  }

  /**
   * The attempts of an operation won in one: every client voting for (ironlock does not report
   * per-node votes when it wins).
   */
  #wonAtOnce() {
    return [Promise.resolve(this.#stats(new ClientSet(this.clients), new ClientMap()))]
  }

  /** An attempt that found the resources held: every client against, each vote on `error`. */
  #busyVotes(keys) {
    const votesAgainst = new ClientMap()
    for (const client of this.clients) {
      const vote = new ResourceLockedError(`The operation was applied to: 0 of the ${keys.length} requested resources.`)
      votesAgainst.set(client, vote)
      this.emit('error', vote)
    }
    return this.#stats(new ClientSet(), votesAgainst)
  }

  /**
   * One failed attempt's votes, from the ironlock error it ended with, reported as redlock reports
   * them: `error` (v5) for every vote against, `clientError` (v4) for every node that failed to
   * answer or answered with an error (a busy resource is no client error).
   */
  #votes(error, keys) {
    const clients = [...this.clients]
    const votesFor = new ClientSet()
    const votesAgainst = new ClientMap()
    const failures = new Set()
    const locked = () => new ResourceLockedError(`The operation was applied to: 0 of the ${keys.length} requested resources.`)
    if (error instanceof QuorumError && error.votes) {
      const { errors = [], against = 0 } = error.votes
      const unmatched = []
      for (const { node, message } of errors) {
        const failure = new Error(`${node}: ${message}`)
        failures.add(failure)
        const index = this.#addresses.findIndex((address, i) => address !== null && !votesAgainst.has(clients[i]) &&
          (node === address || String(node).endsWith(address) || String(node).includes(`${address}/`)))
        if (index >= 0) votesAgainst.set(clients[index], failure)
        else unmatched.push(failure)
      }
      let busy = against
      for (const client of clients) {
        if (votesAgainst.has(client)) continue
        if (unmatched.length > 0) votesAgainst.set(client, unmatched.shift())
        else if (busy > 0) {
          busy -= 1
          votesAgainst.set(client, locked())
        } else votesFor.add(client)
      }
    } else if (error instanceof LockBusyError || error instanceof LockLostError) {
      for (const client of clients) votesAgainst.set(client, locked())
    } else {
      // A connection failure, or an error the server answered (on every node alike).
      for (const client of clients) votesAgainst.set(client, error)
      failures.add(error)
    }
    for (const vote of votesAgainst.values()) {
      if (failures.has(vote)) this.emit('clientError', vote)
      this.emit('error', vote)
    }
    return this.#stats(votesFor, votesAgainst)
  }

  #executionError(error, attempts) {
    return new ExecutionError(NO_QUORUM, attempts, { cause: error })
  }
}

// Written as `module.exports.X =` so that Node's ESM loader sees the named exports too:
// `import { Redlock, ExecutionError } from 'ironlock/redlock'` as well as `import Redlock from …`.
module.exports = Redlock
module.exports.Redlock = Redlock
module.exports.default = Redlock
module.exports.Lock = Lock
module.exports.LockError = LockError
module.exports.ExecutionError = ExecutionError
module.exports.ResourceLockedError = ResourceLockedError
