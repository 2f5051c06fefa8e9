// require('ironlock/redlock'): a drop-in `Redlock` with redlock 5's API (as in
// @sesamecare-oss/redlock) and redlock 4's (bluebird-style promises, callbacks, Lock objects), on an
// ironlock Locker.

import { EventEmitter } from 'node:events'
import type { Locker } from '../index'

declare namespace Redlock {
  /**
   * An ioredis 4/5 or node-redis 3/4 client: its connection options are read (ironlock opens its
   * own connections); it carries only the release or extension of a Lock rebuilt from stored values.
   */
  export type Client = object

  /**
   * What redlock 4's methods return: a native Promise with the bluebird methods redlock 4's users
   * call on it.
   */
  export interface LegacyPromise<T> extends Promise<T> {
    /** Like `then`, but ends the chain: a rejection nobody handles is reported as unhandled. */
    done(onFulfilled?: (value: T) => unknown, onRejected?: (error: any) => unknown): void
    /** Calls a Node-style callback when settled; returns this promise. */
    nodeify(callback?: Callback<T>): this
    asCallback(callback?: Callback<T>): this
    /** A bluebird disposer for `Promise.using` (needs the bluebird package installed). */
    disposer(dispose: (value: T) => unknown): unknown
  }

  export interface Settings {
    /** Share of the duration taken off `expiration` for clock drift. Default 0.01. */
    readonly driftFactor?: number
    /**
     * Attempts after the first; -1 = until acquired. Default 10. A busy lock is waited for (woken
     * by a release) through the window these attempts span, `retryDelay ± retryJitter` ms apart;
     * a node that cannot be reached fails an attempt, and the next starts after its slot.
     */
    readonly retryCount?: number
    /** ms between attempts. Default 200. */
    readonly retryDelay?: number
    /** ms of random spread around `retryDelay`. Default 100. */
    readonly retryJitter?: number
    /** `using`: validated as in redlock (duration must exceed it by 100 ms). Default 500. */
    readonly automaticExtensionThreshold?: number
    /** The database (0-15) for the locks on every node. Reads 0 when not given; the locks then go to each client's own database. */
    readonly db?: number
    /** redlock 4's script options are not run (a warning says so): ironlock's own scripts take the locks. */
    readonly lockScript?: (script: string) => string
    readonly unlockScript?: (script: string) => string
    readonly extendScript?: (script: string) => string
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
   * A held lock, in the shape of the API that made it: redlock 5's (`resources`, `attempts` as
   * stats, `release()`, `extend(duration)`) or redlock 4's (`resource`, `attempts` as a count,
   * `unlock()`, `extend(ttl, callback)`). Built from stored values, it can be released and
   * extended while its value still holds the resources.
   */
  export class Lock {
    /** redlock 5: a lock from stored values. */
    constructor(redlock: Redlock, resources: string[], value: string, attempts: ReadonlyArray<Promise<ExecutionStats>>, expiration: number, settings?: Partial<Settings>)
    /** redlock 4: a lock from stored values. */
    constructor(redlock: Redlock, resource: string | string[], value: string, expiration: number, attempts?: number, attemptsRemaining?: number)
    readonly redlock: Redlock
    /** redlock 5 locks. */
    resources: string[]
    /** redlock 4 locks (data, as in redlock 4: a copy may point it elsewhere). */
    resource: string | string[]
    /** The value stored in Redis. */
    value: string
    /** redlock 5: one entry of votes per attempt; redlock 4: how many attempts it took. */
    attempts: ReadonlyArray<Promise<ExecutionStats>> | number
    /** redlock 4: retries left. */
    attemptsRemaining?: number
    /** Epoch ms until which the lock is surely held (drift-adjusted); 0 once released. */
    expiration: number
    readonly settings?: Partial<Settings>
    /** ironlock's fencing token of this acquisition. */
    readonly fence: number | undefined
    /** v5: resolves the release's stats; rejects ExecutionError if the lock was no longer held. */
    release(): Promise<ExecutionResult>
    /** v4: resolves once released; rejects `Redlock.LockError` if the lock was no longer held. */
    unlock(callback?: Callback<void>): LegacyPromise<void>
    /** v5 lock: resolves a new Lock. v4 lock: extends this one and resolves it. */
    extend(duration: number): Promise<Lock>
    extend(ttl: number, callback: Callback<Lock>): LegacyPromise<Lock>
  }

  /** redlock 4's error: a lock, unlock or extend failed. `attempts` is a count. */
  export class LockError extends Error {
    constructor(message?: string, attempts?: unknown, options?: { cause?: unknown })
    readonly attempts: any
    /** The ironlock error behind it (LockBusyError, QuorumError, LockConnectionError, LockLostError, LockKeyTypeError). */
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
  readonly settings: Required<Pick<Redlock.Settings, 'driftFactor' | 'retryCount' | 'retryDelay' | 'retryJitter' | 'automaticExtensionThreshold' | 'db'>>
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
  /** Closes ironlock's connections and, as `redlock` does, quits the clients given to the constructor; resolves their replies. */
  quit(callback?: Redlock.Callback<unknown[]>): Redlock.LegacyPromise<unknown[]>

  // redlock 4 (a string resource or a callback makes `acquire` / `release` / `extend` v4 calls)
  acquire(resource: string | string[], ttl: number, callback?: Redlock.Callback<Redlock.Lock>): Redlock.LegacyPromise<Redlock.Lock>
  release(lock: Redlock.Lock, callback: Redlock.Callback<void>): Redlock.LegacyPromise<void>
  extend(lock: Redlock.Lock, ttl: number, callback: Redlock.Callback<Redlock.Lock>): Redlock.LegacyPromise<Redlock.Lock>
  lock(resource: string | string[], ttl: number, callback?: Redlock.Callback<Redlock.Lock>): Redlock.LegacyPromise<Redlock.Lock>
  lockWithOptions(resource: string | string[], ttl: number, options?: Partial<Redlock.Settings>, callback?: Redlock.Callback<Redlock.Lock>): Redlock.LegacyPromise<Redlock.Lock>
  acquireWithOptions(resource: string | string[], ttl: number, options?: Partial<Redlock.Settings>, callback?: Redlock.Callback<Redlock.Lock>): Redlock.LegacyPromise<Redlock.Lock>
  unlock(lock: Redlock.Lock, callback?: Redlock.Callback<void>): Redlock.LegacyPromise<void>
  /** redlock 4's internal entry point: `value` null locks; a value extends the lock it holds. */
  _lock(resource: string | string[], value: string | null, ttl: number, options?: Partial<Redlock.Settings> | Redlock.Callback<Redlock.Lock>, callback?: Redlock.Callback<Redlock.Lock>): Redlock.LegacyPromise<Redlock.Lock>
  /** A bluebird disposer (needs the `bluebird` package): `Promise.using(redlock.disposer(r, ttl), (lock) => …)`. */
  disposer(resource: string | string[], ttl: number, unlockErrorHandler?: (error: Error) => void): unknown

  /** v5: every per-node failure (`ResourceLockedError` for a busy node); a no-op listener is preinstalled. */
  on(event: 'error', listener: (error: Error) => void): this
  /** v4: a node failed to answer, or answered with an error (once per attempt per node). */
  on(event: 'clientError', listener: (error: Error) => void): this
  on(event: string | symbol, listener: (...args: any[]) => void): this
}

export = Redlock
