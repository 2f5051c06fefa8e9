// require('ironlock/redlock'): a drop-in `Redlock` with redlock 5's API (as in
// @sesamecare-oss/redlock) and redlock 4's aliases, on an ironlock Locker.

import { EventEmitter } from 'node:events'
import type { Locker } from '../index'

declare namespace Redlock {
  /** An ioredis `Redis` (or `Cluster`) client; only its `options` are read. */
  export interface Client {
    options: object
  }

  export interface Settings {
    /** Share of the duration taken off `expiration` for clock drift. Default 0.01. */
    readonly driftFactor?: number
    /**
     * Retries before giving up; -1 = until acquired. Default 10. With `retryDelay` and
     * `retryJitter` it sets how long ironlock waits for a busy lock:
     * `retryCount × (retryDelay + retryJitter / 2)` ms (`Infinity` for -1, none for 0).
     */
    readonly retryCount?: number
    /** ms between redlock's attempts. Default 200. */
    readonly retryDelay?: number
    /** ms of random spread around `retryDelay`. Default 100. */
    readonly retryJitter?: number
    /** `using`: validated as in redlock (duration must exceed it by 100 ms). Default 500. */
    readonly automaticExtensionThreshold?: number
    /** The database (0-15) for the locks on every node; default: each client's own `db`. */
    readonly db?: number
  }

  export interface ExecutionStats {
    readonly membershipSize: number
    readonly quorumSize: number
    readonly votesFor: Set<Client>
    readonly votesAgainst: Map<Client, Error>
  }

  export interface ExecutionResult {
    attempts: ReadonlyArray<Promise<ExecutionStats>>
    start: number
  }

  export type RedlockAbortSignal = AbortSignal & { error?: ExecutionError }

  export interface RedlockUsingContext {
    lock: Lock
    /** Always 0: ironlock extends the lock natively and does not count the extensions here. */
    extensions: number
  }

  export type Callback<T> = (error: Error | null, value?: T) => void

  /**
   * A held lock: redlock 5's shape (`resources`, `value`, `attempts`, `expiration`, `release()`,
   * `extend(duration)`) and redlock 4's (`resource`, `unlock()`, `extend(ttl, callback)`).
   */
  export class Lock {
    private constructor()
    readonly redlock: Redlock
    readonly resources: string[]
    /** redlock 4's name for `resources`. */
    readonly resource: string[]
    /** The value stored in Redis. */
    readonly value: string
    /** redlock 5's per-attempt stats; a lock from redlock 4's `lock()` holds a count (1) here instead. */
    readonly attempts: ReadonlyArray<Promise<ExecutionStats>>
    /** redlock 4: retries left (locks from `lock()` only). */
    attemptsRemaining?: number
    /** Epoch ms until which the lock is surely held (drift-adjusted); 0 once released. */
    expiration: number
    readonly settings?: Partial<Settings>
    /** ironlock's fencing token of this acquisition. */
    readonly fence: number | undefined
    /** v5: resolves the release's stats; rejects ExecutionError if the lock was no longer held. */
    release(): Promise<ExecutionResult>
    /** v4: resolves once released; rejects `Redlock.LockError` if the lock was no longer held. */
    unlock(callback?: Callback<void>): Promise<void>
    /** v5 lock: resolves a new Lock. v4 lock (from `lock()`): extends this one and resolves it. */
    extend(duration: number): Promise<Lock>
    extend(ttl: number, callback: Callback<Lock>): Promise<Lock>
  }

  /** redlock 4's error: a lock, unlock or extend failed. `attempts` is a count. */
  export class LockError extends Error {
    constructor(message?: string, attempts?: unknown, options?: { cause?: unknown })
    readonly attempts: any
    /** The ironlock error behind it (LockBusyError, QuorumError, LockConnectionError, LockLostError). */
    readonly cause?: unknown
  }

  /** redlock 5's error: no quorum within the retry window. Also a `LockError`, for v4 code. */
  export class ExecutionError extends LockError {
    constructor(message: string, attempts: ReadonlyArray<Promise<ExecutionStats>>, options?: { cause?: unknown })
    readonly attempts: ReadonlyArray<Promise<ExecutionStats>>
  }

