'use strict'

// The demo's store on a real Redis, through ioredis (loaded only in --redis mode). Commands are
// counted from INFO commandstats, so ironlock's own commands are measured too.

const { redactUrl } = require('../target')

// The demo's own probes, and the ready check ioredis sends on connect.
const UNCOUNTED = new Set(['info'])

function loadIoredis() {
  try {
    return require('ioredis')
  } catch (error) {
    if (error.code !== 'MODULE_NOT_FOUND') throw error
    throw new Error('--redis needs the ioredis package, which is not installed. Install it with: npm install ioredis')
  }
}

class RedisStore {
  #client
  #url

  constructor(client, url) {
    this.#client = client
    this.#url = url
  }

  static async connect(url) {
    const Redis = loadIoredis()
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
    // connect() rejects with a bare "Connection is closed."; the cause comes as an 'error' event.
    let cause = null
    client.on('error', (error) => { cause = error })
    try {
      await client.connect()
    } catch (error) {
      if (client.status !== 'end') client.disconnect()
      throw new Error(`could not connect to ${redactUrl(url)}: ${(cause ?? error).message}`)
    }
    return new RedisStore(client, url)
  }

  get description() {
    return `${redactUrl(this.#url)} (commands counted from INFO commandstats, Lua-internal calls included)`
  }

  get lockerTarget() {
    return this.#url
  }

  /** ironlock's commands show up in commandstats like everyone else's. */
  get uncountedLockerCommandsPerOrder() {
    return 0
  }

  get(key) {
    return this.#client.get(key)
  }

  set(key, value) {
    return this.#client.set(key, value)
  }

  /** `SET key value NX EX seconds`: true when it was set. */
  async setNxEx(key, value, seconds) {
    return (await this.#client.set(key, value, 'EX', seconds, 'NX')) === 'OK'
  }

  del(key) {
    return this.#client.del(key)
  }

  /** Deletes every key that starts with `prefix` (which holds no glob characters). */
  async deleteNamespace(prefix) {
    for await (const keys of this.#client.scanStream({ match: `${prefix}*`, count: 1000 })) {
      if (keys.length > 0) await this.#client.del(...keys)
    }
  }

  /** Calls of every command since the server's stats were last reset (other clients' included). */
  async commandsProcessed() {
    const stats = await this.#client.info('commandstats')
    let calls = 0
    for (const [, command, count] of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
      if (!UNCOUNTED.has(command)) calls += Number(count)
    }
    return calls
  }

  async close() {
    await this.#client.quit()
  }
}

module.exports = { RedisStore }
