// require('ironlock/express'): a lock held for the life of a request.

import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AcquireOptions, Lock, LockBusyError, Locker } from '../index'

declare global {
  // Merges into Express's own `Request` (as `@types/express` declares it); harmless without it.
  namespace Express {
    interface Request {
      /** The lock taken by `lock()` for this request; set on the routes that use it (see `LockedRequest`). */
      lock?: Lock
      /** See `LockedFields.lockSignal`. */
      lockSignal?: AbortSignal
    }
  }
}

/**
 * A request as the key function sees it. Unless you annotate `req` (e.g. as Express's `Request`),
 * its extra fields (`body`, `params`, …) are `any`.
 */
export type AnyRequest = IncomingMessage & Record<string, any>

/** The reason `req.lockSignal` aborts with when the client went away before the response ended. */
export interface ClientGoneError extends Error {
  name: 'AbortError'
  code: 'ECLIENTGONE'
}

/** What `lock()` sets on a request before the next handler runs. */
export interface LockedFields {
  /** The lock held for this request. */
  lock: Lock
  /**
   * Aborts when the handler should stop: with a `LockLostError` if the lock is lost, or with a
   * `ClientGoneError` (`code: 'ECLIENTGONE'`) if the client went away before the response was
   * ended. In the second case the lock is still held, no longer extended, until the handler ends
   * the response or the lease runs out (at most one TTL).
   */
  lockSignal: AbortSignal
}

/** A request after `lock()`: `req.lock` and `req.lockSignal` are set. `withLock()` types handlers with it. */
export type LockedRequest<Req = AnyRequest> = Req & LockedFields

export interface LockMiddlewareOptions<Req = AnyRequest, Res = ServerResponse>
  extends Omit<AcquireOptions, 'signal'> {
  /**
   * ms to wait while another request holds the lock. Default 0 here: a busy lock answers 409 at
   * once. `Infinity` queues the request until the lock is free or the client goes away.
   */
  wait?: number
  /** Where the locks live. Default: ironlock's default locker, looked up on every request. */
  locker?: Locker
  /**
   * The `Retry-After` of the default 409, in seconds (rounded up), or a function of the request
   * and the busy error that returns it (a throw, or anything but a number >= 0, goes to `next`).
   * Default: an estimate, how long this key's locks are usually held as this middleware has seen
   * (at most 2 s while it has seen none), capped at the holder's remaining TTL; at least 1.
   */
  retryAfter?: number | ((req: Req, err: LockBusyError) => number)
  /**
   * Answers a request that found the lock busy, instead of the default 409 with `Retry-After`
   * (`err.retryAfter`: the holder's remaining TTL in ms). A throw or rejection goes to `next`.
   */
  onBusy?: (req: Req, res: Res, err: LockBusyError) => unknown
}

/** The middleware `lock()` returns; it calls `next()` with the lock held, or `next(err)`. */
export type LockMiddleware<Req = AnyRequest, Res = ServerResponse> =
  (req: Req, res: Res, next: (err?: unknown) => void) => void

/**
 * Takes the lock `keyFrom(req)` before the next handler and holds it until the handler has ended
 * the response: never released while the handler may still run. If the client goes away first,
 * `req.lockSignal` aborts (`ECLIENTGONE`) and the lock stays held, no longer extended, until the
 * handler ends the response or the lease runs out. Wrap the handler in `withLock()` to have
 * `req.lock` and `req.lockSignal` typed as set.
 *
 * @example
 * app.post('/orders/:id/pay', lock((req) => `order:${req.params.id}`), withLock(async (req, res) => { … }))
 */
export declare function lock<Req extends IncomingMessage = AnyRequest, Res extends ServerResponse = ServerResponse>(
  keyFrom: (req: Req) => string | string[],
  opts?: LockMiddlewareOptions<Req, Res>,
): LockMiddleware<Req, Res>

/**
 * `handler` as the route handler after `lock()`, with `req.lock` and `req.lockSignal` typed as set
 * (Express's types cannot carry what a middleware added). A request that reaches it without a lock
 * (no `lock()` before it on the route) goes to `next(err)` (`code: 'ERR_INVALID_STATE'`).
 */
export declare function withLock<Req extends IncomingMessage = AnyRequest, Res extends ServerResponse = ServerResponse>(
  handler: (req: LockedRequest<Req>, res: Res, next: (err?: unknown) => void) => unknown,
): (req: Req, res: Res, next: (err?: unknown) => void) => unknown
