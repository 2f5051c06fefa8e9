'use strict'

// The bench's Sentinel topology (bench/topologies/sentinel.js): every implementation that says it
// runs behind Sentinel finds the master through the sentinels and locks there, and the bench's
// command counts see it on that master; and ironlock's figures there are set against one Redis's.

const Redis = require('ioredis')
const adapters = require('../../bench/adapters')
const sentinel = require('../../bench/topologies/sentinel')
const single = require('../../bench/topologies/single')
const { readCommandCounts, resetCommandCounts } = require('../../bench/commands')
const { compareTopologies } = require('../../bench/topology-comparison')
const { freePort } = require('../helpers/redis-server')

const behindSentinel = adapters.filter((adapter) => adapter.sentinel && !adapter.unavailable)
const KEYS = ['bench:test:a', 'bench:test:b', 'bench:test:c']

let deployment
const clients = []

beforeAll(async () => {
  deployment = await sentinel.start()
}, 60000)

afterAll(async () => {
  for (const client of clients) client.disconnect()
  await deployment?.stop()
})

/** A plain connection of its own to `server`. */
function clientOf(server) {
  const client = new Redis(server.url)
  clients.push(client)
  return client
}

test('the deployment is one master with its replica, named by three sentinels, and every lock is on it', async () => {
  expect(deployment.servers).toHaveLength(1)
  const [master] = deployment.servers
  expect(await deployment.serversOf('any key')).toEqual([master])
  expect(deployment.sentinel.sentinels).toHaveLength(3)
  const [role, , replicas] = await clientOf(master).call('ROLE')
  expect({ role, replicas: replicas.length }).toEqual({ role: 'master', replicas: 1 })
  const named = await Promise.all(deployment.sentinel.sentinels.map(({ host, port }) => {
    const sentinelClient = new Redis({ host, port })
    clients.push(sentinelClient)
    return sentinelClient.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', deployment.sentinel.name)
  }))
  expect(named.map(([, port]) => `redis://127.0.0.1:${port}`)).toEqual([master.url, master.url, master.url])
})

test('every implementation says it runs behind Sentinel: each takes an ioredis client with sentinels', () => {
  expect(adapters.filter((adapter) => adapter.sentinel).map((adapter) => adapter.name))
    .toEqual(['ironlock', 'redlock', 'sesame-redlock', 'redis-semaphore', 'redlock-universal', 'nx-spin'])
})

test.each(behindSentinel.map((adapter) => [adapter.name, adapter]))('%s finds the master through the sentinels and locks there', async (_, adapter) => {
  const [master] = deployment.servers
  await master.reset()
  // No server at the URL: the master is reachable only through the sentinels.
  const nowhere = `redis://127.0.0.1:${await freePort()}`
  const locks = adapter.create({ urls: [nowhere], cluster: false, sentinel: deployment.sentinel, maxWaitMs: 5000 })
  try {
    for (const key of KEYS) {
      const stored = locks.storedKey?.(key) ?? key
      await resetCommandCounts([master])
      const handle = await locks.acquire(key, 10000)
      expect(await clientOf(master).exists(stored)).toBe(1)
      await locks.release(handle)
      expect(await clientOf(master).exists(stored)).toBe(0)
      expect((await readCommandCounts([master])).total).toBeGreaterThan(0)
    }
  } finally {
    await locks.close()
  }
}, 30000)

test('ironlock on Sentinel is set against ironlock on one Redis, case by case, > 1 meaning better behind Sentinel', () => {
  const row = (impl, cyclesPerSec, p50) => ({
    impl,
    cyclesPerSec,
    latencyMs: { p50, p99: p50 * 2 },
    eluUsPerCycle: 10,
    cpuUsPerCycle: 20,
    redisCpuUsPerCycle: 30,
    commandsPerCycle: 8
  })
  const title = 'uncontended: 32 workers, one key each, 1 s'
  const results = [
    { topologyKey: 'single', scenario: 'uncontended', title, rows: [row('ironlock', 20000, 1), row('nx-spin', 9000, 3)] },
    { topologyKey: 'sentinel', scenario: 'uncontended', title, rows: [row('ironlock', 18000, 1.25), row('nx-spin', 10000, 2)] },
    { topologyKey: 'sentinel', scenario: 'uncontended', title: 'only here', rows: [row('ironlock', 1, 1)] }
  ]
  const [compared, ...others] = compareTopologies(results, sentinel, single)
  expect(others).toEqual([])
  expect(compared.title).toBe(title)
  expect(compared.ratios['cycles/s']).toBeCloseTo(0.9)
  expect(compared.ratios['p50 ms']).toBeCloseTo(0.8)
  expect(compared.ratios['cmds/cycle']).toBeCloseTo(1)
  expect(sentinel.comparedWith).toContain(single.key)
})