  /** redlock 5's per-node vote (on the `error` event): another lock holds a resource. */
  export class ResourceLockedError extends Error {
    constructor(message: string)
  }

  // `Redlock` itself (the class, so a value and a type), also as `Redlock.Redlock` and
  // `Redlock.default`: `import Redlock from`, `import { Redlock } from` and `require` all give it.
  export { Redlock, Redlock as default }
}

declare class Redlock extends EventEmitter {
  /**
   * @param clients one ioredis client per independent Redis. Their options are read and ironlock
   *   opens its own connections: 1 client = one Redis, 2+ = Redlock (majority of the nodes).
   */
  constructor(clients: Iterable<Redlock.Client>, settings?: Redlock.Settings)

  readonly clients: Set<Redlock.Client>
  readonly settings: Required<Omit<Redlock.Settings, 'db'>> & { db?: number }
  /** The ironlock Locker underneath. */
  readonly locker: Locker
  /** redlock 4's names for `clients` and the settings. */
  readonly servers: Redlock.Client[]
  driftFactor: number
  retryCount: number
  retryDelay: number
  retryJitter: number

  // redlock 5
  acquire(resources: string[], duration: number, settings?: Partial<Redlock.Settings>): Promise<Redlock.Lock>
  release(lock: Redlock.Lock, settings?: Partial<Redlock.Settings>): Promise<Redlock.ExecutionResult>
  extend(lock: Redlock.Lock, duration: number, settings?: Partial<Redlock.Settings>): Promise<Redlock.Lock>
  using<T>(
    resources: string[],
    duration: number,
    settings: Partial<Redlock.Settings>,
    routine: (signal: Redlock.RedlockAbortSignal, context: Redlock.RedlockUsingContext) => Promise<T>,
  ): Promise<T>
  using<T>(
    resources: string[],
    duration: number,
    routine: (signal: Redlock.RedlockAbortSignal, context: Redlock.RedlockUsingContext) => Promise<T>,
  ): Promise<T>
  /** Closes ironlock's connections and, as `redlock` does, quits the ioredis clients given to the constructor. */
  quit(callback?: Redlock.Callback<void>): Promise<void>

  // redlock 4 (a string resource or a callback makes `acquire` / `release` / `extend` v4 calls)
  acquire(resource: string | string[], ttl: number, callback?: Redlock.Callback<Redlock.Lock>): Promise<Redlock.Lock>
  release(lock: Redlock.Lock, callback: Redlock.Callback<void>): Promise<void>
  extend(lock: Redlock.Lock, ttl: number, callback: Redlock.Callback<Redlock.Lock>): Promise<Redlock.Lock>
  lock(resource: string | string[], ttl: number, callback?: Redlock.Callback<Redlock.Lock>): Promise<Redlock.Lock>
  lockWithOptions(resource: string | string[], ttl: number, options?: Partial<Redlock.Settings>, callback?: Redlock.Callback<Redlock.Lock>): Promise<Redlock.Lock>
  acquireWithOptions(resource: string | string[], ttl: number, options?: Partial<Redlock.Settings>, callback?: Redlock.Callback<Redlock.Lock>): Promise<Redlock.Lock>
  unlock(lock: Redlock.Lock, callback?: Redlock.Callback<void>): Promise<void>
  /** A bluebird disposer (needs the `bluebird` package): `Promise.using(redlock.disposer(r, ttl), (lock) => …)`. */
  disposer(resource: string | string[], ttl: number, unlockErrorHandler?: (error: Error) => void): unknown

  /** v5: every per-node failure (`ResourceLockedError` for a busy node); a no-op listener is preinstalled. */
  on(event: 'error', listener: (error: Error) => void): this
  /** v4: a node failed to answer. */
  on(event: 'clientError', listener: (error: Error) => void): this
  on(event: string | symbol, listener: (...args: any[]) => void): this
}

export = Redlock
