'use strict'

const { execFile } = require('node:child_process')
const path = require('node:path')
const { promisify } = require('node:util')
const { startRedis, startRedisSet, stopAll } = require('../helpers/redis-server')
const ironlock = require('../..')

const run = promisify(execFile)

let server
let redis

beforeAll(async () => {
  server = await startRedis()
  redis = server.client()
})

afterAll(async () => {
  await ironlock.close()
  await stopAll()
})

test('a script that never calls close() exits by itself within 2 s', async () => {
  const started = Date.now()
  const { stdout } = await run(process.execPath, [path.join(__dirname, '..', 'fixtures', 'forgets-close.js')], {
    env: { ...process.env, REDIS_URL: server.url },
    timeout: 10000,
  })
  expect(stdout.trim()).toBe('released=true')
  expect(Date.now() - started).toBeLessThan(2000)
})

test('worker threads load the addon round after round and may be terminated mid-operation', async () => {
  const { stdout } = await run(process.execPath, [path.join(__dirname, '..', 'fixtures', 'worker-rounds.js'), server.url], {
    timeout: 30000,
  })
  expect(stdout.trim()).toBe('rounds=10')
})

test('a pending wait keeps the script alive until it resolves', async () => {
  const holder = new ironlock.Locker(server.url)
  await holder.acquire('held-elsewhere', { ttl: 800 })
  const { stdout } = await run(process.execPath, [path.join(__dirname, '..', 'fixtures', 'awaits-lock.js'), server.url], {
    timeout: 10000,
  })
  expect(stdout.trim()).toBe('acquired=true')
  await holder.close()
})

test('ESM import works and gives the same classes', async () => {
  const source = `
    import { Locker, using, LockBusyError } from 'ironlock'
    import ironlock from 'ironlock'
    const locker = new Locker(process.argv[1])
    const fence = await locker.using('esm', async (signal, lock) => lock.fence)
    await locker.close()
    console.log(typeof using, LockBusyError === ironlock.LockBusyError, fence > 0)
  `
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', source, server.url], {
    cwd: path.join(__dirname, '..', '..'),
    timeout: 10000,
  })
  expect(stdout.trim()).toBe('function true true')
})

describe('top-level functions', () => {
  beforeAll(() => {
    ironlock.configure(server.url, { keyPrefix: 'top:' })
  })

  test('acquire, tryAcquire, extend, release and using share the default locker', async () => {
    const lock = await ironlock.acquire('a', { ttl: 2000 })
    expect(await redis.get('top:a')).toBe(lock.token)
    expect(await ironlock.tryAcquire('a')).toBeNull()
    await ironlock.extend(lock, 10000)
    expect(await redis.pttl('top:a')).toBeGreaterThan(9000)
    expect(await ironlock.release(lock)).toBe(true)
    expect(await ironlock.using('a', async () => 'ran')).toBe('ran')
  })

  test('close() closes the default locker and the next call opens a new one', async () => {
    const first = ironlock.getDefaultLocker()
    await ironlock.close()
    ironlock.configure(server.url, { keyPrefix: 'top:' })
    expect(ironlock.getDefaultLocker()).not.toBe(first)
    const lock = await ironlock.acquire('b')
    expect(await lock.release()).toBe(true)
  })

  test('the default locker reads REDIS_URL', async () => {
    await ironlock.close()
    const saved = process.env.REDIS_URL
    process.env.REDIS_URL = `${server.url}/3`
    try {
      const lock = await ironlock.acquire('env')
      await redis.select(3)
      expect(await redis.get('env')).toBe(lock.token)
      await lock.release()
    } finally {
      await redis.select(0)
      process.env.REDIS_URL = saved
      await ironlock.close()
    }
  })
})

test('a closed locker rejects with LockConnectionError', async () => {
  const locker = new ironlock.Locker(server.url)
  await locker.close()
  const error = await locker.acquire('k').catch((e) => e)
  expect(error).toBeInstanceOf(ironlock.LockConnectionError)
  expect(error.code).toBe('ECONNECTION')
})

test('release and extend after close() reject instead of hanging', async () => {
  const locker = new ironlock.Locker(server.url)
  const lock = await locker.acquire('closing', { ttl: 5000 })
  await locker.close()
  await expect(lock.release()).rejects.toThrow(ironlock.LockConnectionError)
  await expect(lock.extend(1000)).rejects.toThrow(ironlock.LockConnectionError)
})

describe('after close() resolves, none of the locker\'s connections is open', () => {
  /** Client ids on `client`'s server other than `client`'s own. */
  async function otherConnections(client) {
    const own = await client.client('ID')
    return (await client.client('LIST')).split('\n').filter((line) => line && !line.startsWith(`id=${own} `))
  }

  async function expectNoneLeft(clients) {
    // The server hears each close a moment after the socket is closed.
    for (let attempt = 0; ; attempt++) {
      const left = (await Promise.all(clients.map(otherConnections))).flat()
      if (left.length === 0 || attempt === 20) return expect(left).toEqual([])
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  /** 20 lockers, each with a holder and a waiter (so a pub/sub connection too), then closed. */
  async function useAndClose(target, clients) {
    const lockers = Array.from({ length: 20 }, () => new ironlock.Locker(target))
    await Promise.all(lockers.map(async (locker, i) => {
      const held = await locker.acquire(`closing:${i}`, { ttl: 5000 })
      const waiting = locker.acquire(`closing:${i}`, { wait: 5000 })
      await new Promise((resolve) => setTimeout(resolve, 50))
      await held.release()
      await (await waiting).release()
    }))
    expect((await Promise.all(clients.map(otherConnections))).flat().length).toBeGreaterThanOrEqual(20)
    await Promise.all(lockers.map((locker) => locker.close()))
    await expectNoneLeft(clients)
  }

  test('one Redis', async () => {
    await useAndClose(server.url, [redis])
  })

  test('Redlock', async () => {
    const nodes = await startRedisSet(3)
    const clients = nodes.map((node) => node.client())
    await useAndClose(nodes.map((node) => node.url), clients)
  })
})
