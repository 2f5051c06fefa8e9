'use strict'

// The wire: a socket of the JS thread's own to a single Redis (or the master Sentinel names, or one
// master of a Redis Cluster: lib/shard-wires.js), for the hot path (one-key acquire attempts and
// releases). The protocol is native (`ironlock_core::wire`, through `NativeLocker.wire*`): this
// file only moves bytes and keeps time. A lock cycle on the wire
// crosses no thread; everything else (waiting, the watchdog, extend, multi-key locks) runs on the
// native runtime's own connection, which also carries everything while the wire is not ready.

const net = require('node:net')
const tls = require('node:tls')

// After a failure the wire stays down this long; the native connection carries everything meanwhile.
const REOPEN_DELAY_MS = 1000
// setTimeout's longest delay: a longer one fires at once (with a TimeoutOverflowWarning).
const MAX_TIMER_MS = 2 ** 31 - 1

class Wire {
  /**
   * @param native the NativeLocker
   * @param node `{ tls }` of the Redis (the native options of its node); where it is, the native
   *   locker says each time the wire connects (behind Sentinel, the master moves)
   * @param onComplete receives finished operations, like the native completions
   * @param index which of the native locker's sockets this is: 0 but on a Redis Cluster (a master's)
   */
  constructor(native, node, { connectTimeout, commandTimeout }, onComplete, index = 0) {
    this.native = native
    this.index = index
    this.node = node
    this.connectTimeout = connectTimeout
    this.commandTimeout = commandTimeout
    this.onComplete = onComplete
    this.socket = null
    // The TCP socket under `socket` (the same one without TLS).
    this.tcp = null
    this.state = 'down'
    this.reopenAt = 0
    this.timer = null
    // When Redis last answered, or when a command went to a wire that owed nothing (ms, monotonic).
    this.lastAnswerAt = 0
    this.onTimer = this.onTimer.bind(this)
  }

  /** Starts connecting unless connected, connecting, closed, or resting after a failure. */
  open() {
    if (this.state !== 'down' || Date.now() < this.reopenAt) return
    // Behind Sentinel, unknown until the native connection has found the master.
    const address = this.native.wireAddress(this.index)
    if (!address) return
    this.state = 'connecting'
    const { host, port } = address
    // TLS rides on a TCP socket of our own: only a TCP socket can be reset (see `fail`).
    const tcp = net.connect({ host, port })
    const socket = this.node.tls ? tls.connect({ ...tlsOptions(host, port, this.node.tls), socket: tcp }) : tcp
    this.socket = socket
    this.tcp = tcp
    tcp.setNoDelay(true)
    // The native side decides whether Node stays alive (while operations are pending).
    tcp.unref()
    socket.unref()
    this.arm(this.connectTimeout)
    // Set-up (AUTH, SELECT, CLIENT SETNAME): the wire is ready once Redis has answered it.
    socket.once(this.node.tls ? 'secureConnect' : 'connect', () => this.guard(socket, () => this.send(this.native.wireConnected(this.index, host, port))))
    socket.on('data', (bytes) => this.guard(socket, () => this.received(bytes)))
    // The connection went away: what it carried goes again on the native connection.
    const onError = (error) => this.fail(socket, error.message, { retry: true })
    socket.on('error', onError)
    if (tcp !== socket) tcp.on('error', onError)
    socket.on('close', () => this.fail(socket, 'the connection closed', { retry: true }))
  }

  /**
   * Runs `handle` for an event of `socket`. Events and timers have no caller to throw to: a
   * throw would end the process, so it fails the wire instead, like a broken connection.
   */
  guard(socket, handle) {
    try {
      handle()
    } catch (error) {
      this.fail(socket, `internal error in ironlock (please report it): ${error.message}`)
    }
  }

  /** Whether requests may go on the wire. */
  get ready() {
    return this.state === 'ready'
  }

  send(bytes) {
    this.socket.write(bytes)
    if (this.timer === null) {
      this.lastAnswerAt = performance.now()
      this.arm(this.commandTimeout)
    }
  }

  received(bytes) {
    this.lastAnswerAt = performance.now()
    this.settle(this.native.wireFeed(this.index, bytes))
  }

  settle({ numbers, texts, failures, write, ready, inFlight, broken }) {
    if (write) this.send(write)
    if (ready && this.state === 'connecting') this.state = 'ready'
    if (inFlight === 0) this.disarm()
    if (numbers.length > 0) this.onComplete(numbers, texts, failures)
    if (broken) this.fail(this.socket, broken, { failedAlready: true })
  }

  // One timer serves every command, as answers come in order: the wire fails once Redis owes
  // answers and has answered nothing for `commandTimeout` since the last answer (or since a command
  // went while nothing was owed). A command sent to a stalled Redis so fails `commandTimeout` after
  // it went, as on the native connection (see README, "Timeouts").
  arm(ms) {
    this.timer = setTimeout(this.onTimer, Math.min(ms, MAX_TIMER_MS))
    this.timer.unref()
  }

  disarm() {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }

  onTimer() {
    this.guard(this.socket, () => this.timedOut())
  }

  timedOut() {
    this.timer = null
    if (this.state === 'connecting') {
      this.fail(this.socket, `connect timed out after ${this.connectTimeout} ms`)
      return
    }
    const silent = performance.now() - this.lastAnswerAt
    if (silent >= this.commandTimeout) {
      this.fail(this.socket, `no answer within ${this.commandTimeout} ms`)
    } else {
      this.arm(this.commandTimeout - silent)
    }
  }

  /**
   * The socket failed: what it carried runs again natively (`retry`) or fails with `reason`, and
   * the wire rests a while.
   */
  fail(socket, reason, { retry = false, failedAlready = false } = {}) {
    if (socket === null || socket !== this.socket || this.state === 'closed') return
    const tcp = this.tcp
    this.socket = null
    this.tcp = null
    this.state = 'down'
    this.reopenAt = Date.now() + REOPEN_DELAY_MS
    this.disarm()
    // A reset, not a FIN: a stalled Redis that wakes up drops what it had not read yet, rather
    // than running commands whose callers were already told they failed.
    try {
      if (!tcp.destroyed) tcp.resetAndDestroy()
    } catch {
      tcp.destroy()
    }
    socket.destroy()
    if (!failedAlready) this.settle(this.native.wireFail(this.index, reason, retry))
  }

  close() {
    if (this.state === 'closed') return
    const socket = this.socket
    this.state = 'closed'
    this.socket = null
    this.tcp = null
    this.disarm()
    if (socket) socket.destroy()
    const { numbers, texts, failures } = this.native.wireClose(this.index)
    if (numbers.length > 0) this.onComplete(numbers, texts, failures)
  }
}

function tlsOptions(host, port, settings) {
  return {
    host,
    port,
    servername: net.isIP(host) ? undefined : host,
    ca: settings.ca,
    cert: settings.cert,
    key: settings.key,
    rejectUnauthorized: settings.rejectUnauthorized,
  }
}

module.exports = { Wire }
