// ironlock: Redis distributed locks for Node.js with a Rust core.

/** TLS settings, as in ioredis's `tls` option. */
export interface TlsOptions {
  /** PEM bundle of trusted CAs; replaces the default roots. */
  ca?: string | Buffer | Array<string | Buffer>
  /** PEM client certificate, for mutual TLS. */
  cert?: string | Buffer
  /** PEM client key, for mutual TLS. */
  key?: string | Buffer
  /** `false` skips certificate checks (test setups only). Default `true`. */
  rejectUnauthorized?: boolean
}

/** One Redis written like ioredis options. Defaults as ioredis: 127.0.0.1, 6379, db 0. */
export interface RedisOptions {
  host?: string
  port?: number
  username?: string
  password?: string
  db?: number
  tls?: boolean | TlsOptions
  /** Accepted for ioredis compatibility; the address family follows the host name. */
  family?: number
  /** ms to open a connection (TCP, TLS, AUTH and SELECT). Default 10000. */
  connectTimeout?: number
  /**
   * ms for Redis to answer each command on an open connection. A command made while its
   * connection opens waits for that first: at most `connectTimeout + commandTimeout` in all.
   * Default 5000.
   */
  commandTimeout?: number
  /** Prepended to every key the locker writes. Default ''. */
  keyPrefix?: string
}

/** An ioredis client: its `options` are read and the locker opens its own connection. */
export interface IoredisLike {
  options: RedisOptions
}

/** One Redis: a `redis://[user:pass@]host:port[/db]` or `rediss://` URL, options, or an ioredis client. */
export type NodeTarget = string | RedisOptions | IoredisLike

/**
 * A Redis Cluster, found from its seed nodes: `{ cluster: [seeds], …shared options }` (seeds as
 * URLs or `{ host, port }`; username, password and TLS the same for all), a
 * `'redis+cluster://[user:pass@]host:port,host:port'` (or `rediss+cluster://`) URL, or an ioredis
 * `Cluster` instance (its startup nodes and options are read). Database 0 only.
 */
export type ClusterTarget =
  | (Omit<RedisOptions, 'host' | 'port' | 'db'> & { cluster: Array<string | { host: string; port: number }> })
  | { isCluster: boolean; options: object }

/**
 * Redis Sentinel: locks live on the master the sentinels name. `{ sentinels: [sentinels], name,
 * …the master's login, …the sentinels' login }` (sentinels as redis:// URLs or `{ host, port }`,
 * port 26379 unless given), a `'redis+sentinel://[user:pass@]host:port[,host:port…]/<name>[/<db>]'`
 * URL (its user info and database are the master's; `rediss+sentinel://` reaches the master over
 * TLS), or an ioredis `Redis` instance configured with `sentinels` (its options are read as
 * ioredis reads them).
 */
export interface SentinelTarget extends Omit<RedisOptions, 'host' | 'port' | 'family'> {
  /** The sentinels to ask where the master is. */
  sentinels: Array<string | { host?: string; port?: number; family?: number }>
  /** The master's name in the sentinels' configuration (`sentinel monitor <name> …`). */
  name: string
  /** The sentinels' user; `username` is the master's. */
  sentinelUsername?: string
  /** The sentinels' password; `password` is the master's. */
  sentinelPassword?: string
  /** TLS to the sentinels; `tls` is TLS to the master. */
  sentinelTls?: boolean | TlsOptions
}

/**
 * Where the locks live: one Redis (also as an array of one), an array of 2+ independent masters
 * (Redlock, quorum `floor(N/2)+1`), a Redis Cluster, Redis Sentinel's master, or `'memory://'` /
 * `'memory://<name>'`: an in-process store that excludes only within this process (`memory://` is
 * the locker's own; a named one is shared by every locker on that name).
 */
export type Target = NodeTarget | NodeTarget[] | ClusterTarget | SentinelTarget

