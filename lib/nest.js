'use strict'

// `@Locked(key | (...args) => key, options?)`: runs a method under a lock. `require('ironlock/nest')`.

const { invalidArgType } = require('./errors')
const { acquireOptions, keysArgument, objectArgument, knownOptions, ACQUIRE_OPTIONS } = require('./validate')
const { LOCK_DEFAULTS } = require('./defaults')
const LOCKED_OPTIONS = [...ACQUIRE_OPTIONS, 'locker']

/**
 * A method decorator: every call runs as `locker.using(key, options, () => method(...args))`, so
 * the decorated method always returns a Promise. A method whose result is an Observable (or a
 * Promise of one) holds the lock until it completes, and the call resolves with its last value.
 * `key` is a lock key, or a function called with the method's arguments (and the instance as
 * `this`) that returns one. `options` are the AcquireOptions plus `locker` (default: ironlock's
 * default locker, looked up on every call).
 * Works as a TypeScript (`experimentalDecorators`, as in NestJS) and as a standard decorator.
 */
function Locked(key, options) {
  if (typeof key !== 'function' && typeof key !== 'string' && !Array.isArray(key)) {
    throw invalidArgType('key', 'a string, an array of strings or a function', key)
  }
  if (typeof key !== 'function') keysArgument(key, 'key')
  const { locker, ...lockOptions } = knownOptions(objectArgument(options, 'options'), LOCKED_OPTIONS)
  if (locker !== undefined && (locker === null || typeof locker.using !== 'function')) {
    throw invalidArgType('options.locker', 'an ironlock Locker', locker)
  }
  // The defaults only fill the gaps, so the given options can be checked when the class is defined.
  acquireOptions(lockOptions, LOCK_DEFAULTS)

  const lockedVersionOf = (method, name) => {
    // A computed method name keeps `name` (stack traces, Nest's logs).
    const { [name]: wrapper } = {
      async [name](...args) {
        const lockKey = typeof key === 'function' ? key.apply(this, args) : key
        const target = locker ?? require('..').getDefaultLocker()
        return target.using(lockKey, lockOptions, async () => settledResult(await method.apply(this, args)))
      },
    }
    copyMetadata(method, wrapper)
    return wrapper
  }

  return function decorateLocked(target, propertyKey, descriptor) {
    if (isStandardMethodContext(propertyKey)) return lockedVersionOf(target, propertyKey.name)
    if (descriptor === undefined || typeof descriptor.value !== 'function') throw notAMethod(propertyKey)
    return { ...descriptor, value: lockedVersionOf(descriptor.value, propertyKey) }
  }
}

/**
 * What the method's call settles with. An Observable's work runs when it is subscribed: returned
 * as it is, Nest would subscribe once the lock is released. So it is subscribed here, under the
 * lock, and its last value is the result, as Nest answers an HTTP request with.
 */
function settledResult(result) {
  if (!isObservable(result)) return result
  return new Promise((resolve, reject) => {
    let last
    result.subscribe({
      next: (value) => { last = value },
      error: reject,
      complete: () => resolve(last),
    })
  })
}

/** rxjs's own test (`isObservable`), which Nest uses to decide it subscribes to a result. */
function isObservable(value) {
  return value !== null && typeof value === 'object' && typeof value.subscribe === 'function' && typeof value.lift === 'function'
}

function notAMethod(propertyKey) {
  const error = new TypeError(`@Locked() decorates methods; "${String(propertyKey)}" is not one`)
  error.code = 'ERR_INVALID_ARG_TYPE'
  return error
}

/** The second argument of a standard (TC39) method decorator. */
function isStandardMethodContext(value) {
  return value !== null && typeof value === 'object' && value.kind === 'method'
}

/**
 * Moves the reflect-metadata of the original method (e.g. Nest's `@Post()` applied before
 * `@Locked()`) onto the wrapper, so route and guard decorators keep working in either order.
 */
function copyMetadata(from, to) {
  if (typeof Reflect.getMetadataKeys !== 'function') return
  for (const metadataKey of Reflect.getMetadataKeys(from)) {
    Reflect.defineMetadata(metadataKey, Reflect.getMetadata(metadataKey, from), to)
  }
}

module.exports = { Locked }
