'use strict'

// The bench's replicated topology (bench/topologies/replicated.js): the Sentinel topology's
// servers without the sentinels, one master and its replica by URL, where only ironlock runs, as
// the reference its rows behind Sentinel are set against.

const Redis = require('ioredis')
const adapters = require('../../bench/adapters')
const replicated = require('../../bench/topologies/replicated')
const { readCommandCounts, resetCommandCounts } = require('../../bench/commands')

let deployment
const clients = []

beforeAll(async () => {
  deployment = await replicated.start()
}, 30000)

afterAll(async () => {
  for (const client of clients) client.disconnect()
  await deployment?.stop()
})

test('only ironlock runs there', () => {
  expect(adapters.filter((adapter) => replicated.admits(adapter)).map((adapter) => adapter.name)).toEqual(['ironlock'])
})

test('ironlock locks by URL on a master that has one replica', async () => {
  const ironlock = adapters.find((adapter) => adapter.name === 'ironlock')
  const [master] = deployment.servers
  await master.reset()
  const admin = new Redis(master.url)
  clients.push(admin)
  const [role, , replicas] = await admin.call('ROLE')
  expect({ role, replicas: replicas.length }).toEqual({ role: 'master', replicas: 1 })
  const locks = ironlock.create({ urls: deployment.urls, cluster: deployment.cluster, maxWaitMs: 5000 })
  try {
    await resetCommandCounts([master])
    const handle = await locks.acquire('bench:test:replicated', 10000)
    expect(await admin.exists('bench:test:replicated')).toBe(1)
    await locks.release(handle)
    expect(await admin.exists('bench:test:replicated')).toBe(0)
    expect((await readCommandCounts([master])).evals).toBeGreaterThan(0)
  } finally {
    await locks.close()
  }
}, 30000)