export interface AcquireOptions {
  /**
   * ms the lock lives unless extended. Default 30000. Every duration is whole milliseconds: a
   * fraction rounds up (0.2 is 1 ms), and a value that is no number is an `ERR_INVALID_ARG_TYPE`
   * error saying so.
   */
  ttl?: number
  /**
   * ms to wait while the lock is busy. Default 10000 (acquire, using); 0 fails at once;
   * `Infinity` waits until acquired or aborted. A fraction rounds up to whole ms.
   */
  wait?: number
  /** Cancels the wait: rejects with the signal's reason (an AbortError by default). */
  signal?: AbortSignal
  /** using(): keep extending while fn runs. Default true. */
  autoExtend?: boolean
  /**
   * Grant only once this many replicas acknowledged the lock and its fence (`WAIT` after the
   * acquire); otherwise the lock is given back and the call rejects with `ReplicationError`.
   * Default 0. One Redis with replicas, Sentinel, each master of a Redis Cluster, and each Redlock node.
   */
  replicas?: number
  /** ms to wait for the replicas' acknowledgements when `replicas` > 0. Default 1000. */
  replicasTimeout?: number
}

/** Defaults for every acquire of a locker, and connection settings for every node. */
export interface LockerDefaults {
  ttl?: number
  wait?: number
  autoExtend?: boolean
  replicas?: number
  replicasTimeout?: number
  /** ms to open a connection (TCP, TLS, AUTH and SELECT). Default 10000. */
  connectTimeout?: number
  /**
   * ms for Redis to answer each command on an open connection. A command made while its
   * connection opens waits for that first: at most `connectTimeout + commandTimeout` in all.
   * Default 5000.
   */
  commandTimeout?: number
  /** Prepended to every key the locker writes. Default ''. */
  keyPrefix?: string
  /** Share of the TTL taken off `expiresAt` for clock drift. Default 0.01. */
  driftFactor?: number
}

export declare class Lock {
  private constructor()
  /** keys[0] */
  readonly key: string
  /** The keys as given, without the prefix. */
  readonly keys: readonly string[]
  /** The value stored in Redis: a uuid v4 starting with `10c4ed00`, the mark of an ironlock holder. */
  readonly token: string
  /**
   * Fencing token: grows strictly with every acquisition of the key, also across a Redis restart
   * that lost the data (never below the server's clock in µs). Values are skipped.
   */
  readonly fence: number
  /** Epoch ms until which the lock is surely still ours (TTL less clock drift). */
  readonly expiresAt: number
  /** true: it was ours and is gone; false: it had expired or been taken. */
  release(): Promise<boolean>
  /**
   * Resets the TTL to `ttl` ms (default: the lock's own; a fraction rounds up) from now; rejects
   * LockLostError if no longer ours.
   */
  extend(ttl?: number): Promise<Lock>
  toJSON(): { key: string; keys: string[]; token: string; fence: number; expiresAt: number }
}

export type UsingFunction<T> = (signal: AbortSignal, lock: Lock) => T | Promise<T>

export declare class Locker {
  /**
   * Connects lazily on first use; an idle locker never keeps Node alive. Without `target`:
   * `process.env.REDIS_URL`, else `redis://127.0.0.1:6379`; connection errors say which it was.
   */
  constructor(target?: Target, defaults?: LockerDefaults)
  /** Takes the lock, waiting up to `opts.wait` ms while someone else holds it. */
  acquire(key: string | string[], opts?: AcquireOptions): Promise<Lock>
  /** Takes the lock if it is free now; never waits. */
  tryAcquire(key: string | string[], opts?: AcquireOptions): Promise<Lock | null>
  release(lock: Lock): Promise<boolean>
  extend(lock: Lock, ttl?: number): Promise<Lock>
  /**
   * Acquires, runs `fn`, and always releases, never before `fn` has settled (what it returns is
   * awaited, a thenable too; `ironlock/express` likewise holds a request's lock until the handler
   * has ended the response, also when the client went away). While `fn` runs the lock is extended
   * natively; if it is lost anyway, or no extension succeeded by `expiresAt − min(ttl/20, 250 ms)`,
   * `signal` aborts with a LockLostError and `using` rejects with it. A release that fails only
   * because Redis is unreachable after `fn` finished resolves with `fn`'s value and emits an
   * `IronlockWarning`.
   */
  using<T>(key: string | string[], opts: AcquireOptions | undefined, fn: UsingFunction<T>): Promise<T>
  using<T>(key: string | string[], fn: UsingFunction<T>): Promise<T>
  /**
   * Closes the connections; pending operations reject with LockConnectionError, and the signals of
   * running `using` bodies abort with one before it resolves (their locks expire by their TTL).
   */
  close(): Promise<void>
}

