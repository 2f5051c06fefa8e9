'use strict'

// The Sentinel harness itself: one setup of a master, 2 replicas and 3 sentinels, walked through
// what the Sentinel suites do with it (ready, a failover, the old master back as a replica).

const Redis = require('ioredis')
const { startSentinel } = require('./redis-sentinel')
const { stopAll } = require('./redis-server')

// The developer's own Redis and Sentinel; the harness must never use them.
const RESERVED_PORTS = [6379, 26379]

let setup
const ownClients = []

/** A client of the master as ioredis finds it through the sentinels. */
function throughSentinels () {
  const client = new Redis({ sentinels: setup.sentinels, name: setup.name, maxRetriesPerRequest: 1 })
  client.on('error', () => {})
  ownClients.push(client)
  return client
}

afterEach(() => {
  for (const client of ownClients.splice(0)) client.disconnect()
})

afterAll(() => stopAll())

test('starts a master, its replicas in sync and 3 sentinels that know them all', async () => {
  setup = await startSentinel({ replicas: 2 })
  expect(setup.name).toBe('mymaster')
  expect(setup.sentinels).toHaveLength(3)
  expect(setup.sentinelServers.every((sentinel) => sentinel.isSentinel)).toBe(true)
  const ports = [...setup.servers, ...setup.sentinelServers].map(({ port }) => port)
  expect(new Set(ports).size).toBe(6)
  for (const port of RESERVED_PORTS) expect(ports).not.toContain(port)
  expect(setup.url).toBe(`redis+sentinel://${setup.sentinels.map(({ host, port }) => `${host}:${port}`).join(',')}/mymaster`)

  const master = await setup.master()
  expect(master).toBe(setup.servers[0])
  expect((await setup.replicas()).map(({ port }) => port).sort()).toEqual(setup.servers.slice(1).map(({ port }) => port).sort())
  for (const sentinel of setup.sentinelServers) {
    const [, port] = await setup.admin(sentinel).call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mymaster')
    expect(Number(port)).toBe(master.port)
  }

  const client = throughSentinels()
  await client.set('before', '1')
  expect(await client.wait(2, 1000)).toBe(2)
}, 60000)

test('failOver kills the master and resolves with the replica the sentinels promoted', async () => {
  const old = await setup.master()
  const promoted = await setup.failOver()
  expect(promoted).not.toBe(old)
  expect(old.running).toBe(false)
  expect(await setup.master()).toBe(promoted)
  expect((await setup.admin(promoted).call('ROLE'))[0]).toBe('master')
  expect((await setup.replicas()).map(({ port }) => port)).toEqual(setup.servers.filter((server) => server !== old && server !== promoted).map(({ port }) => port))

  // A client that asks the sentinels finds the new master; the write before the kill reached it.
  const client = throughSentinels()
  expect(await client.get('before')).toBe('1')
  expect(await client.wait(1, 1000)).toBe(1)
}, 60000)

test('restartOld starts the killed master on its port again, and the sentinels make it a replica in sync', async () => {
  const master = await setup.master()
  const old = setup.servers.find((server) => !server.running)
  const oldPort = old.port
  expect(await setup.restartOld()).toBe(old)
  expect(old.port).toBe(oldPort)
  expect(await setup.master()).toBe(master)
  expect(await setup.replicas()).toContain(old)
  const replication = await setup.admin(old).info('replication')
  expect(replication).toMatch(new RegExp(`role:slave[\\s\\S]*master_port:${master.port}\\r\\n`))
  expect(await setup.admin(old).get('before')).toBe('1')
  await expect(setup.restartOld()).rejects.toThrow(/no master was killed/)
}, 60000)

test('stop stops every server of the setup', async () => {
  await setup.stop()
  expect([...setup.servers, ...setup.sentinelServers].some((server) => server.running)).toBe(false)
})
