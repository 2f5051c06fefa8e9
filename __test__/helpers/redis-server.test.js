'use strict'

const fs = require('node:fs')
const Redis = require('ioredis')
const { startRedis, startRedisSet, startReplica, startCluster, stopAll } = require('./redis-server')

// The developer's own Redis; the harness must never use it.
const RESERVED_PORT = 6379

// Clients these tests open themselves (the harness disconnects only its own).
const ownClients = []
function connect (options) {
  const client = new Redis({ maxRetriesPerRequest: 1, ...options })
  client.on('error', () => {})
  ownClients.push(client)
  return client
}

afterEach(() => {
  for (const client of ownClients.splice(0)) client.disconnect()
})

afterAll(async () => {
  await stopAll()
})

test('starts a server that answers PING on a free loopback port, and stops it', async () => {
  const server = await startRedis()
  expect(server.host).toBe('127.0.0.1')
  expect(server.port).not.toBe(RESERVED_PORT)
  expect(server.url).toBe(`redis://127.0.0.1:${server.port}`)
  expect(server.pid).toEqual(expect.any(Number))
  expect(await server.client().ping()).toBe('PONG')
  expect(server.log()).toMatch(/Ready to accept connections/)

  await server.stop()
  expect(server.running).toBe(false)
  expect(fs.existsSync(server.dir)).toBe(false)
  expect(server.log()).toMatch(/ready to exit, bye bye/)
  await server.stop()
})

test('a password server rejects unauthenticated clients and accepts its url', async () => {
  const server = await startRedis({ password: 's3cret:/@' })
  expect(server.url).toBe(`redis://:${encodeURIComponent('s3cret:/@')}@127.0.0.1:${server.port}`)

  await expect(connect({ port: server.port }).ping()).rejects.toThrow(/NOAUTH/)
  expect(await connect(server.url).ping()).toBe('PONG')
  expect(await server.client().ping()).toBe('PONG')
  await server.stop()
})

test('ACL users get their password and rules', async () => {
  const server = await startRedis({
    aclUsers: [
      { username: 'locker', password: 'pw1', rules: '+@all ~*' },
      { username: 'reader', password: 'pw2', rules: '+get ~*' }
    ]
  })
  const locker = connect({ port: server.port, username: 'locker', password: 'pw1' })
  expect(await locker.acl('WHOAMI')).toBe('locker')
  expect(await locker.set('key', 'value')).toBe('OK')

  // The ready check runs INFO, which this user may not.
  const reader = connect({ port: server.port, username: 'reader', password: 'pw2', enableReadyCheck: false })
  expect(await reader.get('key')).toBe('value')
  await expect(reader.set('key', 'other')).rejects.toThrow(/NOPERM/)

  await expect(
    connect({ port: server.port, username: 'locker', password: 'wrong' }).ping()
  ).rejects.toThrow(/WRONGPASS/)
  await server.stop()
})

test('kill and restart keep the same port, and the harness client reconnects', async () => {
  const server = await startRedis()
  const { port, pid } = server
  const client = server.client()
  expect(await client.set('key', 'value')).toBe('OK')

  await server.kill()
  expect(server.running).toBe(false)
  await expect(connect({ port, retryStrategy: () => null }).ping()).rejects.toThrow()

  await server.restart()
  expect(server.port).toBe(port)
  expect(server.pid).not.toBe(pid)
  // Nothing is persisted, so the restarted server starts empty.
  expect(await client.get('key')).toBeNull()
  expect(await server.client().ping()).toBe('PONG')

  await server.stop()
  await server.restart()
  expect(await server.client().ping()).toBe('PONG')
  await server.stop()
})

test('pause makes PING time out and resume answers again', async () => {
  const server = await startRedis()
  const client = connect({ port: server.port, commandTimeout: 300 })
  expect(await client.ping()).toBe('PONG')

  server.pause()
  await expect(client.ping()).rejects.toThrow(/timed out/)

  server.resume()
  expect(await client.ping()).toBe('PONG')
  await server.stop()
})

test('a paused server still stops', async () => {
  const server = await startRedis()
  server.pause()
  await server.stop()
  expect(server.running).toBe(false)
})

test('startRedisSet starts independent masters', async () => {
  const servers = await startRedisSet(3)
  expect(new Set(servers.map((server) => server.port)).size).toBe(3)

  const [first, ...others] = servers.map((server) => server.client())
  await first.set('key', 'value')
  for (const other of others) expect(await other.get('key')).toBeNull()
  for (const client of [first, ...others]) {
    expect(await client.info('replication')).toMatch(/role:master/)
  }
  await Promise.all(servers.map((server) => server.stop()))
})

test('startReplica returns a replica whose link is up: the master counts it in WAIT', async () => {
  const master = await startRedis()
  const replica = await startReplica(master)
  const [writer, reader] = [master.client(), replica.client()]
  await writer.set('key', 'value')
  expect(await writer.wait(1, 1000)).toBe(1)
  expect(await reader.get('key')).toBe('value')
  expect(await reader.info('replication')).toMatch(/role:slave[\s\S]*master_link_status:up/)
  await Promise.all([replica.stop(), master.stop()])
})

test('a failed start rejects with the server diagnostics', async () => {
  await expect(startRedis({ args: ['--maxmemory-policy', 'not-a-policy'] })).rejects.toThrow(
    /exited before answering PING[\s\S]*maxmemory-policy/
  )
})

test('a 3-master cluster reaches cluster_state:ok and serves keys from every slot range', async () => {
  const cluster = await startCluster({ masters: 3 })
  expect(cluster.seeds).toEqual(cluster.nodes.map(({ port }) => ({ host: '127.0.0.1', port })))
  for (const node of cluster.nodes) {
    expect(await node.client().cluster('INFO')).toMatch(/cluster_state:ok/)
  }

  const client = new Redis.Cluster(cluster.seeds, { redisOptions: { maxRetriesPerRequest: 1 } })
  try {
    const keys = Array.from({ length: 30 }, (_, index) => `key-${index}`)
    for (const key of keys) await client.set(key, `value of ${key}`)
    for (const key of keys) expect(await client.get(key)).toBe(`value of ${key}`)

    // Every master owns a third of the slots, so 30 keys land on all of them.
    const keysPerNode = await Promise.all(cluster.nodes.map((node) => node.client().dbsize()))
    expect(keysPerNode.every((count) => count > 0)).toBe(true)
  } finally {
    await client.quit()
  }
  await cluster.stop()
})

test('stopAll stops every running server and is safe to call twice', async () => {
  const servers = await startRedisSet(2)
  await stopAll()
  expect(servers.every((server) => !server.running)).toBe(true)
  await stopAll()
})
