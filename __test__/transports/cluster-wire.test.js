'use strict'

// The wire on a Redis Cluster (lib/shard-wires.js): a JS-thread socket to each master, one-key
// acquires and releases on the socket to the master of their key's slot, and what the wire cannot
// be sure of (a slot migrated away, a master killed) on the native connection, which follows the
// cluster. Against real clusters of 3 masters with a replica each.

const { setTimeout: sleep } = require('node:timers/promises')
const { startCluster } = require('../helpers/redis-cluster')
const { stopAll } = require('../helpers/redis-server')
const { Locker } = require('../..')

const WIRE_NAME = 'ironlock-wire'
/** Enough for a call to ride out a failover (about two seconds with the harness's node timeout). */
const TIMEOUTS = { connectTimeout: 5000, commandTimeout: 5000 }

afterAll(() => stopAll())

/** The `ironlock-wire` clients of `node`, as `CLIENT LIST` entries. */
async function wiresOn(cluster, node) {
  const list = await cluster.admin(node).client('LIST')
  return list.trim().split('\n')
    .map((line) => Object.fromEntries(line.split(' ').map((field) => field.split('='))))
    .filter((entry) => entry.name === WIRE_NAME)
}

/** Cycles locks on `keys` until a wire is up on the master of each, or fails: its `CLIENT LIST` entries by master port. */
async function wiresUp(cluster, locker, keys) {
  const giveUpAt = Date.now() + 10000
  for (;;) {
    for (const key of keys) await (await locker.acquire(key, { ttl: 5000, wait: 5000 })).release()
    const masters = await Promise.all(keys.map((key) => cluster.masterOf(key)))
    const wires = await Promise.all(masters.map((master) => wiresOn(cluster, master)))
    if (wires.every((entries) => entries.length > 0)) return new Map(masters.map((master, i) => [master.port, wires[i]]))
    if (Date.now() > giveUpAt) throw new Error('a master had no wire within 10 s')
    await sleep(20)
  }
}

/** The sources of the EVALSHA calls `node` runs while `work()` runs. */
async function evalshaSources(node, work) {
  const monitor = await node.client().monitor()
  const sources = []
  monitor.on('monitor', (time, args, source) => {
    if (/^evalsha$/i.test(args[0])) sources.push(source)
  })
  try {
    await work()
    await sleep(50)
  } finally {
    monitor.disconnect()
  }
  return sources
}

/**
 * Two tasks per key of `keys`, one on each of `lockers`, looping acquire + release until `stop()`
 * resolves, each checking that nobody else holds its key: resolves the cycles and the overlaps.
 */
async function contend(lockers, keys, stop) {
  const inside = new Map(keys.map((key) => [key, 0]))
  let overlaps = 0
  let cycles = 0
  let running = true
  const stopped = stop().finally(() => { running = false })
  const tasks = keys.flatMap((key) => lockers.map((locker) => [locker, key]))
  await Promise.all(tasks.map(async ([locker, key]) => {
    while (running) {
      const lock = await locker.acquire(key, { ttl: 10000, wait: 20000 })
      if (inside.get(key) > 0) overlaps++
      inside.set(key, inside.get(key) + 1)
      await sleep(1)
      inside.set(key, inside.get(key) - 1)
      await lock.release()
      cycles++
    }
  }))
  await stopped
  return { cycles, overlaps }
}

describe('one cluster', () => {
  let cluster

  beforeAll(async () => {
    cluster = await startCluster()
  })

  test('once up, one-key acquires and releases travel on a wire to each master', async () => {
    const locker = new Locker(cluster.url, TIMEOUTS)
    try {
      const keys = await cluster.keyOnEachMaster('wire')
      const wires = await wiresUp(cluster, locker, keys)
      expect(wires.size).toBe(3)
      for (const key of keys) {
        const master = await cluster.masterOf(key)
        let fence = 0
        const sources = await evalshaSources(master, async () => {
          for (let cycle = 0; cycle < 10; cycle++) {
            const lock = await locker.acquire(key, { ttl: 5000 })
            expect(await cluster.admin(master).get(key)).toBe(lock.token)
            expect(lock.fence).toBeGreaterThan(fence)
            fence = lock.fence
            expect(await lock.release()).toBe(true)
          }
        })
        expect(sources.length).toBeGreaterThanOrEqual(20)
        expect(new Set(sources)).toEqual(new Set(wires.get(master.port).map((wire) => wire.addr)))
      }
    } finally {
      await locker.close()
    }
    // close() closes every master's socket.
    for (const master of await cluster.masters()) {
      for (let tries = 0; (await wiresOn(cluster, master)).length > 0; tries++) {
        if (tries > 100) throw new Error(`a wire stayed open on ${master.port}`)
        await sleep(10)
      }
    }
  })

  test('keys of many slots asked together go to their masters, each lock on its own master', async () => {
    const locker = new Locker(cluster.url, TIMEOUTS)
    try {
      await wiresUp(cluster, locker, await cluster.keyOnEachMaster('many'))
      const keys = Array.from({ length: 60 }, (_, i) => `many:${i}`)
      const locks = await Promise.all(keys.map((key) => locker.acquire(key, { ttl: 5000 })))
      for (const lock of locks) expect(await cluster.admin(await cluster.masterOf(lock.key)).get(lock.key)).toBe(lock.token)
      expect(await Promise.all(locks.map((lock) => lock.release()))).toEqual(keys.map(() => true))
      for (const key of keys) expect(await cluster.admin(await cluster.masterOf(key)).exists(key)).toBe(0)
    } finally {
      await locker.close()
    }
  })
})

