'use strict'

const { inspect } = require('node:util')
const { NativeLocker } = require('../binding')
const { Dispatcher, Status, Kind, Flags } = require('./dispatch')
const { LockBusyError, LockLostError, LockConnectionError, fromNative, invalidArgType, invalidArgValue } = require('./errors')
const { keysArgument, durationArgument, acquireOptions, functionArgument } = require('./validate')
const { resolveTarget } = require('./target')
const { Wire } = require('./wire')

const NO_WAIT = 0
const WAIT_FOREVER = -1

/** A held lock. Only a Locker makes them; `release` and `extend` refuse any other object. */
class Lock {
  #locker
  #id
  #keys
  #token
  #fence
  #expiresAt

  constructor(locker, id, keys, token, fence, expiresAt) {
    this.#locker = locker
    this.#id = id
    this.#keys = Object.freeze(keys)
    this.#token = token
    this.#fence = fence
    this.#expiresAt = expiresAt
  }

  static isLock(value) {
    return value !== null && typeof value === 'object' && #id in value
  }

  static locker(lock) {
    return lock.#locker
  }

  static id(lock) {
    return lock.#id
  }

  static extended(lock, expiresAt) {
    lock.#expiresAt = expiresAt
    return lock
  }

  /** The first key. */
  get key() {
    return this.#keys[0]
  }

  /** The keys as given, without the locker's prefix. */
  get keys() {
    return this.#keys
  }

  /** The value stored in Redis (uuid v4). */
  get token() {
    return this.#token
  }

  /** Fencing token: grows strictly with every acquisition of the key. */
  get fence() {
    return this.#fence
  }

  /** Epoch ms until which the lock is surely still ours (TTL less clock drift). */
  get expiresAt() {
    return this.#expiresAt
  }

  release() {
    return this.#locker.release(this)
  }

  extend(ttl) {
    return this.#locker.extend(this, ttl)
  }

  toJSON() {
    return { key: this.key, keys: this.keys, token: this.token, fence: this.fence, expiresAt: this.expiresAt }
  }

  [inspect.custom](depth, options) {
    return `Lock ${inspect(this.toJSON(), options)}`
  }
}

class Locker {
  #native
  #dispatch
  #defaults
  #description
  #closed = false

  /**
   * @param target where the locks live: a redis:// URL, ioredis-style options, or an ioredis client
   * @param defaults per-locker defaults for acquire options and connection settings
   */
  constructor(target = process.env.REDIS_URL || 'redis://127.0.0.1:6379', defaults) {
    const { native, lockDefaults, description } = resolveTarget(target, defaults)
    acquireOptions(undefined, lockDefaults, 'defaults')
    this.#defaults = lockDefaults
    this.#description = description
    this.#dispatch = new Dispatcher()
    this.#native = new NativeLocker(native, this.#dispatch.onComplete)
    this.#dispatch.native = this.#native
    if (native.mode === 'single') {
      this.#dispatch.wire = new Wire(this.#native, native.nodes[0], native, this.#dispatch.onComplete)
    }
  }

