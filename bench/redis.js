'use strict'

// The bench's redis-server processes are the jest suites' own (__test__/helpers/redis-server.js):
// free loopback ports, never 6379, nothing persisted, the server's log in the error when one does
// not start, killed on exit. What is the bench's is only what it reads from them around a window.

const { startRedisSet } = require('../__test__/helpers/redis-server')

/** A harness server and the bench's reads of it, through one admin connection. */
class BenchServer {
  #server
  #admin

  constructor (server) {
    this.#server = server
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

  // The harness closes the admin connection with the server.
  stop () {
    return this.#server.stop()
  }
}

async function startRedisServers (count) {
  const servers = await startRedisSet(count)
  return servers.map((server) => new BenchServer(server))
}

module.exports = { startRedisServers }
