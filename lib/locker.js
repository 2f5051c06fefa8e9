'use strict'

const { inspect } = require('node:util')
const { binding: { NativeLocker } } = require('./native')
const { Dispatcher, Status, Flags } = require('./dispatch')
const {
  LockBusyError, LockLostError, LockConnectionError, lockBusyError, lockClosedError, fromNative,
  invalidArgType, invalidArgValue, invalidThis, illegalConstructor,
} = require('./errors')
const { keysArgument, durationArgument, acquireOptions, functionArgument } = require('./validate')
const { resolveTarget } = require('./target')
const { Wire } = require('./wire')
const { ShardWires } = require('./shard-wires')

const NO_WAIT = 0
const WAIT_FOREVER = -1
// Only a Locker makes Locks: one made by hand could name the id of another holder's lock.
const MAKE_LOCK = Symbol('MAKE_LOCK')
// `letLapse(lock)`: internal to the JS layer (the Express middleware), not part of the API. Set
// by Locker's static block, which alone can reach its private methods.
let letLapse

/** A held lock. Only a Locker makes them; `release` and `extend` refuse any other object. */
class Lock {
  #locker
  #id
  #keys
  #token
  #fence
  #expiresAt

  constructor(make, locker, id, keys, token, fence, expiresAt) {
    if (make !== MAKE_LOCK) throw illegalConstructor()
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

  // `this`, if it is a Lock: an object made from Lock.prototype gets a Node-style error.
  static #self(value) {
    if (!Lock.isLock(value)) throw invalidThis('Lock')
    return value
  }

  /** The first key. */
  get key() {
    return Lock.#self(this).#keys[0]
  }

  /** The keys as given, without the locker's prefix. */
  get keys() {
    return Lock.#self(this).#keys
  }

  /** The value stored in Redis: a uuid v4 starting with `10c4ed00`, the mark of an ironlock holder. */
  get token() {
    return Lock.#self(this).#token
  }

  /** Fencing token: grows strictly with every acquisition of the key. */
  get fence() {
    return Lock.#self(this).#fence
  }

  /** Epoch ms until which the lock is surely still ours (TTL less clock drift). */
  get expiresAt() {
    return Lock.#self(this).#expiresAt
  }

