'use strict'

// Express middleware that holds a lock for the life of a request: `require('ironlock/express')`.

const { performance } = require('node:perf_hooks')
const { LockBusyError, invalidArgType, invalidArgValue, outOfRange, describe } = require('./errors')
const { HoldTimes } = require('./hold-times')
const { letLapse } = require('./locker')
const { acquireOptions, objectArgument, knownOptions, ACQUIRE_OPTIONS } = require('./validate')
const { LOCK_DEFAULTS } = require('./defaults')

// Busy answers 409 at once unless the caller asks to queue: the middleware's own default wait.
const MIDDLEWARE_DEFAULTS = Object.freeze({ ...LOCK_DEFAULTS, wait: 0 })
const MIDDLEWARE_OPTIONS = [...ACQUIRE_OPTIONS, 'locker', 'onBusy', 'retryAfter']
// Until a middleware has seen a hold end, the hold a busy answer expects: a first burst after a
// start retries soon rather than after a whole TTL.
const UNSEEN_HOLD_MS = 2000

/**
 * `lock(keyFrom, options?)`: takes the lock named `keyFrom(req)` before the next handler and
 * releases it once the handler has ended the response, never while the handler may still run.
 * While the lock is busy it answers 409 with `Retry-After` (or calls `options.onBusy(req, res,
 * err)`); other errors go to `next(err)`. The handler finds the lock in `req.lock`, and in
 * `req.lockSignal` an AbortSignal that aborts if the lock is lost or the client goes away.
 */
function lock(keyFrom, options) {
  if (typeof keyFrom !== 'function') throw invalidArgType('keyFrom', 'of type function', keyFrom)
  const { locker, onBusy, retryAfter, ...lockOptions } = knownOptions(objectArgument(options, 'options'), MIDDLEWARE_OPTIONS)
  if (locker !== undefined && (locker === null || typeof locker.using !== 'function')) {
    throw invalidArgType('options.locker', 'an ironlock Locker', locker)
  }
  if (onBusy !== undefined && typeof onBusy !== 'function') throw invalidArgType('options.onBusy', 'of type function', onBusy)
  if (retryAfter !== undefined && typeof retryAfter !== 'function') secondsArgument(retryAfter, 'options.retryAfter')
  if (lockOptions.signal !== undefined) {
    throw invalidArgValue('options.signal', 'is not supported: the middleware cancels the wait itself when the client goes away')
  }
  // Checked now so that a bad option fails at startup instead of on every request.
  acquireOptions(lockOptions, MIDDLEWARE_DEFAULTS)
  const settings = { ...lockOptions, wait: lockOptions.wait ?? MIDDLEWARE_DEFAULTS.wait }
  // How long this middleware's locks are held, for the Retry-After of busy answers.
  const holdTimes = new HoldTimes()

  return function ironlockMiddleware(req, res, next) {
    let target
    let key
    try {
      // Resolved per request so that `configure()` after app setup still takes effect.
      target = locker ?? require('..').getDefaultLocker()
      key = keyFrom(req)
    } catch (error) {
      next(error)
      return
    }
    const gone = closeSignal(res)
    let lockTaken = false
    target.using(key, { ...settings, signal: gone }, (lockSignal, heldLock) => {
      lockTaken = true
      // The client left between the acquisition and now: no handler runs, `using` releases.
      if (gone.aborted) return undefined
      const heldSince = performance.now()
      return holdForHandler(req, res, next, lockSignal, heldLock).then(() => {
        holdTimes.record(key, performance.now() - heldSince)
      })
    }).catch((error) => {
      // Once the lock was taken the handler owns the response (or the client is gone), so an
      // error at release has nobody to go to: the key then expires by its TTL.
      if (lockTaken || gone.aborted) return
      if (!(error instanceof LockBusyError)) next(error)
      else if (onBusy) callOnBusy(onBusy, req, res, next, error)
      else answerBusy(req, res, next, error, retryAfter, holdTimes.expected(key))
    })
  }
}

/**
 * `withLock(handler)`: `handler` as the route handler after `lock()`, which lib/express.d.ts
 * types to find `req.lock` and `req.lockSignal` set (Express's types cannot say that a
 * middleware set them). A request that reaches it without a lock (the route has no `lock()`
 * before it) goes to `next(err)` instead.
 */
function withLock(handler) {
  if (typeof handler !== 'function') throw invalidArgType('handler', 'of type function', handler)
  return function lockedHandler(req, res, next) {
    if (req.lock === undefined) {
      const error = new Error('withLock(): this request holds no lock; put lock(keyFrom) before the handler on its route')
      error.code = 'ERR_INVALID_STATE'
      next(error)
      return undefined
    }
    return handler(req, res, next)
  }
}

