'use strict'

// redlock's attempts: `retryCount + 1` of them, `retryDelay ± retryJitter` apart, each reported
// with every node's vote (`attempts` of redlock 5's results and errors, a count in redlock 4's).
// A busy resource is waited for by push within each attempt's slot; an unreachable node fails
// the attempt, and is tried again until the retry budget ends.

const IORedis = require('ioredis')
const { startRedis, startRedisSet, stopAll } = require('../../../helpers/redis-server')
const Redlock = require('ironlock/redlock')
const { LockError, ExecutionError, ResourceLockedError } = Redlock

const opened = []
function shim(clients, settings) {
  const redlock = new Redlock(clients, settings)
  opened.push(redlock)
  return redlock
}

afterAll(async () => {
  for (const redlock of opened) await redlock.locker.close()
  await stopAll()
})

const QUICK = { retryCount: 2, retryDelay: 50, retryJitter: 10 }

describe.each([1, 3])('on %i server(s)', (count) => {
  let clients

  beforeAll(async () => {
    clients = (await startRedisSet(count)).map((server) => server.client())
  })

  beforeEach(() => Promise.all(clients.map((client) => client.flushall())))

  /** Holds `key` on every node as another process would, for `ttl` ms. */
  const holdElsewhere = (key, ttl) => Promise.all(clients.map((client) => client.set(key, 'elsewhere', 'PX', ttl)))

  test('v5: a failed acquisition has retryCount + 1 attempts, each with every node voting against', async () => {
    await holdElsewhere('busy', 10000)
    const error = await shim(clients, QUICK).acquire(['busy'], 1000).catch((e) => e)
    expect(error).toBeInstanceOf(ExecutionError)
    expect(error.attempts).toHaveLength(3)
    for (const stats of await Promise.all(error.attempts)) {
      expect(stats).toMatchObject({ membershipSize: count, quorumSize: Math.floor(count / 2) + 1 })
      expect(stats.votesFor.size).toBe(0)
      expect([...stats.votesAgainst.keys()]).toEqual(clients)
      for (const vote of stats.votesAgainst.values()) expect(vote).toBeInstanceOf(ResourceLockedError)
    }
  })

  test('v4: a failed lock() counts retryCount + 1 attempts', async () => {
    await holdElsewhere('busy', 10000)
    const error = await shim(clients, QUICK).lock('busy', 1000).catch((e) => e)
    expect(error).toBeInstanceOf(LockError)
    expect(error.attempts).toBe(3)
  })

  test('a lock won at once has one attempt; one won by retrying has more, the last voting for', async () => {
    const redlock = shim(clients, { retryCount: 20, retryDelay: 100, retryJitter: 0 })
    const first = await redlock.acquire(['free'], 1000)
    expect(first.attempts).toHaveLength(1)
    expect((await first.attempts[0]).votesFor.size).toBe(count)
    await first.release()

    await holdElsewhere('v5', 350)
    const v5 = await redlock.acquire(['v5'], 1000)
    expect(v5.attempts.length).toBeGreaterThan(1)
    const stats = await Promise.all(v5.attempts)
    expect(stats.at(-1).votesFor.size).toBe(count)
    for (const failed of stats.slice(0, -1)) expect(failed.votesAgainst.size).toBe(count)
    await v5.release()

    await holdElsewhere('v4', 350)
    const v4 = await redlock.lock('v4', 1000)
    expect(v4.attempts).toBeGreaterThan(1)
    expect(v4.attemptsRemaining).toBe(20 - v4.attempts)
    await v4.unlock()
  })

  test('a busy attempt is still woken by a release, not only at its next retry', async () => {
    const redlock = shim(clients, { retryCount: 3, retryDelay: 3000, retryJitter: 0 })
    const held = await redlock.acquire(['k'], 10000)
    setTimeout(() => held.release(), 100)
    const started = Date.now()
    const lock = await redlock.acquire(['k'], 1000)
    expect(Date.now() - started).toBeLessThan(2000)
    expect(lock.attempts).toHaveLength(1)
    await lock.release()
  })
})

describe('an unreachable Redis', () => {
  test('a blip shorter than the retry budget is retried through: the lock is won', async () => {
    const server = await startRedis()
    const client = new IORedis({ host: server.host, port: server.port, lazyConnect: true })
    const redlock = shim([client]) // redlock's defaults: 10 retries, 200 ± 100 ms apart
    await server.kill()
    setTimeout(() => server.restart(), 500)
    const lock = await redlock.acquire(['k'], 5000)
    expect(lock.attempts.length).toBeGreaterThan(1)
    const first = await lock.attempts[0]
    expect(first.votesAgainst.get(client)).toMatchObject({ code: 'ECONNECTION' })
    await lock.release()
    await server.stop()
  })

  test('an outage longer than the budget: ExecutionError after every attempt, a clientError for each', async () => {
    const server = await startRedis()
    const client = new IORedis({ host: server.host, port: server.port, lazyConnect: true })
    await server.stop()
    const redlock = shim([client], QUICK)
    const clientErrors = []
    redlock.on('clientError', (error) => clientErrors.push(error))
    const error = await redlock.acquire(['k'], 1000).catch((e) => e)
    expect(error).toBeInstanceOf(ExecutionError)
    expect(error.attempts).toHaveLength(3)
    for (const stats of await Promise.all(error.attempts)) {
      expect(stats.votesAgainst.get(client)).toMatchObject({ code: 'ECONNECTION' })
    }
    expect(clientErrors).toHaveLength(3)
    const v4 = await redlock.lock('k', 1000).catch((e) => e)
    expect(v4).toBeInstanceOf(LockError)
    expect(v4.attempts).toBe(3)
  })

  test('three servers, two of them down a moment: retried until a majority answers', async () => {
    const servers = await startRedisSet(3)
    const clients = servers.map((server) => new IORedis({ host: server.host, port: server.port, lazyConnect: true }))
    const redlock = shim(clients)
    await Promise.all([servers[0].kill(), servers[1].kill()])
    setTimeout(() => servers[0].restart(), 500)
    const lock = await redlock.acquire(['k'], 5000)
    expect(lock.attempts.length).toBeGreaterThan(1)
    const first = await lock.attempts[0]
    expect(first.votesAgainst.size).toBeGreaterThanOrEqual(2)
    await lock.release()
  })
})