test('a slot migrated under the wire (CLUSTER SETSLOT … NODE): its calls meet MOVED, run natively, then on the new master\'s wire, with no overlap', async () => {
  const cluster = await startCluster()
  const lockers = [1, 2].map(() => new Locker(cluster.url, TIMEOUTS))
  try {
    const key = '{migrated}:k'
    for (const locker of lockers) await wiresUp(cluster, locker, [key, ...await cluster.keyOnEachMaster('warm')])
    const from = await cluster.masterOf(key)
    const held = await lockers[0].acquire(key, { ttl: 30000 })
    expect(await cluster.admin(from).get(key)).toBe(held.token)

    let migration
    const keys = [0, 1, 2, 3].map((n) => `{migrated}:${n}`)
    const { cycles, overlaps } = await contend(lockers, keys, async () => {
      await sleep(100)
      await held.release()
      migration = await cluster.beginMigration(key)
      await sleep(100)
      await cluster.moveKeys(migration)
      await cluster.finishMigration(migration)
      await sleep(300)
    })
    expect(overlaps).toBe(0)
    expect(cycles).toBeGreaterThan(20)
    expect(await cluster.masterOf(key)).toBe(migration.to)

    // Both lockers' wires now take the key to its new master.
    const wires = (await Promise.all(lockers.map(() => wiresOn(cluster, migration.to)))).flat()
    const sources = await evalshaSources(migration.to, async () => {
      for (let cycle = 0; cycle < 5; cycle++) {
        for (const locker of lockers) {
          const lock = await locker.acquire(key, { ttl: 5000 })
          expect(await cluster.admin(migration.to).get(key)).toBe(lock.token)
          expect(await lock.release()).toBe(true)
        }
      }
    })
    expect(sources.length).toBeGreaterThanOrEqual(20)
    expect(sources.filter((source) => !wires.some((wire) => wire.addr === source))).toEqual([])
  } finally {
    await Promise.all(lockers.map((locker) => locker.close()))
    await cluster.stop()
  }
}, 60000)

test('a master SIGKILLed under its wire: what the wire carried and what follows runs natively and succeeds after the failover, then on a wire to the new master', async () => {
  const cluster = await startCluster()
  const [locker, other] = [1, 2].map(() => new Locker(cluster.url, TIMEOUTS))
  try {
    const key = '{killed}:k'
    await wiresUp(cluster, locker, [key])
    await wiresUp(cluster, other, [key])
    const keys = [0, 1, 2, 3].map((n) => `{killed}:${n}`)
    const { cycles, overlaps } = await contend([locker, other], keys, async () => {
      await sleep(100)
      await cluster.failOver(key)
      await sleep(300)
    })
    expect(overlaps).toBe(0)
    expect(cycles).toBeGreaterThan(20)
    // The new master's wire opens once the slot map names it.
    const master = await cluster.masterOf(key)
    const wires = await wiresUp(cluster, locker, [key])
    const sources = await evalshaSources(master, async () => {
      for (let cycle = 0; cycle < 10; cycle++) expect(await (await locker.acquire(key, { ttl: 5000 })).release()).toBe(true)
    })
    const ours = wires.get(master.port).map((wire) => wire.addr)
    expect(sources.length).toBeGreaterThanOrEqual(20)
    expect(sources.filter((source) => !ours.includes(source))).toEqual([])
  } finally {
    await Promise.all([locker.close(), other.close()])
    await cluster.stop()
  }
}, 60000)
