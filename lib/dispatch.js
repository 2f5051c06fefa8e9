'use strict'

// Pending native operations of one locker: requests go to the native side in batches (one napi
// call per tick, see `NativeLocker::submit` in src/binding/locker.rs), and completions come back
// in batches. Both records are declared once, in src/binding/layout.rs, and read from the binding
// here: where each field sits (RequestField, CompletionField), the numbers per record, the request
// kinds, the acquire flags and the completion statuses. Fields are written and read by name only.

const { fromNative } = require('./errors')
const {
  binding: {
    REQUEST_FIELDS,
    COMPLETION_FIELDS,
    RequestField: RequestAt,
    CompletionField: CompletionAt,
    RequestKind: Kind,
    AcquireFlag: Flags,
    CompletionStatus: Status,
  },
} = require('./native')

// A tick that queues this many requests hands them over at once rather than at its end, so the
// native thread and Redis start on them while this thread is still busy with the rest of the tick
// (+20 % uncontended throughput in `npm run bench`, for a little more event-loop time).
const EARLY_FLUSH = 16
// An operation id is a slot of `records` plus a count of the slot's reuses above it, so a
// completion that came for an earlier use of the slot never settles the current one.
const SLOTS = 2 ** 20
const USES = 2 ** 12

/**
 * The completion a record's `resolve` is given, read by field name (see CompletionField). One
 * view serves a whole batch, moved from completion to completion: read it at once, never keep it.
 */
class CompletionView {
  numbers = null
  at = 0
  status = 0
  /** The token of an Acquired completion, else undefined. */
  token = undefined

  get lock() {
    return this.numbers[this.at + CompletionAt.Lock]
  }

  get fence() {
    return this.numbers[this.at + CompletionAt.Fence]
  }

  get expiresAt() {
    return this.numbers[this.at + CompletionAt.ExpiresAt]
  }

  get retryAfter() {
    return this.numbers[this.at + CompletionAt.RetryAfter]
  }

  get released() {
    return this.numbers[this.at + CompletionAt.Released] === 1
  }
}

class Dispatcher {
  constructor() {
    // Pending operations' records by slot, reused through a free list. A Map keyed by ever-new
    // ids (the obvious choice) keeps every hash table it outgrows reachable for the young
    // generation's GC until the next full GC, and with them every finished operation's record:
    // under load each scavenge then copied megabytes, pausing the event loop 5-10 ms.
    this.records = [undefined]
    this.uses = [0]
    this.freeSlots = []
    this.pendingCount = 0
    // Lock id → onLost; an object rather than a Map for the same reason.
    this.watched = Object.create(null)
    // Ref'd only while operations are pending: an idle locker never keeps Node alive, and a
    // script awaiting a lock does not exit under it.
    this.keepAlive = setInterval(() => {}, 1 << 30)
    this.keepAlive.unref()
    this.onComplete = this.onComplete.bind(this)
    this.native = null
    // The Wire (lib/wire.js) of a single-Redis locker, the ShardWires (lib/shard-wires.js) of a
    // Redis Cluster's, else null.
    this.wire = null
    // This tick's requests, REQUEST_FIELDS numbers each (0 where a kind uses no field), and the
    // keys of its acquires. Reused: a flush copies out what it sends.
    this.requests = new Float64Array(EARLY_FLUSH * REQUEST_FIELDS)
    this.count = 0
    this.keys = []
    this.flushScheduled = false
    this.flush = this.flush.bind(this)
    this.completion = new CompletionView()
  }

  /**
   * Queues an acquire of `keys`: `ttl` ms, waiting up to `wait` ms (< 0: forever), with AcquireFlags
   * `flags`, granted once `replicas` replicas acknowledged it within `replicasTimeout` ms.
   */
  acquire(op, keys, ttl, wait, flags, replicas = 0, replicasTimeout = 0) {
    const at = this.add(Kind.Acquire, op)
    this.requests[at + RequestAt.Ttl] = ttl
    this.requests[at + RequestAt.Wait] = wait
    this.requests[at + RequestAt.Flags] = flags
    this.requests[at + RequestAt.KeyCount] = keys.length
    this.requests[at + RequestAt.Replicas] = replicas
    this.requests[at + RequestAt.ReplicasTimeout] = replicasTimeout
    for (const key of keys) this.keys.push(key)
    this.added()
  }

  /** Queues the release of lock `lock` (an Acquired completion's `lock`); op 0 if nobody awaits it. */
  release(op, lock) {
    this.requests[this.add(Kind.Release, op) + RequestAt.Lock] = lock
    this.added()
  }

  /** Queues an extension of lock `lock` (first key `key`) by `ttl` ms (0: its own TTL). */
  extend(op, lock, ttl, key) {
    const at = this.add(Kind.Extend, op)
    this.requests[at + RequestAt.Lock] = lock
    this.requests[at + RequestAt.Ttl] = ttl
    this.requests[at + RequestAt.KeyCount] = 1
    this.keys.push(key)
    this.added()
  }

  /** Queues a let-lapse of lock `lock`, which completes nothing. */
  letLapse(lock) {
    this.requests[this.add(Kind.LetLapse, 0) + RequestAt.Lock] = lock
    this.added()
  }

