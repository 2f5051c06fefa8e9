'use strict'

// The wire on a Redis Cluster: a socket of the JS thread's own per master (a lib/wire.js Wire
// each), opened once the native side first routes a call to that master. Which master a call goes
// to, and what goes to the native connection instead, is native (`ShardWires` in the core): this
// file only keeps the sockets, by the index the native side gives each master.

const { Wire } = require('./wire')

class ShardWires {
  /**
   * @param native the NativeLocker
   * @param node `{ tls }` of the cluster's seeds, which every master shares
   * @param onComplete receives finished operations, like the native completions
   */
  constructor(native, node, timeouts, onComplete) {
    this.native = native
    this.node = node
    this.timeouts = timeouts
    this.onComplete = onComplete
    // By the native side's index of each master.
    this.wires = []
    this.closed = false
  }

  /**
   * Always: a submit that has nothing for the sockets leaves nothing to open, since the native
   * side names the sockets to open among its writes (see `send`).
   */
  get ready() {
    return true
  }

  open() {}

  /**
   * What `NativeLocker.submit` asks of the sockets, by master: bytes to write, `true` to open its
   * socket (it stays shut while resting after a failure), `false` for nothing.
   */
  send(writes) {
    if (this.closed) return
    for (let index = 0; index < writes.length; index++) {
      const write = writes[index]
      if (write === false) continue
      const wire = this.wires[index] ?? this.#add(index)
      if (write === true) wire.open()
      else wire.send(write)
    }
  }

  close() {
    this.closed = true
    for (const wire of this.wires) wire?.close()
  }

  #add(index) {
    const wire = new Wire(this.native, this.node, this.timeouts, this.onComplete, index)
    this.wires[index] = wire
    return wire
  }
}

module.exports = { ShardWires }
