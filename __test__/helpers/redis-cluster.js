'use strict'

// A throwaway Redis Cluster for tests: masters and their replicas started by redis-server.js (so a
// failed test prints every node's log, and stopAll() or the jest environment kills them all),
// joined by `redis-cli --cluster create`, ready once every node says cluster_state:ok, knows a
// master for every slot and every replica is in sync. Plus what the Cluster tests do to one: kill
// a master until a replica takes over and restart it as a replica, migrate a slot step by step,
// empty every master.

const { execFile } = require('node:child_process')
const { setTimeout: delay } = require('node:timers/promises')
const { promisify } = require('node:util')
const { startRedisSet } = require('./redis-server')

const runFile = promisify(execFile)

const SLOTS = 16384
/** Short, so a killed master's replica takes over within about two seconds. */
const NODE_TIMEOUT_MS = 1000
const READY_TIMEOUT_MS = 30000
const POLL_MS = 50
const CREATE_TIMEOUT_MS = 30000

class RedisCluster {
  #admins = new Map()
  #killed = new Set()

  constructor (nodes) {
    this.nodes = nodes
  }

  /** The live nodes as `{ host, port }` seeds. */
  get seeds () {
    return this.#live().map(({ host, port }) => ({ host, port }))
  }

  /** `redis+cluster://host:port,…`: the live nodes as one target URL. */
  get url () {
    return `redis+cluster://${this.#live().map(({ host, port }) => `${host}:${port}`).join(',')}`
  }

