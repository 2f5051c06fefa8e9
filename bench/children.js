'use strict'

// Child processes of the cases that spread their waiters over processes, and
// their clocks. Times that several processes compare are taken with
// sharedNowMs() (performance.timeOrigin + performance.now()); clockOffset()
// measures how far a child's reading of it is from the parent's.

const { fork } = require('node:child_process')
const { sharedNowMs } = require('./clock')

// Clock offset probes per child; the one with the shortest round trip is kept.
const CLOCK_PROBES = 5

// One child process (`script`) and its messages. receive(type) must be called
// before the message that triggers the reply is sent.
class Child {
  constructor (script, index) {
    this.index = index
    this.process = fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    this.pending = null
    this.failure = null
    this.exitStatus = null
    this.exited = new Promise((resolve) => this.process.once('exit', (code, signal) => {
      this.exitStatus = signal ?? `exit ${code}`
      this.reject(new Error(`child ${index} ended (${this.exitStatus})`))
      resolve()
    }))
    this.process.on('message', (message) => {
      if (message.type === 'error') this.reject(new Error(`child ${index}: ${message.error}`))
      else if (this.pending?.type === message.type) this.settle((pending) => pending.resolve(message))
    })
    this.process.once('error', (err) => this.reject(err))
  }

  get alive () { return this.exitStatus === null }

  receive (type, timeoutMs) {
    if (this.failure) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.settle(() => {
        const err = new Error(`child ${this.index}: no ${type} within ${timeoutMs} ms`)
        err.timedOut = true
        reject(err)
      }), timeoutMs)
      this.pending = { type, resolve, reject, timer }
    })
  }

  settle (action) {
    const pending = this.pending
    if (!pending) return
    this.pending = null
    clearTimeout(pending.timer)
    action(pending)
  }

  reject (err) {
    this.failure ??= err
    this.settle((pending) => pending.reject(err))
  }

  send (message) {
    if (this.alive && this.process.connected) this.process.send(message)
  }

  kill () {
    if (this.alive) this.process.kill('SIGKILL')
    return this.exited
  }
}

// The child's shared clock minus the parent's, from the probe with the
// shortest IPC round trip; its error is at most half that round trip.
async function clockOffset (child, timeoutMs) {
  let best = null
  for (let probe = 0; probe < CLOCK_PROBES; probe++) {
    const reply = child.receive('clock', timeoutMs)
    const t0 = sharedNowMs()
    child.send({ type: 'clock', t0 })
    const { childNow } = await reply
    const t1 = sharedNowMs()
    if (!best || t1 - t0 < best.roundTripMs) best = { offsetMs: childNow - (t0 + t1) / 2, roundTripMs: t1 - t0 }
  }
  return best
}

module.exports = { Child, clockOffset }
