'use strict'

// require('ironlock/redlock'): a drop-in `Redlock` class with the API of `redlock` 5
// (`@sesamecare-oss/redlock`, the maintained fork) and redlock 4's callback-style aliases, on one
// ironlock Locker. It is built from ioredis clients like `redlock` is, but only reads their
// connection options: the locks go through ironlock's own native connections.
//
// What differs from `redlock`, and why, is in the README ("Coming from redlock").

const { EventEmitter } = require('node:events')
const { createRequire } = require('node:module')
const path = require('node:path')
const { inspect } = require('node:util')
const { Locker } = require('./locker')
const { clientOptions } = require('./target')
const {
  LockError: IronlockError,
  LockBusyError,
  LockLostError,
  QuorumError,
  LockConnectionError,
} = require('./errors')

// redlock's defaults (the same in v4 and v5).
const DEFAULT_SETTINGS = Object.freeze({
  driftFactor: 0.01,
  retryCount: 10,
  retryDelay: 200,
  retryJitter: 100,
  automaticExtensionThreshold: 500,
})

const NO_QUORUM = 'The operation was unable to achieve a quorum during its retry window.'

/**
 * ms of ironlock `wait` for redlock's retry settings. redlock retries `retryCount` times, sleeping
 * `retryDelay` ± up to `retryJitter` ms (uniformly) between attempts, so it gives up after about
 * `retryCount × retryDelay` ms on average and `retryCount × (retryDelay + retryJitter)` at worst.
 * ironlock does not poll (a release wakes the waiter), so only the give-up time matters; we take
 * the middle of that range. `retryCount: -1` waits forever, `0` (or less) fails at once.
 */
function waitFor({ retryCount, retryDelay, retryJitter }) {
  if (retryCount === -1 || retryCount === Infinity) return Infinity
  if (!(retryCount > 0)) return 0
  const wait = Math.ceil(retryCount * (Math.max(0, retryDelay || 0) + Math.max(0, retryJitter || 0) / 2))
  return Number.isFinite(wait) ? wait : Infinity
}

/** redlock's rule: a number overrides the default, anything else is ignored. */
function pickSettings(given, base) {
  const settings = { ...base }
  if (given === null || typeof given !== 'object') return settings
  for (const field of Object.keys(DEFAULT_SETTINGS)) {
    if (typeof given[field] === 'number') settings[field] = given[field]
  }
  if (isDbIndex(given.db)) settings.db = given.db
  return settings
}

function isDbIndex(db) {
  return typeof db === 'number' && Number.isInteger(db) && db >= 0 && db <= 15
}

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

// Node-style callbacks for redlock 4's API, like bluebird's `nodeify`: the promise is still
// returned (and counts as handled), and a throw inside the callback is not swallowed.
function nodeify(promise, callback) {
  if (typeof callback !== 'function') return promise
  const call = (...args) => {
    try {
      callback(...args)
    } catch (error) {
      process.nextTick(() => {
        throw error
      })
    }
  }
  promise.then((value) => (value === undefined ? call(null) : call(null, value)), (error) => call(error))
  return promise
}

