'use strict'

// Runs N child Node processes of one worker script with an IPC channel: start them, talk to
// them, pause and resume them (SIGSTOP/SIGCONT), and stop them while checking that each one
// finishes its work and exits by itself. Whatever happens, `kill()` leaves no child behind.

const { fork } = require('node:child_process')

const MAX_OUTPUT_CHARS = 16 * 1024

class PooledProcess {
  constructor(index, script, config) {
    this.index = index
    this.output = ''
    this.messages = []
    this.waiters = []
    this.exit = null
    this.child = fork(script, [JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], serialization: 'advanced' })
    const keep = (chunk) => {
      this.output = (this.output + chunk).slice(-MAX_OUTPUT_CHARS)
    }
    this.child.stdout.setEncoding('utf8').on('data', keep)
    this.child.stderr.setEncoding('utf8').on('data', keep)
    this.child.on('message', (message) => this.#receive(message))
    this.child.on('error', (error) => keep(`\n[spawn error] ${error.message}\n`))
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => {
      this.exit = { code, signal }
      for (const waiter of this.waiters.splice(0)) waiter.reject(new Error(`worker ${index} exited (${code ?? signal}) while ${waiter.what}\n${this.output}`))
      resolve(this.exit)
    }))
  }

  get pid() {
    return this.child.pid
  }

  send(message) {
    this.child.send(message)
  }

  /** The next message of `type` (one already received counts), within `ms`. */
  next(type, ms) {
    const at = this.messages.findIndex((message) => message.type === type)
    if (at >= 0) return Promise.resolve(this.messages.splice(at, 1)[0])
    if (this.exit) return Promise.reject(new Error(`worker ${this.index} has exited; no '${type}' message\n${this.output}`))
    return new Promise((resolve, reject) => {
      const waiter = { type, resolve, reject, what: `waiting for '${type}'` }
      waiter.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1)
        reject(new Error(`worker ${this.index} sent no '${type}' message within ${ms} ms`))
      }, ms)
      this.waiters.push(waiter)
    })
  }

  #receive(message) {
    const at = this.waiters.findIndex((waiter) => waiter.type === message.type)
    if (at < 0) {
      this.messages.push(message)
      return
    }
    const [waiter] = this.waiters.splice(at, 1)
    clearTimeout(waiter.timer)
    waiter.resolve(message)
  }

  kill() {
    if (this.exit) return
    this.child.kill('SIGKILL')
  }
}

class ProcessPool {
  /**
   * @param {string} script the worker's path; it gets `JSON.stringify(configFor(i))` as argv[2]
   * @param {number} count
   * @param {(index: number) => object} configFor
   */
  constructor(script, count, configFor) {
    this.workers = Array.from({ length: count }, (_, index) => new PooledProcess(index, script, configFor(index)))
  }

  /** Resolves once every worker sent 'ready'. */
  async ready(ms = 10000) {
    await Promise.all(this.workers.map((worker) => worker.next('ready', ms)))
  }

  pause(index) {
    this.workers[index].child.kill('SIGSTOP')
  }

  resume(index) {
    this.workers[index].child.kill('SIGCONT')
  }

  /**
   * Sends 'stop' to every worker; resolves one entry per worker: its 'done' message (or the reason
   * there was none), and how it exited. A worker that has not exited by itself `ms` after its
   * 'done' is killed and reported as `exitedBy: 'killed'`.
   */
  async stop(ms) {
    return Promise.all(this.workers.map(async (worker) => {
      // A worker left paused by a failed test would never answer.
      if (!worker.exit) worker.child.kill('SIGCONT')
      if (!worker.exit) worker.send({ type: 'stop' })
      let done = null
      let problem = null
      try {
        done = await worker.next('done', ms)
      } catch (error) {
        problem = error.message
        // Ask what it is still waiting for, to say which operation never settled.
        if (!worker.exit) {
          worker.send({ type: 'inflight' })
          const inflight = await worker.next('inflight', 2000).catch(() => null)
          if (inflight) problem += `; still in flight: ${JSON.stringify(inflight.operations)}`
        }
      }
      let timer
      const exitedBy = await Promise.race([
        worker.exited.then(() => 'self'),
        new Promise((resolve) => { timer = setTimeout(() => resolve('killed'), ms) }),
      ])
      clearTimeout(timer)
      if (exitedBy === 'killed') {
        worker.kill()
        await worker.exited
      }
      return { index: worker.index, done, problem, exitedBy, exit: worker.exit, output: worker.output }
    }))
  }

  /** Kills every worker still running (afterAll / failure path). */
  async kill() {
    for (const worker of this.workers) worker.kill()
    await Promise.all(this.workers.map((worker) => worker.exited))
  }
}

module.exports = { ProcessPool }