  release() {
    try {
      return Lock.#self(this).#locker.release(this)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  extend(ttl) {
    try {
      return Lock.#self(this).#locker.extend(this, ttl)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  toJSON() {
    return { key: this.key, keys: this.keys, token: this.token, fence: this.fence, expiresAt: this.expiresAt }
  }

  // Inspecting never throws, not even on an object made from Lock.prototype.
  [inspect.custom](depth, options) {
    return Lock.isLock(this) ? `Lock ${inspect(this.toJSON(), options)}` : 'Lock {}'
  }
}

class Locker {
  #native
  #dispatch
  #defaults
  #description
  #closed = false
  // The `onLost` of every running `using` body → its key, so `close()` can abort their signals.
  #holders = new Map()

  /**
   * @param target where the locks live: a redis:// URL, ioredis-style options, or an ioredis client;
   *   without one, `REDIS_URL`, else redis://127.0.0.1:6379 (lib/target.js)
   * @param defaults per-locker defaults for acquire options and connection settings
   */
  constructor(target, defaults) {
    const { native, lockDefaults, description } = resolveTarget(target, defaults)
    acquireOptions(undefined, lockDefaults, 'defaults')
    this.#defaults = lockDefaults
    this.#description = description
    this.#dispatch = new Dispatcher()
    this.#native = new NativeLocker(native, this.#dispatch.onComplete)
    this.#dispatch.native = this.#native
    // The fast path: one Redis, or the master the sentinels name (the native side says where it
    // is), or on a Redis Cluster a socket per master.
    const wireNode = native.mode === 'single' ? native.nodes[0] : native.mode === 'sentinel' ? native.master : null
    if (wireNode) this.#dispatch.wire = new Wire(this.#native, wireNode, native, this.#dispatch.onComplete)
    else if (native.mode === 'cluster') this.#dispatch.wire = new ShardWires(this.#native, native.nodes[0], native, this.#dispatch.onComplete)
  }

  // `this`, if it is a Locker: a method called on anything else (e.g. detached) gets a Node-style error.
  static #self(value) {
    if (value === null || typeof value !== 'object' || !(#native in value)) throw invalidThis('Locker')
    return value
  }

  /** Takes the lock, waiting up to `options.wait` ms (default: the locker's, see lib/defaults.js) while someone else holds it. */
  acquire(key, options) {
    try {
      return Locker.#self(this).#acquire(key, acquireOptions(options, this.#defaults), 0)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** Takes the lock if it is free right now; resolves `null` if it is not. */
  tryAcquire(key, options) {
    try {
      const settings = acquireOptions(options, Locker.#self(this).#defaults)
      settings.wait = NO_WAIT
      return this.#acquire(key, settings, 0).catch((error) => {
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
      const id = Locker.#self(this).#ownLock(lock, 'lock')
      return this.#call((op) => this.#dispatch.release(op, id), (completion) => completion.released, lock.key)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** Gives the lock `ttl` ms (default: its own TTL) more life from now; rejects LockLostError if it is no longer ours. */
  extend(lock, ttl) {
    try {
      const id = Locker.#self(this).#ownLock(lock, 'lock')
      const ms = ttl === undefined ? 0 : Math.ceil(durationArgument(ttl, 'ttl'))
      return this.#call(
        (op) => this.#dispatch.extend(op, id, ms, lock.key),
        (completion) => Lock.extended(lock, completion.expiresAt),
        lock.key,
      )
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /**
   * Acquires the lock, runs `fn(signal, lock)`, and always releases. While `fn` runs the lock is
   * extended from native code; if it is lost anyway (or can no longer be known to be ours),
   * `signal` aborts with a LockLostError by the time its lease can have ended, and `using`
   * rejects with it.
   */
  async using(key, options, fn) {
    if (typeof options === 'function' && fn === undefined) {
      fn = options
      options = undefined
    }
    functionArgument(fn, 'fn')
    const settings = acquireOptions(options, Locker.#self(this).#defaults)
    const controller = new AbortController()
    let lost = null
    const onLost = (error) => {
      if (lost !== null) return
      lost = error
      controller.abort(error)
    }
    const watch = settings.autoExtend ? Flags.Watchdog : Flags.WatchLease
    const lock = await this.#acquire(key, settings, watch, (held) => {
      this.#dispatch.watch(Lock.id(held), onLost)
      this.#holders.set(onLost, held.key)
    })
    const id = Lock.id(lock)
    let result
    try {
      result = await fn(controller.signal, lock)
    } catch (error) {
      this.#endHold(id, onLost)
      if (lost) throw this.#releaseLost(lock, lost)
      await this.release(lock).catch(() => {})
      throw error
    }
    this.#endHold(id, onLost)
    if (lost) throw this.#releaseLost(lock, lost)
    let released
    try {
      released = await this.release(lock)
    } catch (error) {
      // `fn` finished while the lock was surely ours (else `lost` would be set): its result
      // stands, and the lock expires by its TTL. A rejection here would invite a retry of
      // work that already ran.
      warnReleaseFailed(lock, error)
      return result
    }
    if (!released) {
      throw new LockLostError(`lock "${lock.key}" expired or was taken before the work finished`, { key: lock.key })
    }
    return result
  }

  /**
   * Closes the connections. Pending waits reject; the signals of running `using` bodies abort
   * (their locks are no longer extended and expire by their TTL); later calls reject with
   * LockConnectionError.
   */
  async close() {
    if (Locker.#self(this).#closed) return
    this.#closed = true
    for (const [onLost, key] of this.#holders) {
      onLost(new LockConnectionError(`the locker was closed while lock "${key}" was held; it is no longer extended`, {
        key,
        cause: new Error('locker closed'),
      }))
    }
    this.#holders.clear()
    this.#dispatch.wire?.close()
    this.#native.close()
    this.#dispatch.close({ code: 'ECONNECTION', key: '', message: 'the locker was closed before the operation finished' })
  }

  [inspect.custom]() {
    if (!(#description in this)) return 'Locker {}'
    return `Locker { target: '${this.#description}'${this.#closed ? ', closed' : ''} }`
  }

  /**
   * Releases a lock its holder was told is lost, in case it still is ours, without waiting:
   * Redis may be the reason it was given up, and the caller should hear of the loss at once.
   */
  #releaseLost(lock, lost) {
    this.release(lock).catch(() => {})
    return lost
  }

  #endHold(id, onLost) {
    this.#dispatch.unwatch(id)
    this.#holders.delete(onLost)
  }

  /**
   * Stops extending `lock` and lets its lease run out: its `using` signal still aborts with a
   * LockLostError when the lease can have ended, and from then on it is left to expire in Redis
   * instead of being released. Released before then, it is released as usual.
   */
  #letLapse(lock) {
    if (!this.#closed) this.#dispatch.letLapse(Lock.id(lock))
  }

  static {
    letLapse = (lock) => {
      if (Lock.isLock(lock)) Lock.locker(lock).#letLapse(lock)
    }
  }

  #ownLock(lock, name) {
    if (!Lock.isLock(lock)) throw invalidArgType(name, 'a Lock returned by acquire or tryAcquire', lock)
    if (Lock.locker(lock) !== this) throw invalidArgValue(name, 'belongs to another Locker; release it through lock.release()')
    return Lock.id(lock)
  }

  /** Runs one native operation; `settle(completion)` turns its completion (a CompletionView, read at once) into the result. */
  #call(start, settle, key) {
    if (this.#closed) return Promise.reject(lockClosedError(key))
    return new Promise((resolve, reject) => {
      const op = this.#dispatch.start({
        resolve: (completion) => resolve(settle(completion)),
        // Only the failures JS makes itself (a locker closing under the call) lack the key.
        reject: (failure) => reject(fromNative(failure.key ? failure : { ...failure, key })),
      })
      start(op)
    })
  }

  /**
   * `watch`: 0, or the Flags that ask the native side to watch the lock's lease; `onHeld(lock)`
   * then runs as the lock arrives, before any later completion (its loss) is read.
   */
  #acquire(key, settings, watch, onHeld) {
    const keys = keysArgument(key)
    const { signal, ttl, wait, replicas, replicasTimeout } = settings
    if (this.#closed) return Promise.reject(lockClosedError(keys[0]))
    if (signal && signal.aborted) return Promise.reject(signal.reason)
    return new Promise((resolve, reject) => {
      let onAbort
      // Runs among the dispatcher's batch of completions, where a throw from the caller's signal
      // would reach other callers' results: a listener the signal does not let go stays, inert.
      const detach = () => {
        const listener = onAbort
        onAbort = undefined
        try {
          if (listener) signal.removeEventListener('abort', listener)
        } catch {
          // `onAbort` is unset, so the listener does nothing.
        }
      }
      const record = {
        resolve: (completion) => {
          detach()
          if (completion.status === Status.Busy) {
            reject(lockBusyError(keys[0], completion.retryAfter))
          } else {
            const { lock: id, token, fence, expiresAt } = completion
            const lock = new Lock(MAKE_LOCK, this, id, keys, token, fence, expiresAt)
            onHeld?.(lock)
            resolve(lock)
          }
        },
        reject: (failure) => {
          detach()
          reject(fromNative(failure))
        },
      }
      const op = this.#dispatch.start(record)
      let requested = false
      if (signal) {
        onAbort = () => {
          if (onAbort === undefined) return
          // Read first: if it throws, nothing has changed and the call goes on.
          const { reason } = signal
          onAbort = undefined
          if (requested) {
            // The request must have reached the native side for the cancel to find it.
            this.#dispatch.flush()
            this.#native.cancel(op)
            // Whatever arrives after the abort is not ours to read: a lock granted meanwhile is
            // given back by the native side, which the cancel told.
            record.resolve = () => {}
            record.reject = () => {}
          } else {
            // Aborted while its listener was being added (a signal that calls it at once):
            // nothing was requested, so forgetting the operation is all it takes.
            this.#dispatch.finish(op)
          }
          reject(reason)
        }
        try {
          signal.addEventListener('abort', onAbort, { once: true })
        } catch (error) {
          // Nothing was requested yet: forgetting the operation is all it takes.
          this.#dispatch.finish(op)
          throw error
        }
        if (onAbort === undefined) return
      }
      const flags = (signal === undefined ? 0 : Flags.Cancellable) | watch
      this.#dispatch.acquire(op, keys, ttl, wait === Infinity ? WAIT_FOREVER : wait, flags, replicas, replicasTimeout)
      requested = true
    })
  }
}

/** Tells operators, not the caller, that a finished `using` could not release its lock. */
function warnReleaseFailed(lock, error) {
  process.emitWarning(`lock "${lock.key}" was not released after its work finished (${error.message}); ` +
    'it expires by its TTL', { type: 'IronlockWarning', code: 'IRONLOCK_RELEASE_FAILED' })
}

module.exports = { Locker, Lock, letLapse }