  /** Takes the lock, waiting up to `options.wait` ms (default 10000) while someone else holds it. */
  acquire(key, options) {
    try {
      return this.#acquire(key, acquireOptions(options, this.#defaults), false)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** Takes the lock if it is free right now; resolves `null` if it is not. */
  tryAcquire(key, options) {
    try {
      const settings = acquireOptions(options, this.#defaults)
      settings.wait = NO_WAIT
      return this.#acquire(key, settings, false).catch((error) => {
        if (error instanceof LockBusyError) return null
        throw error
      })
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** Resolves `true` if the lock was ours and is now gone, `false` if it had expired or been taken. */
  release(lock) {
    try {
      const id = this.#ownLock(lock, 'lock')
      return this.#call((op) => this.#dispatch.request(Kind.Release, op, id, 0, 0), (status, released) => released === 1, lock.key)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** Gives the lock `ttl` ms (default: its own TTL) more life from now; rejects LockLostError if it is no longer ours. */
  extend(lock, ttl) {
    try {
      const id = this.#ownLock(lock, 'lock')
      const ms = ttl === undefined ? 0 : Math.ceil(durationArgument(ttl, 'ttl'))
      return this.#call(
        (op) => this.#dispatch.request(Kind.Extend, op, id, ms, 0),
        (status, a, b, expiresAt) => Lock.extended(lock, expiresAt),
        lock.key,
      )
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /**
   * Acquires the lock, runs `fn(signal, lock)`, and always releases. While `fn` runs the lock is
   * extended from native code; if it is lost anyway, `signal` aborts with a LockLostError and
   * `using` rejects with it.
   */
  async using(key, options, fn) {
    if (typeof options === 'function' && fn === undefined) {
      fn = options
      options = undefined
    }
    functionArgument(fn, 'fn')
    const settings = acquireOptions(options, this.#defaults)
    const lock = await this.#acquire(key, settings, settings.autoExtend)
    const id = Lock.id(lock)
    const controller = new AbortController()
    let lost = null
    const onLost = (error) => {
      lost = error
      controller.abort(error)
    }
    if (settings.autoExtend) this.#dispatch.watch(id, onLost)
    let result
    try {
      result = await fn(controller.signal, lock)
    } catch (error) {
      this.#dispatch.unwatch(id)
      await this.release(lock).catch(() => {})
      throw lost ?? error
    }
    this.#dispatch.unwatch(id)
    const released = await this.release(lock)
    if (lost) throw lost
    if (!released) {
      throw new LockLostError(`lock "${lock.key}" expired or was taken before the work finished`, { key: lock.key })
    }
    return result
  }

  /** Closes the connections. Pending waits reject; later calls reject with LockConnectionError. */
  async close() {
    if (this.#closed) return
    this.#closed = true
    this.#dispatch.wire?.close()
    this.#native.close()
    this.#dispatch.close({ code: 'ECONNECTION', key: '', message: 'the locker was closed before the operation finished' })
  }

  [inspect.custom]() {
    return `Locker { target: '${this.#description}'${this.#closed ? ', closed' : ''} }`
  }

  #ownLock(lock, name) {
    if (!Lock.isLock(lock)) throw invalidArgType(name, 'a Lock returned by acquire or tryAcquire', lock)
    if (Lock.locker(lock) !== this) throw invalidArgValue(name, 'belongs to another Locker; release it through lock.release()')
    return Lock.id(lock)
  }

  #closedError(key) {
    return new LockConnectionError(`the locker was closed; nothing was done for lock "${key}"`, {
      key,
      cause: new Error('locker closed'),
    })
  }

  /** Runs one native operation; `settle(status, a, b, c, text)` turns its completion into the result. */
  #call(start, settle, key) {
    if (this.#closed) return Promise.reject(this.#closedError(key))
    return new Promise((resolve, reject) => {
      const op = this.#dispatch.start({
        resolve: (...completion) => resolve(settle(...completion)),
        reject: (failure) => reject(fromNative(key && !failure.key ? { ...failure, key } : failure)),
      })
      start(op)
    })
  }

  #acquire(key, settings, watchdog) {
    const keys = keysArgument(key)
    const { signal, ttl, wait } = settings
    if (this.#closed) return Promise.reject(this.#closedError(keys[0]))
    if (signal && signal.aborted) return Promise.reject(signal.reason)
    return new Promise((resolve, reject) => {
      let onAbort
      const record = {
        resolve: (status, id, fence, expiresAt, token) => {
          if (onAbort) signal.removeEventListener('abort', onAbort)
          if (status === Status.Busy) {
            const retryAfter = id < 0 ? -1 : id
            reject(new LockBusyError(`lock "${keys[0]}" is held by someone else` +
              (retryAfter >= 0 ? `; it expires in ${retryAfter} ms at the latest` : ''), { key: keys[0], retryAfter }))
          } else {
            resolve(new Lock(this, id, keys, token, fence, expiresAt))
          }
        },
        reject: (failure) => {
          if (onAbort) signal.removeEventListener('abort', onAbort)
          reject(fromNative(failure))
        },
      }
      const op = this.#dispatch.start(record)
      if (signal) {
        onAbort = () => {
          // The request must have reached the native side for the cancel to find it.
          this.#dispatch.flush()
          this.#native.cancel(op)
          // A lock that lands after the abort is released instead of handed out.
          record.resolve = (status, id) => {
            if (status === Status.Acquired) this.#dispatch.request(Kind.Release, 0, id, 0, 0)
          }
          record.reject = () => {}
          reject(signal.reason)
        }
        signal.addEventListener('abort', onAbort, { once: true })
      }
      const flags = (signal === undefined ? 0 : Flags.Cancellable) | (watchdog ? Flags.Watchdog : 0)
      this.#dispatch.request(Kind.Acquire, op, ttl, wait === Infinity ? WAIT_FOREVER : wait, flags, keys)
    })
  }
}

module.exports = { Locker, Lock }
