'use strict'

// Pending native operations of one locker, and the decoding of the batches of completions the
// native side delivers (see src/binding/completions.rs for the layout).

const { fromNative } = require('./errors')

const FIELDS = 5
const Status = { Acquired: 0, Busy: 1, Done: 2, Extended: 3, Failed: 4, Lost: 5 }

class Dispatcher {
  constructor() {
    this.pending = new Map()
    this.watched = new Map()
    this.nextOp = 0
    // Ref'd only while operations are pending: an idle locker never keeps Node alive, and a
    // script awaiting a lock does not exit under it.
    this.keepAlive = setInterval(() => {}, 1 << 30)
    this.keepAlive.unref()
    this.onComplete = this.onComplete.bind(this)
  }

  /** Registers `record` ({ resolve, reject, … }) and returns its operation id. */
  start(record) {
    this.nextOp = this.nextOp >= 0xfffffffe ? 1 : this.nextOp + 1
    if (this.pending.size === 0) this.keepAlive.ref()
    this.pending.set(this.nextOp, record)
    return this.nextOp
  }

  /** Forgets operation `op`, returning its record if it was still pending. */
  finish(op) {
    const record = this.pending.get(op)
    if (record === undefined) return undefined
    this.pending.delete(op)
    if (this.pending.size === 0) this.keepAlive.unref()
    return record
  }

  /** Calls `onLost(error)` if the watchdog of lock `id` reports it lost. */
  watch(id, onLost) {
    this.watched.set(id, onLost)
  }

  unwatch(id) {
    this.watched.delete(id)
  }

  onComplete(numbers, texts) {
    let text = 0
    for (let i = 0; i < numbers.length; i += FIELDS) {
      const status = numbers[i + 1]
      const carriesText = status === Status.Acquired || status === Status.Failed || status === Status.Lost
      const message = carriesText ? texts[text++] : undefined
      if (status === Status.Lost) {
        const onLost = this.watched.get(numbers[i + 2])
        if (onLost !== undefined) onLost(fromNative(JSON.parse(message)))
        continue
      }
      const record = this.finish(numbers[i])
      if (record === undefined) continue
      if (status === Status.Failed) record.reject(JSON.parse(message))
      else record.resolve(status, numbers[i + 2], numbers[i + 3], numbers[i + 4], message)
    }
  }

  /** Settles every pending operation with `failure(record)` and stops keeping Node alive. */
  close(failure) {
    clearInterval(this.keepAlive)
    const pending = [...this.pending.values()]
    this.pending.clear()
    this.watched.clear()
    for (const record of pending) record.reject(failure)
  }
}

module.exports = { Dispatcher, Status }