/**
 * Runs the handler (`next()`) with the lock held; resolves once the lock may go. That is when the
 * handler has ended the response. If the response closes before (the client went away),
 * `req.lockSignal` aborts with an ECLIENTGONE error so the handler can stop, the lock is no
 * longer extended, and it is held until the handler ends the response or its lease runs out
 * (`lockSignal`, the lock's own, aborts), whichever comes first; after its lease it is left to
 * expire rather than released.
 */
function holdForHandler(req, res, next, lockSignal, heldLock) {
  const handlerSignal = new AbortController()
  untilAborted(lockSignal, () => handlerSignal.abort(lockSignal.reason))
  req.lock = heldLock
  req.lockSignal = handlerSignal.signal
  return new Promise((resolve) => {
    res.once('close', () => {
      if (res.writableEnded) {
        resolve()
        return
      }
      handlerSignal.abort(clientGoneError())
      letLapse(heldLock)
      afterEnd(res, resolve)
      untilAborted(lockSignal, resolve)
    })
    next()
  })
}

/** Calls `callback` once `signal` has aborted: now, if it has. */
function untilAborted(signal, callback) {
  if (signal.aborted) callback()
  else signal.addEventListener('abort', callback, { once: true })
}

/**
 * Calls `callback` when the handler ends `res`, which has closed already: a closed response
 * emits no 'finish', so its `end` says when.
 */
function afterEnd(res, callback) {
  const end = res.end
  res.end = function endThenCallback(...args) {
    res.end = end
    try {
      return end.apply(this, args)
    } finally {
      callback()
    }
  }
}

/** The reason `req.lockSignal` aborts with when the response closed before the handler ended it. */
function clientGoneError() {
  const error = new Error('the client went away before the response was sent: stop the work; ' +
    'the lock stays held until the response is ended or its lease runs out')
  error.name = 'AbortError'
  error.code = 'ECLIENTGONE'
  return error
}

/** An AbortSignal that aborts when `res` closes: finished, or its connection gone. */
function closeSignal(res) {
  const controller = new AbortController()
  if (res.closed) controller.abort()
  else res.once('close', () => controller.abort())
  return controller.signal
}

/** Whether `value` is a number of seconds `Retry-After` can say: finite and >= 0. */
function isSeconds(value) {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0
}

function secondsArgument(value, name) {
  if (typeof value !== 'number') throw invalidArgType(name, 'a number of seconds or a function', value)
  if (!isSeconds(value)) throw outOfRange(name, 'a number of seconds >= 0 and finite', value)
  return value
}

function callOnBusy(onBusy, req, res, next, error) {
  try {
    Promise.resolve(onBusy(req, res, error)).catch(next)
  } catch (thrown) {
    next(thrown)
  }
}

/**
 * The `Retry-After` of a busy answer, in whole seconds: `options.retryAfter`'s (seconds, or a
 * function of the request and the error), else the middleware's estimate.
 */
function retryAfterSeconds(retryAfter, req, error, expectedHoldMs) {
  if (typeof retryAfter === 'function') {
    const seconds = retryAfter(req, error)
    if (!isSeconds(seconds)) throw invalidRetryAfter(seconds)
    return Math.ceil(seconds)
  }
  return retryAfter === undefined ? estimatedRetryAfter(error.retryAfter, expectedHoldMs) : Math.ceil(retryAfter)
}

/**
 * The estimate: the time this key's locks (else this middleware's) are usually held, or
 * `UNSEEN_HOLD_MS` while no hold has ended, no more than the holder's remaining TTL
 * (`remainingTtlMs`, -1 when it has none); rounded up, at least 1.
 */
function estimatedRetryAfter(remainingTtlMs, expectedHoldMs = UNSEEN_HOLD_MS) {
  const ms = remainingTtlMs >= 0 ? Math.min(remainingTtlMs, expectedHoldMs) : expectedHoldMs
  return Math.max(1, Math.ceil(ms / 1000))
}

function invalidRetryAfter(value) {
  const error = new TypeError('Expected a number of seconds >= 0 and finite to be returned from the ' +
    `"options.retryAfter" function.${describe(value)}`)
  error.code = 'ERR_INVALID_RETURN_VALUE'
  return error
}

/** Answers 409 with `Retry-After` (see `retryAfterSeconds`); a failing `retryAfter` goes to `next`. */
function answerBusy(req, res, next, error, retryAfter, expectedHoldMs) {
  let seconds
  try {
    seconds = retryAfterSeconds(retryAfter, req, error, expectedHoldMs)
  } catch (thrown) {
    next(thrown)
    return
  }
  // The key stays out of the body: it may name a user or an order.
  const body = JSON.stringify({ code: error.code, message: `busy: another request holds this resource; retry in ${seconds} s` })
  res.statusCode = 409
  res.setHeader('Retry-After', String(seconds))
  res.setHeader('Content-Type', 'application/json; charset=utf-8')
  res.setHeader('Content-Length', Buffer.byteLength(body))
  res.end(body)
}

module.exports = { lock, withLock }
