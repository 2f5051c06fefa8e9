'use strict'

// Pending native operations of one locker: requests go to the native side in batches (one napi
// call per tick, see `NativeLocker::submit` in src/binding/locker.rs), and completions come back
// in batches. Both layouts are declared once, in src/binding/layout.rs, and read from the binding
// here: the numbers per request and per completion, the request kinds, the acquire flags and the
// completion statuses.

const { fromNative } = require('./errors')
const {
  binding: {
    REQUEST_FIELDS,
    COMPLETION_FIELDS: FIELDS,
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
    // The Wire (lib/wire.js) of a single-Redis locker, else null.
    this.wire = null
    this.requests = []
    this.keys = []
    this.flushScheduled = false
    this.flush = this.flush.bind(this)
  }

  /** Queues a request for the native side; the requests of one tick go in one call, or a few. */
  request(kind, op, a, b, c, keys) {
    this.requests.push(kind, op, a, b, c, keys === undefined ? 0 : keys.length)
    if (keys !== undefined) for (const key of keys) this.keys.push(key)
    if (this.requests.length >= EARLY_FLUSH * REQUEST_FIELDS) this.flush()
    else if (!this.flushScheduled) {
      this.flushScheduled = true
      queueMicrotask(this.flush)
    }
  }

  flush() {
    this.flushScheduled = false
    if (this.requests.length === 0) return
    const requests = this.requests
    const keys = this.keys
    this.requests = []
    this.keys = []
    let write
    try {
      write = this.native.submit(new Float64Array(requests), keys)
    } catch {
      // A request the native side cannot take must fail alone, never its neighbours (nor, thrown
      // from a microtask, the process). `submit` converts its arguments before it starts anything,
      // so the refused batch may go again one request at a time.
      write = this.submitEach(requests, keys)
    }
    const wire = this.wire
    if (wire === null) return
    if (write) wire.send(write)
    else if (!wire.ready) wire.open()
  }

  /** Submits each request alone, rejecting those the native side refuses; returns the bytes for the wire. */
  submitEach(requests, keys) {
    const writes = []
    let firstKey = 0
    for (let i = 0; i < requests.length; i += REQUEST_FIELDS) {
      const fields = requests.slice(i, i + REQUEST_FIELDS)
      const ownKeys = keys.slice(firstKey, firstKey += fields[REQUEST_FIELDS - 1])
      try {
        const write = this.native.submit(new Float64Array(fields), ownKeys)
        if (write) writes.push(write)
      } catch (error) {
        this.finish(fields[1])?.reject({
          code: 'ECONNECTION',
          key: typeof ownKeys[0] === 'string' ? ownKeys[0] : '',
          message: 'internal error in ironlock (please report it): the native side refused the request',
          cause: error,
        })
      }
    }
    return writes.length === 0 ? null : Buffer.concat(writes)
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
   * `failures` (undefined when none) the error fields of each Failed or Lost, in order.
   */
  onComplete(numbers, texts, failures) {
    let text = 0
    let failed = 0
    for (let i = 0; i < numbers.length; i += FIELDS) {
      const status = numbers[i + 1]
      if (status === Status.Lost) {
        const failure = failures[failed++]
        const onLost = this.watched[numbers[i + 2]]
        if (onLost !== undefined) onLost(fromNative(failure))
        continue
      }
      const token = status === Status.Acquired ? texts[text++] : undefined
      const failure = status === Status.Failed ? failures[failed++] : undefined
      const record = this.finish(numbers[i])
      if (record === undefined) continue
      if (status === Status.Failed) record.reject(failure)
      else record.resolve(status, numbers[i + 2], numbers[i + 3], numbers[i + 4], token)
    }
  }

  /** Settles every pending operation with `failure(record)` and stops keeping Node alive. */
  close(failure) {
    clearInterval(this.keepAlive)
    this.requests = []
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

module.exports = { Dispatcher, Status, Kind, Flags, REQUEST_FIELDS, COMPLETION_FIELDS: FIELDS }