let bluebird = null
/** bluebird, for `disposer()`: from ironlock's location, else from the application's. */
function loadBluebird() {
  if (bluebird !== null) return bluebird
  const attempts = [
    () => require('bluebird'),
    () => createRequire(path.join(process.cwd(), 'noop.js'))('bluebird'),
    () => require.main.require('bluebird'),
  ]
  for (const attempt of attempts) {
    try {
      bluebird = attempt()
      return bluebird
    } catch {
      // try the next place
    }
  }
  throw new Error('redlock.disposer() returns a bluebird disposer and needs the bluebird package: npm install bluebird')
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

// redlock 5 keys its votes by the user's ioredis clients, whose `options` hold their passwords:
// these collections stay what redlock's are, but show each client by its address.

class ClientSet extends Set {
  [inspect.custom](depth, options) {
    return inspect(new Set([...this].map(clientLabel)), { ...options, depth })
  }
}

class ClientMap extends Map {
  [inspect.custom](depth, options) {
    return inspect(new Map([...this].map(([client, vote]) => [clientLabel(client), vote])), { ...options, depth })
  }
}

/** `redis://host:port`: a client as inspect shows it. */
function clientLabel(client) {
  const options = client.options !== null && typeof client.options === 'object' ? client.options : client
  return `${options.tls ? 'rediss' : 'redis'}://${options.host ?? '127.0.0.1'}:${options.port ?? 6379}`
}

// ---------------------------------------------------------------------------------------------
// Lock

// The ironlock lock behind each of our Lock objects.
const INNER = new WeakMap()
// Locks made by the v4 API: `extend` updates them in place, failures are `LockError`s.
const LEGACY = new WeakSet()

/**
 * A held lock, in the shape of both versions: `resources`, `value`, `attempts`, `expiration`,
 * `release()`, `extend(duration)` (v5) and `resource`, `unlock(cb)`, `extend(ttl, cb)` (v4).
 */
class Lock {
  constructor(redlock, resources, value, attempts, expiration, settings) {
    this.redlock = redlock
    this.resources = resources
    this.value = value
    this.attempts = attempts
    this.expiration = expiration
    this.settings = settings
  }

  /** redlock 4's name for `resources` (v4 always made it an array too). */
  get resource() {
    return this.resources
  }

  /** ironlock's fencing token for this acquisition (an extension of the redlock API). */
  get fence() {
    const inner = INNER.get(this)
    return inner === undefined ? undefined : inner.fence
  }

  release() {
    return this.redlock.release(this)
  }

  unlock(callback) {
    return this.redlock.unlock(this, callback)
  }

  extend(duration, callback) {
    if (typeof callback === 'function' || LEGACY.has(this)) return this.redlock.extend(this, duration, callback)
    return this.redlock.extend(this, duration, this.settings)
  }

  // Without the Redlock and its clients (whose options may hold a password).
  [inspect.custom](depth, options) {
    const shown = { resources: this.resources, value: this.value, expiration: this.expiration }
    return `Lock ${inspect(shown, options)}`
  }
}

// ---------------------------------------------------------------------------------------------
// Redlock

class Redlock extends EventEmitter {
  #locker
  #closed = false
  #addresses
  #lockerDrift

  /**
   * @param clients ioredis clients (one per independent Redis); their `options` are read and the
   *   locker opens its own connections. One client: a single-Redis lock; 2+: Redlock (majority).
   * @param settings driftFactor, retryCount (-1 = forever), retryDelay, retryJitter,
   *   automaticExtensionThreshold, db
   */
  constructor(clients, settings = {}) {
    super()
    // Like redlock 5: an 'error' nobody listens to must not crash the process.
    this.on('error', () => {})

    if (clients == null || typeof clients[Symbol.iterator] !== 'function' || typeof clients === 'string') {
      const error = new TypeError('The "clients" argument must be an array of ioredis clients.')
      error.code = 'ERR_INVALID_ARG_TYPE'
      throw error
    }
    this.clients = new ClientSet(clients)
    if (this.clients.size === 0) throw new Error('Redlock must be instantiated with at least one redis client.')
    this.settings = pickSettings(settings, DEFAULT_SETTINGS)

    const targets = [...this.clients].map((client, index) => targetOf(client, index, this.settings.db))
    this.#addresses = [...this.clients].map(addressOf)
    this.#lockerDrift = this.settings.driftFactor
    this.#locker = new Locker(targets.length === 1 ? targets[0] : targets, {
      driftFactor: this.settings.driftFactor,
      wait: waitFor(this.settings),
    })
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
   * v5: locks `resources` for `duration` ms; rejects `ExecutionError` if they stay busy through
   * the retry window. v4 calls (`acquire('key', ttl)`, `acquire(r, ttl, callback)`) are served
   * as `lock`.
   */
  acquire(resources, duration, settings) {
    if (typeof settings === 'function') return this.#lockV4(resources, duration, {}, settings)
    if (typeof resources === 'string') return this.#lockV4(resources, duration, settings, undefined)
    return this.#acquireV5(resources, duration, settings)
  }

  /**
   * v5: releases the lock; resolves `{ attempts, start }`, rejects `ExecutionError` if it was no
   * longer held. v4 calls (`release(lock, callback)`, or a lock from `lock()`) are served as `unlock`.
   */
  release(lock, settings) {
    if (typeof settings === 'function' || LEGACY.has(lock)) return this.unlock(lock, settings)
    return this.#releaseV5(lock)
  }

  /**
   * v5: gives the lock `duration` ms from now and resolves a new `Lock` (the old one is
   * invalidated). v4 calls (`extend(lock, ttl, callback)`, or a lock from `lock()`) update the
   * lock in place and resolve it.
   */
  extend(lock, duration, settings) {
    if (typeof settings === 'function' || LEGACY.has(lock)) return this.#extendV4(lock, duration, settings)
    return this.#extendV5(lock, duration, settings)
  }

  /**
   * v5: acquires, runs `routine(signal, context)` and always releases. ironlock extends the lock
   * from native code while the routine runs; if it is lost anyway `signal` aborts and
   * `signal.error` is an `ExecutionError`.
   */
  async using(resources, duration, settingsOrRoutine, optionalRoutine) {
    integerDuration(duration)
    const settings = settingsOrRoutine && typeof settingsOrRoutine !== 'function'
      ? pickSettings(settingsOrRoutine, this.settings)
      : this.settings
    const routine = optionalRoutine ?? settingsOrRoutine
    if (typeof routine !== 'function') throw new Error('INVARIANT: routine is not a function.')
    if (settings.automaticExtensionThreshold > duration - 100) {
      throw new Error('A lock `duration` must be at least 100ms greater than the `automaticExtensionThreshold` setting.')
    }
    const keys = resourceList(resources)
    let signal = null
    let signalError = null
    let routineFailure = null
    const options = { ttl: duration, wait: waitFor(settings), autoExtend: true }
    try {
      return await this.#locker.using(keys, options, async (abortSignal, inner) => {
        signal = abortSignal
        Object.defineProperty(signal, 'error', {
          configurable: true,
          enumerable: true,
          get: () => {
            if (!signal.aborted) return undefined
            signalError ??= this.#executionError(signal.reason, keys)
            return signalError
          },
        })
        const given = typeof settingsOrRoutine === 'function' ? undefined : settingsOrRoutine
        const lock = this.#wrap(inner, keys, duration, given, this.#success(), false)
        const context = { lock, extensions: 0 }
        try {
          return await routine(signal, context)
        } catch (error) {
          routineFailure = { error }
          throw error
        }
      })
    } catch (error) {
      if (signal !== null && signal.aborted && error === signal.reason) throw signal.error
      if (routineFailure !== null && error === routineFailure.error) throw error
      if (error instanceof IronlockError) throw this.#executionError(error, keys)
      throw error
    }
  }

  /**
   * Closes ironlock's connections and, as redlock 4 and 5 do, calls `quit()` on every client given
   * to the constructor, so that a script that ends with it exits (a second call settles as theirs
   * does: as ioredis answers a `quit()` of a closed client).
   */
  quit(callback) {
    const closing = this.#closed ? Promise.resolve() : this.#locker.close()
    this.#closed = true
    const quitting = [...this.clients].map((client) => new Promise((resolve) => {
      resolve(typeof client.quit === 'function' ? client.quit() : undefined)
    }))
    return nodeify(Promise.all([closing, ...quitting]).then(() => undefined), callback)
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
    return nodeify(this.#unlockV4(lock), callback)
  }

  /** v4: a bluebird disposer that locks `resource` and unlocks it after `Promise.using`. */
  disposer(resource, ttl, errorHandler) {
    const handler = typeof errorHandler === 'function' ? errorHandler : () => {}
    const Bluebird = loadBluebird()
    return Bluebird.resolve(this.lock(resource, ttl)).disposer((lock) => lock.unlock().catch(handler))
  }

  // Without the clients (whose options may hold a password).
  [inspect.custom](depth, options) {
    return `Redlock ${inspect({ locker: this.#locker, settings: this.settings }, options)}`
  }

  // ----- internals --------------------------------------------------------------------------

  async #acquireV5(resources, duration, settings) {
    integerDuration(duration)
    const merged = pickSettings(settings, this.settings)
    const keys = resourceList(resources)
    let inner
    try {
      inner = await this.#locker.acquire(keys, { ttl: duration, wait: waitFor(merged) })
    } catch (error) {
      if (error instanceof IronlockError) throw this.#executionError(error, keys)
      throw error
    }
    return this.#wrap(inner, keys, duration, settings, this.#success(), false)
  }

  async #releaseV5(lock) {
    const inner = this.#inner(lock)
    lock.expiration = 0
    const start = Date.now()
    let released
    try {
      released = await this.#locker.release(inner)
    } catch (error) {
      if (error instanceof IronlockError) throw this.#executionError(error, lock.resources)
      throw error
    }
    if (!released) {
      const lost = new LockLostError(`lock "${lock.resources[0]}" had expired or been taken before it was released`, { key: lock.resources[0] })
      throw this.#executionError(lost, lock.resources)
    }
    return { attempts: this.#success(), start }
  }

  async #extendV5(lock, duration, settings) {
    integerDuration(duration)
    const inner = this.#inner(lock)
    if (lock.expiration < Date.now()) throw new ExecutionError('Cannot extend an already-expired lock.', [])
    try {
      await this.#locker.extend(inner, duration)
    } catch (error) {
      if (error instanceof IronlockError) throw this.#executionError(error, lock.resources)
      throw error
    }
    lock.expiration = 0
    return this.#wrap(inner, lock.resources, duration, settings ?? lock.settings, this.#success(), false)
  }

  #lockV4(resource, ttl, options, callback) {
    const settings = pickSettings(options, this.settings)
    const keys = resourceList(resource)
    const attempt = async () => {
      let inner
      try {
        inner = await this.#locker.acquire(keys, { ttl: Math.ceil(ttl), wait: waitFor(settings) })
      } catch (error) {
        if (!(error instanceof IronlockError)) throw error
        this.#report(error, keys)
        const attempts = settings.retryCount + 1
        throw new LockError(`Exceeded ${settings.retryCount} attempts to lock the resource "${keys}".`, attempts, { cause: error })
      }
      const lock = this.#wrap(inner, keys, Math.ceil(ttl), undefined, 1, true)
      lock.attemptsRemaining = settings.retryCount - 1
      return lock
    }
    return nodeify(attempt(), callback)
  }

  async #unlockV4(lock) {
    const inner = this.#inner(lock)
    lock.expiration = 0
    let released
    let failure
    try {
      released = await this.#locker.release(inner)
    } catch (error) {
      if (!(error instanceof IronlockError)) throw error
      this.#report(error, lock.resources)
      released = false
      failure = error
    }
    if (!released) {
      throw new LockError(`Unable to fully release the lock on resource "${lock.resources}".`, undefined,
        failure === undefined ? undefined : { cause: failure })
    }
  }

  #extendV4(lock, ttl, callback) {
    const attempt = async () => {
      const inner = this.#inner(lock)
      if (lock.expiration < Date.now()) {
        throw new LockError(`Cannot extend lock on resource "${lock.resources}" because the lock has already expired.`, 0)
      }
      try {
        await this.#locker.extend(inner, Math.ceil(ttl))
      } catch (error) {
        if (!(error instanceof IronlockError)) throw error
        this.#report(error, lock.resources)
        throw new LockError(`Exceeded ${this.settings.retryCount} attempts to lock the resource "${lock.resources}".`, 1, { cause: error })
      }
      lock.expiration = this.#expiration(inner, Math.ceil(ttl), undefined)
      return lock
    }
    return nodeify(attempt(), callback)
  }

  /** Our Lock around ironlock's `inner`. */
  #wrap(inner, keys, duration, settings, attempts, legacy) {
    const lock = new Lock(this, keys, inner.token, attempts, this.#expiration(inner, duration, settings), settings)
    INNER.set(lock, inner)
    if (legacy) LEGACY.add(lock)
    return lock
  }

  /** ironlock's drift-adjusted `expiresAt`, adjusted again for a per-call (or changed) `driftFactor`. */
  #expiration(inner, duration, settings) {
    const driftFactor = settings && typeof settings.driftFactor === 'number' ? settings.driftFactor : this.settings.driftFactor
    return inner.expiresAt + Math.round(this.#lockerDrift * duration) - Math.round(driftFactor * duration)
  }

  #inner(lock) {
    const inner = lock !== null && typeof lock === 'object' ? INNER.get(lock) : undefined
    if (inner === undefined) {
      const error = new TypeError('The "lock" argument must be a Lock returned by this module\'s acquire, lock or using.')
      error.code = 'ERR_INVALID_ARG_TYPE'
      throw error
    }
    return inner
  }

  #stats(votesFor, votesAgainst) {
    const membershipSize = this.clients.size
    return { membershipSize, quorumSize: Math.floor(membershipSize / 2) + 1, votesFor, votesAgainst }
  }

  /** The `attempts` of a success: ironlock does not report per-node votes then, so all vote for. */
  #success() {
    return Object.freeze([Promise.resolve(this.#stats(new ClientSet(this.clients), new ClientMap()))])
  }

  /**
   * Turns a failed ironlock operation into redlock's per-node votes, emitting `error` (v5) for
   * every vote against and `clientError` (v4) for every node that failed to answer.
   */
  #report(error, keys) {
    const clients = [...this.clients]
    const votesFor = new ClientSet()
    const votesAgainst = new ClientMap()
    const locked = () => new ResourceLockedError(`The operation was applied to: 0 of the ${keys.length} requested resources.`)
    const nodeFailure = (message, cause) => {
      const failure = new Error(message, cause === undefined ? undefined : { cause })
      this.emit('clientError', failure)
      return failure
    }
    if (error instanceof QuorumError && error.votes) {
      const { errors = [], against = 0 } = error.votes
      const unmatched = []
      for (const { node, message } of errors) {
        const index = this.#addresses.findIndex((address, i) => address !== null && !votesAgainst.has(clients[i]) &&
          (node === address || String(node).endsWith(address) || String(node).includes(`${address}/`)))
        const failure = nodeFailure(`${node}: ${message}`)
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
    } else if (error instanceof LockConnectionError) {
      for (const client of clients) votesAgainst.set(client, error)
      this.emit('clientError', error)
    } else if (error instanceof LockBusyError || error instanceof LockLostError) {
      for (const client of clients) votesAgainst.set(client, locked())
    } else {
      for (const client of clients) votesAgainst.set(client, error)
    }
    const seen = new Set()
    for (const failure of votesAgainst.values()) {
      if (seen.has(failure)) continue
      seen.add(failure)
      this.emit('error', failure)
    }
    return Object.freeze([Promise.resolve(this.#stats(votesFor, votesAgainst))])
  }

  #executionError(error, keys) {
    return new ExecutionError(NO_QUORUM, this.#report(error, keys), { cause: error })
  }
}

/** What ironlock's Locker is given for one client: the client itself, or its options with `db`. */
function targetOf(client, index, db) {
  if (client === null || typeof client !== 'object') {
    const error = new TypeError(`The "clients[${index}]" argument must be an ioredis client.`)
    error.code = 'ERR_INVALID_ARG_TYPE'
    throw error
  }
  const options = client.options
  // node-redis 4+ keeps its address in `url` / `socket`; reading it as ioredis options would
  // silently lock on 127.0.0.1:6379.
  if (options && typeof options === 'object' && !('host' in options) && ('url' in options || 'socket' in options)) {
    const error = new TypeError(`The "clients[${index}]" argument must be an ioredis client; node-redis clients are not supported.`)
    error.code = 'ERR_INVALID_ARG_TYPE'
    throw error
  }
  if (db !== undefined && options && typeof options === 'object' && client.isCluster !== true) {
    return clientOptions({ ...options, db })
  }
  return client
}

/** `host:port` of a client, to match ironlock's per-node errors to clients. */
function addressOf(client) {
  const options = client && client.options
  if (!options || typeof options !== 'object' || options.port === undefined) return null
  return `${options.host ?? '127.0.0.1'}:${options.port}`
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