  /** Starts a request of `kind` for operation `op`; returns where its fields start. */
  add(kind, op) {
    const at = this.count++ * REQUEST_FIELDS
    this.requests[at + RequestAt.Kind] = kind
    this.requests[at + RequestAt.Op] = op
    return at
  }

  /** The requests of one tick go in one call, or a few. */
  added() {
    if (this.count === EARLY_FLUSH) this.flush()
    else if (!this.flushScheduled) {
      this.flushScheduled = true
      queueMicrotask(this.flush)
    }
  }

  flush() {
    this.flushScheduled = false
    if (this.count === 0) return
    // Copied out and cleared first: whatever settles below may queue requests again.
    const requests = this.requests.slice(0, this.count * REQUEST_FIELDS)
    const keys = this.keys
    this.requests.fill(0, 0, requests.length)
    this.count = 0
    this.keys = []
    let write = null
    try {
      write = this.native.submit(requests, keys)
    } catch {
      // A request the native side cannot take must fail alone, never its neighbours (nor, thrown
      // from a microtask, the process). `submit` converts its arguments before it starts anything,
      // so the refused batch may go again one request at a time.
      this.submitEach(requests, keys)
    }
    this.toWire(write)
  }

  /** What a submit wrote for the wire (see `NativeLocker.submit`): sent, or else the wire opens. */
  toWire(write) {
    const wire = this.wire
    if (wire === null) return
    if (write) wire.send(write)
    else if (!wire.ready) wire.open()
  }

  /** Submits each request alone, rejecting those the native side refuses, each one's writes sent as it goes. */
  submitEach(requests, keys) {
    let firstKey = 0
    for (let at = 0; at < requests.length; at += REQUEST_FIELDS) {
      const fields = requests.subarray(at, at + REQUEST_FIELDS)
      const ownKeys = keys.slice(firstKey, firstKey += fields[RequestAt.KeyCount])
      try {
        const write = this.native.submit(fields, ownKeys)
        if (write) this.toWire(write)
      } catch (error) {
        this.finish(fields[RequestAt.Op])?.reject({
          code: 'ECONNECTION',
          key: typeof ownKeys[0] === 'string' ? ownKeys[0] : '',
          message: 'internal error in ironlock (please report it): the native side refused the request',
          cause: error,
        })
      }
    }
  }

  /** Registers `record` ({ resolve, reject, … }) and returns its operation id. */
  start(record) {
    let slot = this.freeSlots.pop()
    if (slot === undefined) {
      if (this.records.length === SLOTS) throw new RangeError(`more than ${SLOTS - 1} operations pending on one Locker`)
      slot = this.records.push(undefined) - 1
      this.uses.push(0)
    }
    if (this.pendingCount++ === 0) this.keepAlive.ref()
    this.records[slot] = record
    return this.uses[slot] * SLOTS + slot
  }

  /** Forgets operation `op`, returning its record if it was still pending. */
  finish(op) {
    const slot = op % SLOTS
    const record = this.records[slot]
    if (record === undefined || this.uses[slot] !== (op - slot) / SLOTS) return undefined
    this.records[slot] = undefined
    this.uses[slot] = (this.uses[slot] + 1) % USES
    this.freeSlots.push(slot)
    if (--this.pendingCount === 0) this.keepAlive.unref()
    return record
  }

  /** Calls `onLost(error)` if the watchdog of lock `id` reports it lost. */
  watch(id, onLost) {
    this.watched[id] = onLost
  }

  unwatch(id) {
    delete this.watched[id]
  }

  /**
   * A batch of completions: `numbers` per completion, `texts` the token of each Acquired, and
   * `failures` (undefined when none) the error fields of each Failed or Lost, in order. A record's
   * `resolve` gets the CompletionView of its completion.
   */
  onComplete(numbers, texts, failures) {
    const completion = this.completion
    let text = 0
    let failed = 0
    for (let at = 0; at < numbers.length; at += COMPLETION_FIELDS) {
      const status = numbers[at + CompletionAt.Status]
      if (status === Status.Lost) {
        const failure = failures[failed++]
        const onLost = this.watched[numbers[at + CompletionAt.Lock]]
        if (onLost !== undefined) onLost(fromNative(failure))
        continue
      }
      const token = status === Status.Acquired ? texts[text++] : undefined
      const failure = status === Status.Failed ? failures[failed++] : undefined
      const record = this.finish(numbers[at + CompletionAt.Op])
      if (record === undefined) continue
      if (status === Status.Failed) {
        record.reject(failure)
        continue
      }
      completion.numbers = numbers
      completion.at = at
      completion.status = status
      completion.token = token
      record.resolve(completion)
    }
    completion.numbers = null
    completion.token = undefined
  }

  /** Settles every pending operation with `failure(record)` and stops keeping Node alive. */
  close(failure) {
    clearInterval(this.keepAlive)
    this.requests.fill(0)
    this.count = 0
    this.keys = []
    const pending = this.records.filter((record) => record !== undefined)
    this.records = [undefined]
    this.uses = [0]
    this.freeSlots = []
    this.pendingCount = 0
    this.watched = Object.create(null)
    for (const record of pending) record.reject(failure)
  }
}

module.exports = { Dispatcher, Status, Kind, Flags, RequestAt, CompletionAt, REQUEST_FIELDS, COMPLETION_FIELDS }
