'use strict'

// Lock errors: every one is a LockError with a stable `code` and the `key` it concerns.

class LockError extends Error {
  constructor(message, { code = 'ELOCK', key, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause })
    this.name = new.target.name
    this.code = code
    this.key = key
  }
}

class LockBusyError extends LockError {
  constructor(message, { key, retryAfter }) {
    super(message, { code: 'ELOCKBUSY', key })
    // ms until the holder's TTL ends; -1 when the holder set no TTL.
    this.retryAfter = retryAfter
  }
}

class LockLostError extends LockError {
  constructor(message, { key }) {
    super(message, { code: 'ELOCKLOST', key })
  }
}

class QuorumError extends LockError {
  constructor(message, { key, votes }) {
    super(message, { code: 'EQUORUM', key })
    this.votes = votes
  }
}

class LockConnectionError extends LockError {
  constructor(message, { key, cause }) {
    super(message, { code: 'ECONNECTION', key, cause })
  }
}

class LockKeyTypeError extends LockError {
  constructor(message, { key, type }) {
    super(message, { code: 'EKEYTYPE', key })
    // The Redis type found at the key ('hash', 'list', …), where a lock is a string.
    this.type = type
  }
}

class ReplicationError extends LockError {
  constructor(message, { key, acknowledged, wanted }) {
    super(message, { code: 'EREPLICAS', key })
    // How many replicas acknowledged the lock in time, of the `wanted` asked for (`replicas`).
    this.acknowledged = acknowledged
    this.wanted = wanted
  }
}

/**
 * The LockBusyError about `key` for a busy completion, which carries only `retryAfter` (ms until
 * the holder's TTL ends; -1: none). Its message is the core's (`LockError::Busy`), as those of the
 * errors the native side reports are: this is the one place JS makes a busy error.
 */
function lockBusyError(key, retryAfter) {
  // Required here, not on load: argument checks use this module without the addon.
  const { binding } = require('./native')
  return new LockBusyError(binding.busyMessage(key, retryAfter), { key, retryAfter })
}

/** The LockConnectionError of a call about `key` on a closed locker; its message is the core's (`LockError::Closed`). */
function lockClosedError(key) {
  const { binding } = require('./native')
  return new LockConnectionError(binding.closedMessage(key), { key, cause: new Error('locker closed') })
}

function abortError() {
  return new DOMException('This operation was aborted', 'AbortError')
}

/**
 * Builds the error a native failure describes: a `NativeFailure` (src/binding/completions.rs),
 * `{ code, key, message, retryAfter?, votes?, detail?, type?, acknowledged?, wanted? }`, or one JS
 * made (with a `cause`).
 */
function fromNative({ code, key, message, retryAfter, votes, detail, type, acknowledged, wanted, cause }) {
  switch (code) {
    case 'ELOCKBUSY':
      return new LockBusyError(message, { key, retryAfter })
    case 'ELOCKLOST':
      return new LockLostError(message, { key })
    case 'EQUORUM':
      return new QuorumError(message, { key, votes })
    case 'EKEYTYPE':
      return new LockKeyTypeError(message, { key, type })
    case 'EREPLICAS':
      return new ReplicationError(message, { key, acknowledged, wanted })
    case 'EINTERNAL':
      // A bug in ironlock (its message says so and asks for a report), not a fault of Redis.
      return new LockError(message, { code, key })
    case 'ABORT_ERR':
      return abortError()
    default:
      return new LockConnectionError(message, { key, cause: cause ?? new Error(detail ?? message) })
  }
}

// Node-style argument errors, with Node's codes, naming the argument.

/**
 * " Received …" for a message, whatever `value` is (a template literal would throw on a symbol or
 * an object without a primitive value); a `secret` (a password) shows its type only.
 */
function describe(value, secret = false) {
  if (value == null) return ` Received ${value}`
  if (typeof value === 'function') return ` Received function ${value.name || '<anonymous>'}`
  if (typeof value === 'object') {
    const name = value.constructor && value.constructor.name
    return name ? ` Received an instance of ${name}` : ' Received an object'
  }
  if (secret) return ` Received type ${typeof value}`
  let shown = String(value)
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`
  if (typeof value === 'string') shown = `'${shown}'`
  return ` Received type ${typeof value} (${shown})`
}

function invalidArgType(name, expected, actual, { secret = false } = {}) {
  const error = new TypeError(`The "${name}" argument must be ${expected}.${describe(actual, secret)}`)
  error.code = 'ERR_INVALID_ARG_TYPE'
  return error
}

function outOfRange(name, range, actual) {
  const error = new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${actual}`)
  error.code = 'ERR_OUT_OF_RANGE'
  return error
}

function invalidArgValue(name, reason) {
  const error = new RangeError(`The argument '${name}' ${reason}`)
  error.code = 'ERR_INVALID_ARG_VALUE'
  return error
}

function invalidThis(type) {
  const error = new TypeError(`Value of "this" must be of type ${type}`)
  error.code = 'ERR_INVALID_THIS'
  return error
}

function illegalConstructor() {
  const error = new TypeError('Illegal constructor')
  error.code = 'ERR_ILLEGAL_CONSTRUCTOR'
  return error
}

module.exports = {
  LockError,
  LockBusyError,
  LockLostError,
  QuorumError,
  LockConnectionError,
  LockKeyTypeError,
  ReplicationError,
  lockBusyError,
  lockClosedError,
  abortError,
  fromNative,
  invalidArgType,
  outOfRange,
  invalidArgValue,
  invalidThis,
  illegalConstructor,
  describe,
}