/**
 * The base of every lock error. Used as such only with `code: 'EINTERNAL'`: a bug in ironlock, never
 * met in normal use, whose message says what went wrong and asks for a report.
 */
export declare class LockError extends Error {
  readonly code: string
  readonly key: string
}

/** `ELOCKBUSY`: the wait ran out (or `wait: 0`) while someone else held the lock. */
export declare class LockBusyError extends LockError {
  readonly code: 'ELOCKBUSY'
  /** ms until the holder's TTL ends; -1 when the holder set no TTL. */
  readonly retryAfter: number
}

/** `ELOCKLOST`: extend or using found the lock no longer ours. */
export declare class LockLostError extends LockError {
  readonly code: 'ELOCKLOST'
}

/** `EQUORUM`: Redlock could not win a majority. */
export declare class QuorumError extends LockError {
  readonly code: 'EQUORUM'
  readonly votes: { for: number; against: number; errors: Array<{ node: string; message: string }> }
}

/** `ECONNECTION`: Redis unreachable, or a command timed out. */
export declare class LockConnectionError extends LockError {
  readonly code: 'ECONNECTION'
  readonly cause: Error
}

/**
 * `EKEYTYPE`: the lock key holds a value of another Redis type than a string (a hash, a list…),
 * where no lock can live. Rejected at once, whatever the wait: no holder will release it.
 */
export declare class LockKeyTypeError extends LockError {
  readonly code: 'EKEYTYPE'
  /** The key that holds it (of a multi-key lock, that one). */
  readonly key: string
  /** The Redis type found at the key: `'hash'`, `'list'`, `'set'`, `'zset'`, `'stream'`… */
  readonly type: string
}

/**
 * `EREPLICAS`: `replicas: n` was asked and fewer replicas acknowledged the lock within
 * `replicasTimeout`; the lock was given back before the rejection.
 */
export declare class ReplicationError extends LockError {
  readonly code: 'EREPLICAS'
  /** How many replicas acknowledged in time. */
  readonly acknowledged: number
  /** How many were asked for (`replicas`). */
  readonly wanted: number
}

/** Points the top-level functions at `target`, closing the previous default locker. */
export declare function configure(target: Target, defaults?: LockerDefaults): Locker
/** Closes the default locker; the next top-level call opens a new one. */
export declare function close(): Promise<void>
/** The default locker, created on first use from `process.env.REDIS_URL` (else redis://127.0.0.1:6379). */
export declare function getDefaultLocker(): Locker
export declare function acquire(key: string | string[], opts?: AcquireOptions): Promise<Lock>
export declare function tryAcquire(key: string | string[], opts?: AcquireOptions): Promise<Lock | null>
export declare function release(lock: Lock): Promise<boolean>
export declare function extend(lock: Lock, ttl?: number): Promise<Lock>
export declare function using<T>(key: string | string[], opts: AcquireOptions | undefined, fn: UsingFunction<T>): Promise<T>
export declare function using<T>(key: string | string[], fn: UsingFunction<T>): Promise<T>
