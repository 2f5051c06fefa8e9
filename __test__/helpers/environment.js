'use strict'

// Jest environment for tests that use ./redis-server.js: prints the log of every
// registered redis-server when a test or hook fails, and makes sure no server
// outlives its test file or the jest process.

const { TestEnvironment } = require('jest-environment-node')

const LOG_TAIL_LINES = 60

// The helper's `process.on('exit')` lands on jest's sandbox copy of `process`,
// which never emits 'exit'; this hook is on the real one.
const environmentsWithServers = new Set()
process.once('exit', () => {
  for (const environment of environmentsWithServers) environment.redisRegistry?.killAllNow()
})

class RedisTestEnvironment extends TestEnvironment {
  // Set by redis-server.js in the test's context (see `global.__ironlockRedisServers`).
  get redisRegistry () {
    return this.global?.__ironlockRedisServers
  }

  async setup () {
    await super.setup()
    environmentsWithServers.add(this)
  }

  async teardown () {
    const leftovers = [...(this.redisRegistry?.servers ?? [])].filter((server) => server.running)
    if (leftovers.length > 0) {
      const ports = leftovers.map((server) => server.port).join(', ')
      process.stderr.write(
        `redis-server(s) on port ${ports} still running after the test file; stopping them. ` +
          'Call stopAll() in afterAll.\n'
      )
    }
    await this.redisRegistry?.stopAll()
    environmentsWithServers.delete(this)
    await super.teardown()
  }

  handleTestEvent (event) {
    if (event.name === 'test_fn_failure') this.#printServerLogs(`test "${event.test.name}"`)
    if (event.name === 'hook_failure') this.#printServerLogs(`${event.hook.type} hook`)
  }

  #printServerLogs (failedIn) {
    for (const server of this.redisRegistry?.servers ?? []) {
      const state = server.running ? `pid ${server.pid}` : 'not running'
      const kind = server.isSentinel ? 'redis-sentinel' : 'redis-server'
      const tail = server.log().trimEnd().split('\n').slice(-LOG_TAIL_LINES).join('\n')
      process.stderr.write(
        `\n--- ${kind} ${server.host}:${server.port} (${state}), log tail, ` +
          `after failure in ${failedIn} ---\n${tail}\n--- end of ${kind} ${server.port} log ---\n`
      )
    }
  }
}

module.exports = RedisTestEnvironment
