'use strict'

// Express middleware that holds a lock for the life of a request: `require('ironlock/express')`.

const { performance } = require('node:perf_hooks')
const { LockBusyError, invalidArgType, invalidArgValue } = require('./errors')
const { HoldTimes } = require('./hold-times')
const { acquireOptions, objectArgument, knownOptions, ACQUIRE_OPTIONS } = require('./validate')
const { LOCK_DEFAULTS } = require('./defaults')

// Busy answers 409 at once unless the caller asks to queue: the middleware's own default wait.
const MIDDLEWARE_DEFAULTS = Object.freeze({ ...LOCK_DEFAULTS, wait: 0 })
const MIDDLEWARE_OPTIONS = [...ACQUIRE_OPTIONS, 'locker', 'onBusy']

/**
 * `lock(keyFrom, options?)`: takes the lock named `keyFrom(req)` before the next handler and
 * releases it once the response has finished or the client has gone away. While the lock is busy
 * it answers 409 with `Retry-After` (or calls `options.onBusy(req, res, err)`); other errors go to
 * `next(err)`. The handler finds the lock in `req.lock`, and in `req.lockSignal` an AbortSignal
 * that aborts if the lock is lost while the request runs.
 */
function lock(keyFrom, options) {
  if (typeof keyFrom !== 'function') throw invalidArgType('keyFrom', 'of type function', keyFrom)
  const { locker, onBusy, ...lockOptions } = knownOptions(objectArgument(options, 'options'), MIDDLEWARE_OPTIONS)
  if (locker !== undefined && (locker === null || typeof locker.using !== 'function')) {
    throw invalidArgType('options.locker', 'an ironlock Locker', locker)
  }
  if (onBusy !== undefined && typeof onBusy !== 'function') throw invalidArgType('options.onBusy', 'of type function', onBusy)
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
      // The client left between the acquisition and now: `using` releases at once.
      if (gone.aborted) return undefined
      req.lock = heldLock
      req.lockSignal = lockSignal
      const heldSince = performance.now()
      next()
      return new Promise((resolve) => gone.addEventListener('abort', () => {
        holdTimes.record(key, performance.now() - heldSince)
        resolve()
      }, { once: true }))
    }).catch((error) => {
      // Once the lock was taken the handler owns the response (or the client is gone), so an
      // error at release has nobody to go to: the key then expires by its TTL.
      if (lockTaken || gone.aborted) return
      if (!(error instanceof LockBusyError)) next(error)
      else if (onBusy) callOnBusy(onBusy, req, res, next, error)
      else answerBusy(res, error, holdTimes.expected(key))
    })
  }
}

/** An AbortSignal that aborts when `res` closes: finished, or its connection gone. */
function closeSignal(res) {
  const controller = new AbortController()
  if (res.closed) controller.abort()
  else res.once('close', () => controller.abort())
  return controller.signal
}

function callOnBusy(onBusy, req, res, next, error) {
  try {
    Promise.resolve(onBusy(req, res, error)).catch(next)
  } catch (thrown) {
    next(thrown)
  }
}

/**
 * `Retry-After` in whole seconds: the time this key's locks (else this middleware's) are usually
 * held, no more than the holder's remaining TTL (`retryAfter`, -1 when it has none), or that TTL
 * when no hold was seen yet; rounded up, at least 1.
 */
function retryAfterSeconds(remainingTtlMs, expectedHoldMs) {
  let ms = remainingTtlMs
  if (expectedHoldMs !== undefined && (ms < 0 || expectedHoldMs < ms)) ms = expectedHoldMs
  return Math.max(1, Math.ceil(ms / 1000))
}

function answerBusy(res, error, expectedHoldMs) {
  const seconds = retryAfterSeconds(error.retryAfter, expectedHoldMs)
  // The key stays out of the body: it may name a user or an order.
  const body = JSON.stringify({ code: error.code, message: `busy: another request holds this resource; retry in ${seconds} s` })
  res.statusCode = 409
  res.setHeader('Retry-After', String(seconds))
  res.setHeader('Content-Type', 'application/json; charset=utf-8')
  res.setHeader('Content-Length', Buffer.byteLength(body))
  res.end(body)
}

module.exports = { lock }