  /** The nodes serving slots now. */
  async masters () {
    const ports = new Set((await this.#slotRanges()).map(({ port }) => port))
    return this.nodes.filter((node) => ports.has(node.port))
  }

  /** The node serving `key` now. */
  async masterOf (key) {
    const port = await this.#ownerPort(await this.slotOf(key))
    return this.#byPort(port)
  }

  /** A replica of `master`. */
  async replicaOf (master) {
    for (const node of this.#live()) {
      const replication = await this.admin(node).info('replication')
      if (replication.includes(`master_port:${master.port}\r\n`)) return node
    }
    throw new Error(`no replica of ${master.port}`)
  }

  /** One key per master, `<prefix>:<n>`, served by it. */
  async keyOnEachMaster (prefix) {
    const ranges = await this.#slotRanges()
    const keys = []
    for (const master of await this.masters()) {
      for (let index = 0; ; index++) {
        const key = `${prefix}:${index}`
        const slot = await this.slotOf(key)
        if (ranges.some(({ first, last, port }) => port === master.port && slot >= first && slot <= last)) {
          keys.push(key)
          break
        }
      }
    }
    return keys
  }

  async slotOf (key) {
    return this.admin(this.#live()[0]).cluster('KEYSLOT', key)
  }

  /** FLUSHALL on every master (replicas follow). */
  async flushAll () {
    await Promise.all((await this.masters()).map((master) => this.admin(master).flushall()))
  }

  /** Kills the master of `key` (SIGKILL); resolves the killed node once a replica serves its slot. */
  async failOver (key) {
    const slot = await this.slotOf(key)
    const dead = await this.masterOf(key)
    this.#killed.add(dead)
    this.#admins.get(dead)?.disconnect()
    this.#admins.delete(dead)
    await dead.kill('SIGKILL')
    await this.#until(async () => {
      const port = await this.#ownerPort(slot).catch(() => null)
      return port !== null && port !== dead.port ? null : `slot ${slot} still without a new master`
    })
    await this.#waitUntilReady()
    return dead
  }

  /**
   * Restarts a node failOver() killed, empty but with its identity (nodes.conf), and resolves once
   * it has rejoined as a replica of the master that took its place, in sync.
   */
  async rejoin (node) {
    await node.restart()
    this.#killed.delete(node)
    await this.#until(async () => {
      const replication = await this.admin(node).info('replication').catch((error) => error.message)
      return replication.includes('role:slave') ? null : `${node.port} not yet a replica`
    })
    await this.#waitUntilReady()
  }

  /** Marks the slot of `key` as moving to another master: IMPORTING there, MIGRATING here. */
  async beginMigration (key) {
    const slot = await this.slotOf(key)
    const from = await this.masterOf(key)
    const to = (await this.masters()).find((master) => master !== from)
    await this.admin(to).cluster('SETSLOT', slot, 'IMPORTING', await this.#id(from))
    await this.admin(from).cluster('SETSLOT', slot, 'MIGRATING', await this.#id(to))
    return { slot, from, to }
  }

  /** Moves every key of the migrating slot to its target, as `redis-cli --cluster reshard` does. */
  async moveKeys ({ slot, from, to }) {
    for (;;) {
      const keys = await this.admin(from).cluster('GETKEYSINSLOT', slot, 100)
      if (keys.length === 0) return
      await this.admin(from).migrate(to.host, to.port, '', 0, 5000, 'KEYS', ...keys)
    }
  }

  /** Gives the slot to its target on every master and resolves once every node agrees. */
  async finishMigration ({ slot, to }) {
    const id = await this.#id(to)
    for (const master of await this.masters()) await this.admin(master).cluster('SETSLOT', slot, 'NODE', id)
    await this.#until(async () => {
      const owners = await Promise.all(this.#live().map((node) => this.#ownerPort(slot, node)))
      return owners.every((port) => port === to.port) ? null : `slot ${slot} not yet on ${to.port}: ${owners}`
    })
  }

  /** An ioredis client of `node`, kept for the cluster's life. */
  admin (node) {
    let client = this.#admins.get(node)
    if (!client) {
      client = node.client()
      this.#admins.set(node, client)
    }
    return client
  }

  async stop () {
    for (const client of this.#admins.values()) client.disconnect()
    this.#admins.clear()
    await Promise.all(this.nodes.map((node) => node.stop()))
  }

  #live () {
    return this.nodes.filter((node) => !this.#killed.has(node))
  }

  #byPort (port) {
    const node = this.nodes.find((each) => each.port === port)
    if (!node) throw new Error(`no node on port ${port}`)
    return node
  }

  async #id (node) {
    return this.admin(node).cluster('MYID')
  }

  async #slotRanges (node = this.#live()[0]) {
    return masterRanges(await this.admin(node).cluster('NODES'))
  }

  async #ownerPort (slot, node) {
    const range = (await this.#slotRanges(node)).find(({ first, last }) => slot >= first && slot <= last)
    if (!range) throw new Error(`no master serves slot ${slot}`)
    return range.port
  }

  async #waitUntilReady () {
    await this.#until(async () => {
      const pending = await Promise.all(this.#live().map((node) => this.#notReady(node)))
      return pending.filter(Boolean).join('; ') || null
    })
  }

  /** Why `node` is not ready yet, or null. */
  async #notReady (node) {
    const admin = this.admin(node)
    const [info, replication, nodes] = await Promise.all([
      admin.cluster('INFO'), admin.info('replication'), admin.cluster('NODES'),
    ]).catch((error) => [error.message, '', ''])
    if (!info.includes('cluster_state:ok')) return `${node.port}: ${info.split('\r\n')[0]}`
    if (replication.includes('role:slave') && !replication.includes('master_link_status:up')) {
      return `${node.port}: replica not in sync`
    }
    const covered = masterRanges(nodes).reduce((sum, { first, last }) => sum + last - first + 1, 0)
    return covered === SLOTS ? null : `${node.port}: knows the masters of ${covered} slots`
  }

  /** Polls `pending` (null: done, else why not) until done, or rejects with its last reason. */
  async #until (pending) {
    const deadline = Date.now() + READY_TIMEOUT_MS
    for (;;) {
      const reason = await pending()
      if (reason === null) return
      if (Date.now() > deadline) throw new Error(`cluster not ready after ${READY_TIMEOUT_MS} ms: ${reason}`)
      await delay(POLL_MS)
    }
  }

  static async create (nodes, replicasPerMaster) {
    const cluster = new RedisCluster(nodes)
    const addresses = nodes.map(({ host, port }) => `${host}:${port}`)
    const args = ['--cluster', 'create', ...addresses, '--cluster-replicas', String(replicasPerMaster), '--cluster-yes']
    try {
      await runFile('redis-cli', args, { timeout: CREATE_TIMEOUT_MS })
      await cluster.#waitUntilReady()
    } catch (error) {
      await cluster.stop()
      // The message already carries redis-cli's stderr; its report is on stdout.
      throw new Error(`Redis Cluster did not start: ${error.message}\n${error.stdout ?? ''}`)
    }
    return cluster
  }
}

/** `{ first, last, port }` of each slot range a healthy master serves, read from CLUSTER NODES. */
function masterRanges (nodes) {
  const ranges = []
  for (const line of nodes.split('\n')) {
    const fields = line.trim().split(/\s+/)
    if (fields.length < 8 || !fields[2].includes('master') || fields[2].includes('fail')) continue
    const port = Number(fields[1].split('@')[0].split(':').pop())
    // Slots being imported or migrated show as `[slot-<-id]`: not served by this line's node.
    for (const range of fields.slice(8).filter((each) => !each.startsWith('['))) {
      const [first, last = first] = range.split('-').map(Number)
      ranges.push({ first, last, port })
    }
  }
  return ranges
}

/**
 * Starts `masters` masters with `replicasPerMaster` replicas each and resolves once the cluster
 * serves every slot.
 * @returns {Promise<RedisCluster>}
 */
async function startCluster ({ masters = 3, replicasPerMaster = 1 } = {}) {
  const nodes = await startRedisSet(masters * (1 + replicasPerMaster), {
    cluster: true,
    args: ['--cluster-node-timeout', String(NODE_TIMEOUT_MS)],
  })
  return RedisCluster.create(nodes, replicasPerMaster)
}

module.exports = { startCluster }
