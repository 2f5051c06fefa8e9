'use strict'

// A throwaway Redis Sentinel setup for tests: a master, its replicas and three sentinels, all
// started by redis-server.js (so a failed test prints every server's log, and stopAll() or the jest
// environment kills them all), ready once every sentinel knows the master, its replicas and the
// other sentinels and every replica is in sync. Plus what the Sentinel tests do to one: kill the
// master until the sentinels promote a replica, and start the killed master again.

const { setTimeout: delay } = require('node:timers/promises')
const { startRedis, startReplica } = require('./redis-server')

const SENTINELS = 3
const QUORUM = 2
/** Short, so a killed master is failed over within about two seconds. */
const DOWN_AFTER_MS = 1000
/** Short, so a failover that stalls (a split vote, a slow promotion) is tried again within seconds. */
const FAILOVER_TIMEOUT_MS = 2000
/**
 * Sentinel's own periods, shortened (SENTINEL DEBUG): INFO every 100 ms instead of 10 s finds the
 * replicas at once, hellos every 200 ms instead of 2 s find the other sentinels, and a master that
 * comes back is made a replica after 4 hellos (0.8 s, not 8 s).
 */
const SENTINEL_PERIODS = ['info-period', '100', 'publish-period', '200', 'ask-period', '100']
const READY_TIMEOUT_MS = 30000
const POLL_MS = 50
const LOG_TAIL_LINES = 40

class RedisSentinel {
  #admins = new Map()
  /** The masters failOver() killed, the latest last. */
  #killed = []

  /**
   * @param {string} name the master's name among the sentinels
   * @param {import('./redis-server').RedisServer[]} servers the master as started, then its replicas
   * @param {import('./redis-server').RedisServer[]} sentinelServers
   */
  constructor (name, servers, sentinelServers) {
    this.name = name
    this.servers = servers
    this.sentinelServers = sentinelServers
  }

  /** The sentinels as `{ host, port }`. */
  get sentinels () {
    return this.sentinelServers.map(({ host, port }) => ({ host, port }))
  }

  /** `redis+sentinel://host:port,…/<name>`: the sentinels and the master's name as one target URL. */
  get url () {
    return `redis+sentinel://${this.sentinelServers.map(({ host, port }) => `${host}:${port}`).join(',')}/${this.name}`
  }

  /** The server the sentinels name as the master now. */
  async master () {
    return this.#byPort(await this.#masterPortOf(this.sentinelServers[0]))
  }

