'use strict'

// What the bench reads from a redis-server around a measured window. The servers themselves are
// the jest suites' own (__test__/helpers/), started and stopped by a topology (topologies/).

/** A harness server and the bench's reads of it, through one admin connection. */
class BenchServer {
  #admin

  constructor (server) {
    this.url = server.url
    this.#admin = server.client()
  }

  async version () {
    const info = await this.#admin.info('server')
    return /redis_version:(\S+)/.exec(info)[1]
  }

  async reset () {
    await this.#admin.flushall()
    await this.resetStats()
  }

  resetStats () {
    return this.#admin.config('RESETSTAT')
  }

  // Calls per command since the last reset, e.g. { set: 12, evalsha: 10 }.
  // The CONFIG RESETSTAT that opened the window is the bench's own and is left out.
  async commandCalls () {
    const info = await this.#admin.info('commandstats')
    const calls = {}
    for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
      if (match[1] !== 'config|resetstat') calls[match[1]] = Number(match[2])
    }
    return calls
  }

  // CPU seconds (user + system) the server has used since it started.
  async cpuSeconds () {
    const info = await this.#admin.info('cpu')
    const seconds = (field) => Number(new RegExp(`^${field}:([\\d.]+)`, 'm').exec(info)[1])
    return seconds('used_cpu_user') + seconds('used_cpu_sys')
  }
}

module.exports = { BenchServer }
