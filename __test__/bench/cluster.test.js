'use strict'

// The bench's Cluster topology (bench/topologies/cluster.js): every implementation that says it
// runs on a Cluster locks and releases keys on every master through it, each on a fresh cluster
// (none of its scripts loaded yet), each key on the master serversOf() names, and the bench's
// command counts see it there.

const Redis = require('ioredis')
const adapters = require('../../bench/adapters')
const cluster = require('../../bench/topologies/cluster')
const { readCommandCounts, resetCommandCounts } = require('../../bench/commands')

const onCluster = adapters.filter((adapter) => adapter.cluster && !adapter.unavailable)
const KEYS = ['bench:test:a', 'bench:test:b', 'bench:test:c', 'bench:test:d', 'bench:test:e']

let deployment
const clients = []

beforeAll(async () => {
  deployment = await cluster.start()
}, 60000)

afterAll(async () => {
  for (const client of clients) client.disconnect()
  await deployment?.stop()
})

/** Whether `key` is set on `server`, read over a plain connection of its own. */
async function isSetOn(server, key) {
  const client = new Redis(server.url)
  clients.push(client)
  return (await client.exists(key)) === 1
}

test('the Cluster has three masters, and the keys spread over all of them', async () => {
  expect(deployment.servers).toHaveLength(3)
  expect(deployment.cluster).toBe(true)
  const owners = new Set()
  for (const key of KEYS) {
    const servers = await deployment.serversOf(key)
    expect(servers).toHaveLength(1)
    owners.add(servers[0])
  }
  expect(owners.size).toBe(3)
})

test.each(onCluster.map((adapter) => [adapter.name, adapter]))('%s locks each key on the master that serves it, on a fresh Cluster', async (_, adapter) => {
  await Promise.all(deployment.servers.map((server) => server.reset()))
  const locks = adapter.create({ urls: deployment.urls, cluster: true, maxWaitMs: 5000 })
  try {
    for (const key of KEYS) {
      const stored = locks.storedKey?.(key) ?? key
      // redis-semaphore's `mutex:<key>` may hash to another master than the key.
      const [master] = await deployment.serversOf(stored)
      await resetCommandCounts(deployment.servers)
      const handle = await locks.acquire(key, 10000)
      expect(await isSetOn(master, stored)).toBe(true)
      await locks.release(handle)
      expect(await isSetOn(master, stored)).toBe(false)
      expect((await readCommandCounts([master])).total).toBeGreaterThan(0)
    }
  } finally {
    await locks.close()
  }
}, 30000)