  /** The replicas the sentinels list now, up and linked to the master. */
  async replicas () {
    const listed = await this.#listedReplicas(this.sentinelServers[0])
    return listed.filter(healthyReplica).map((replica) => this.#byPort(Number(replica.port)))
  }

  /**
   * Kills the master (SIGKILL) and resolves with the new one once every sentinel names it and it
   * answers ROLE master, and the setup is ready again (the other replicas follow it, in sync).
   */
  async failOver () {
    const dead = await this.master()
    this.#killed.push(dead)
    this.#admins.get(dead)?.disconnect()
    this.#admins.delete(dead)
    await dead.kill('SIGKILL')
    await this.#until(async () => {
      const named = await Promise.all(this.sentinelServers.map((sentinel) => this.#masterPortOf(sentinel)))
      if (named.includes(dead.port)) return `a sentinel still names ${dead.port}: ${named.join(', ')}`
      return null
    })
    await this.#waitUntilReady()
    return this.master()
  }

  /**
   * Starts the master failOver() killed last on its port again, empty, and resolves with it once
   * the sentinels made it a replica of the master and it is in sync.
   */
  async restartOld () {
    const old = this.#killed.pop()
    if (!old) throw new Error('no master was killed: call failOver() first')
    await old.restart()
    await this.#waitUntilReady()
    return old
  }

  /** An ioredis client of `server` (a sentinel or not), kept for the setup's life. */
  admin (server) {
    let client = this.#admins.get(server)
    if (!client) {
      client = server.client()
      this.#admins.set(server, client)
    }
    return client
  }

  /** The tail of every server's log, sentinels last: for the message of a failure outside a test. */
  logs () {
    return [...this.servers, ...this.sentinelServers].map((server) => {
      const kind = server.isSentinel ? 'redis-sentinel' : 'redis-server'
      const tail = server.log().trimEnd().split('\n').slice(-LOG_TAIL_LINES).join('\n')
      return `--- ${kind} ${server.port} ---\n${tail}`
    }).join('\n')
  }

  async stop () {
    for (const client of this.#admins.values()) client.disconnect()
    this.#admins.clear()
    await Promise.all([...this.sentinelServers, ...this.servers].map((server) => server.stop()))
  }

  #live () {
    return this.servers.filter((server) => !this.#killed.includes(server))
  }

  #byPort (port) {
    const server = this.servers.find((each) => each.port === port)
    if (!server) throw new Error(`no Redis of this setup on port ${port}`)
    return server
  }

  async #masterPortOf (sentinel) {
    const [, port] = await this.admin(sentinel).call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.name)
    return Number(port)
  }

  async #listedReplicas (sentinel) {
    return (await this.admin(sentinel).call('SENTINEL', 'REPLICAS', this.name)).map(fields)
  }

  async #waitUntilReady () {
    await this.#until(async () => {
      const pending = await this.#notReady().catch((error) => error.message)
      return pending || null
    })
  }

  /**
   * Why the setup is not ready yet, or '': every sentinel names the same master, sees it up and
   * knows the other sentinels and every live replica; the master answers ROLE master; every live
   * replica follows it and acknowledges its writes.
   */
  async #notReady () {
    const named = await Promise.all(this.sentinelServers.map((sentinel) => this.#masterPortOf(sentinel)))
    if (new Set(named).size > 1) return `the sentinels name different masters: ${named.join(', ')}`
    const master = this.#byPort(named[0])
    const [role] = await this.admin(master).call('ROLE')
    if (role !== 'master') return `${master.port}, named the master, answers ROLE ${role}`
    const replicas = this.#live().filter((server) => server !== master)
    for (const sentinel of this.sentinelServers) {
      const seen = fields(await this.admin(sentinel).call('SENTINEL', 'MASTER', this.name))
      if (seen.flags !== 'master') return `sentinel ${sentinel.port} sees the master as ${seen.flags}`
      if (Number(seen['num-other-sentinels']) !== SENTINELS - 1) {
        return `sentinel ${sentinel.port} knows ${seen['num-other-sentinels']} other sentinels`
      }
      const listed = await this.#listedReplicas(sentinel)
      for (const replica of replicas) {
        if (!listed.some((each) => Number(each.port) === replica.port && healthyReplica(each))) {
          return `sentinel ${sentinel.port} does not list ${replica.port} as a replica in sync`
        }
      }
    }
    for (const replica of replicas) {
      const replication = await this.admin(replica).info('replication')
      if (!replication.includes(`master_port:${master.port}\r\n`) || !replication.includes('master_link_status:up')) {
        return `${replica.port} does not follow ${master.port} yet`
      }
    }
    if (replicas.length > 0 && (await acknowledgedWrite(this.admin(master), replicas.length)) < replicas.length) {
      return `not every replica of ${master.port} acknowledges its writes yet`
    }
    return ''
  }

  /** Polls `pending` (null: done, else why not) until done, or rejects with its last reason. */
  async #until (pending) {
    const deadline = Date.now() + READY_TIMEOUT_MS
    for (;;) {
      const reason = await pending()
      if (reason === null) return
      if (Date.now() > deadline) throw new Error(`Sentinel setup not ready after ${READY_TIMEOUT_MS} ms: ${reason}`)
      await delay(POLL_MS)
    }
  }

  static async create (name, servers) {
    const [master] = servers
    const config = sentinelConfig(name, master)
    const sentinelServers = await Promise.all(Array.from({ length: SENTINELS }, () => startRedis({ sentinel: config })))
    const setup = new RedisSentinel(name, servers, sentinelServers)
    try {
      await Promise.all(sentinelServers.map((sentinel) => setup.admin(sentinel).call('SENTINEL', 'DEBUG', ...SENTINEL_PERIODS)))
      await setup.#waitUntilReady()
    } catch (error) {
      const logs = setup.logs()
      await setup.stop()
      throw new Error(`Redis Sentinel did not start: ${error.message}\n${logs}`)
    }
    return setup
  }
}

function sentinelConfig (name, master) {
  return [
    'sentinel resolve-hostnames no',
    `sentinel monitor ${name} ${master.host} ${master.port} ${QUORUM}`,
    `sentinel down-after-milliseconds ${name} ${DOWN_AFTER_MS}`,
    `sentinel failover-timeout ${name} ${FAILOVER_TIMEOUT_MS}`,
    `sentinel parallel-syncs ${name} 2`,
  ]
}

/** `[key, value, key, value, …]`, as SENTINEL answers, → an object. */
function fields (flat) {
  const object = {}
  for (let index = 0; index < flat.length; index += 2) object[flat[index]] = flat[index + 1]
  return object
}

/** Whether a replica as SENTINEL REPLICAS lists it is up and linked to its master. */
function healthyReplica (replica) {
  return replica.flags === 'slave' && replica['master-link-status'] === 'ok'
}

/** How many replicas, of the `wanted`, acknowledge a write (set, then deleted) on `client`'s connection within a second. */
async function acknowledgedWrite (client, wanted) {
  const probe = 'ironlock-test:replica-probe'
  await client.set(probe, '1')
  await client.del(probe)
  return client.wait(wanted, 1000)
}

/**
 * Starts a master with `replicas` replicas (1 or 2) and 3 sentinels that monitor it as `name`
 * (quorum 2), and resolves once every sentinel knows them all and every replica is in sync.
 * @returns {Promise<RedisSentinel>}
 */
async function startSentinel ({ replicas = 1, name = 'mymaster' } = {}) {
  const master = await startRedis()
  let replicaServers
  try {
    replicaServers = await Promise.all(Array.from({ length: replicas }, () => startReplica(master)))
  } catch (error) {
    await master.stop()
    throw error
  }
  return RedisSentinel.create(name, [master, ...replicaServers])
}

module.exports = { startSentinel }
