// require('ironlock/express'): a lock held for the life of a request.

import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AcquireOptions, Lock, LockBusyError, Locker } from '../index'

declare global {
  // Merges into Express's own `Request` (as `@types/express` declares it); harmless without it.
  namespace Express {
    interface Request {
      /** The lock taken by `lock()` for this request; set on the routes that use it. */
      lock?: Lock
      /** Aborts with a `LockLostError` if the lock is lost while the request runs. */
      lockSignal?: AbortSignal
    }
  }
}

/**
 * A request as the key function sees it. Unless you annotate `req` (e.g. as Express's `Request`),
 * its extra fields (`body`, `params`, …) are `any`.
 */
export type AnyRequest = IncomingMessage & Record<string, any>

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
   * Answers a request that found the lock busy, instead of the default 409 with `Retry-After`
   * (whole seconds, at least 1: how long this key's locks are usually held, as this middleware
   * has seen, capped at the holder's remaining TTL `err.retryAfter`; that TTL until a hold was
   * seen). A throw or rejection goes to `next`.
   */
  onBusy?: (req: Req, res: Res, err: LockBusyError) => unknown
}

/** The middleware `lock()` returns; it calls `next()` with the lock held, or `next(err)`. */
export type LockMiddleware<Req = AnyRequest, Res = ServerResponse> =
  (req: Req, res: Res, next: (err?: unknown) => void) => void

/**
 * Takes the lock `keyFrom(req)` before the next handler and releases it when the response has
 * finished or the client has gone away. The handler finds the lock in `req.lock`.
 *
 * @example
 * app.post('/orders', express.json(), lock((req) => `sku:${req.body.sku}`), placeOrder)
 */
export declare function lock<Req extends IncomingMessage = AnyRequest, Res extends ServerResponse = ServerResponse>(
  keyFrom: (req: Req) => string | string[],
  opts?: LockMiddlewareOptions<Req, Res>,
): LockMiddleware<Req, Res>
