'use strict'

// The wire (lib/wire.js): the JS thread's own socket for one-key acquires and releases on a
// single Redis. Everything here runs against real redis-server processes.

const { setTimeout: sleep } = require('node:timers/promises')
const { startRedis, stopAll } = require('../helpers/redis-server')
const { Locker, LockConnectionError } = require('../..')

const WIRE_NAME = 'ironlock-wire'

let server
let redis

beforeAll(async () => {
  server = await startRedis()
  redis = server.client()
})

afterAll(async () => {
  await stopAll()
})

/** `CLIENT LIST` of `client` as objects. */
async function clients(client = redis) {
  const list = await client.client('LIST')
  return list.trim().split('\n').map((line) => Object.fromEntries(line.split(' ').map((field) => field.split('='))))
}

/** Cycles locks until the wire of `locker` is up (it opens on the first request), or fails. */
async function wireUp(locker, client = redis, key = 'wire:warm-up') {
  const giveUpAt = Date.now() + 5000
  while (Date.now() < giveUpAt) {
    await (await locker.acquire(key, { ttl: 5000 })).release()
    const wire = (await clients(client)).find((entry) => entry.name === WIRE_NAME)
    if (wire) return wire
    await sleep(20)
  }
  throw new Error('the wire did not come up within 5 s')
}

test('once the wire is up, one-key acquires and releases travel on it', async () => {
  const locker = new Locker(server.url)
  const wire = await wireUp(locker)
  const monitor = await server.client().monitor()
  const sources = []
  monitor.on('monitor', (time, args, source) => {
    if (/^evalsha$/i.test(args[0])) sources.push(source)
  })
  let fence = 0
  for (let cycle = 0; cycle < 20; cycle++) {
    const lock = await locker.acquire('wire:cycle', { ttl: 5000 })
    expect(lock.fence).toBeGreaterThan(fence)
    fence = lock.fence
    expect(await lock.release()).toBe(true)
  }
  await sleep(50)
  monitor.disconnect()
  expect(sources.length).toBeGreaterThanOrEqual(40)
  expect(new Set(sources)).toEqual(new Set([wire.addr]))
  await locker.close()
})

test('a waiter behind a lock taken on the wire queues and gets it when it is released', async () => {
  const locker = new Locker(server.url)
  await wireUp(locker)
  const held = await locker.acquire('wire:queue', { ttl: 10000 })
  const order = []
  const waiters = [1, 2, 3].map((n) => locker.acquire('wire:queue', { ttl: 10000, wait: 5000 })
    .then(async (lock) => {
      order.push(n)
      await sleep(5)
      await lock.release()
    }))
  await sleep(50)
  const released = Date.now()
  await held.release()
  await Promise.all(waiters)
  expect(order.sort()).toEqual([1, 2, 3])
  expect(Date.now() - released).toBeLessThan(2000)
  await locker.close()
})

test('a release on the wire wakes a waiter in another process through the release channel', async () => {
  const holder = new Locker(server.url)
  const waiter = new Locker(server.url)
  await wireUp(holder)
  const lock = await holder.acquire('wire:remote', { ttl: 20000 })
  const waiting = waiter.acquire('wire:remote', { ttl: 5000, wait: 15000 })
  await sleep(200)
  const released = Date.now()
  expect(await lock.release()).toBe(true)
  const taken = await waiting
  // Far sooner than the 20 s TTL: the release was announced.
  expect(Date.now() - released).toBeLessThan(2000)
  await taken.release()
  await Promise.all([holder.close(), waiter.close()])
})

test('a script cache flushed under the wire costs nothing but a round trip', async () => {
  const locker = new Locker(server.url)
  await wireUp(locker)
  await redis.script('FLUSH')
  const lock = await locker.acquire('wire:noscript', { ttl: 5000 })
  expect(await redis.get('wire:noscript')).toBe(lock.token)
  await redis.script('FLUSH')
  expect(await lock.release()).toBe(true)
  expect(await redis.exists('wire:noscript')).toBe(0)
  await locker.close()
})

test('a wire connection killed by the server is replaced, and locks keep working', async () => {
  const locker = new Locker(server.url)
  await wireUp(locker)
  await redis.client('KILL', 'SKIPME', 'yes', 'ID', (await clients()).find((entry) => entry.name === WIRE_NAME).id)
  for (let cycle = 0; cycle < 10; cycle++) {
    expect(await (await locker.acquire('wire:killed', { ttl: 5000 })).release()).toBe(true)
  }
  await sleep(1100)
  await wireUp(locker)
  await locker.close()
})

test('as an ACL user on another db, the wire authenticates and selects it', async () => {
  const secured = await startRedis({
    password: 'wire-pass-Z8',
    aclUsers: [{ username: 'wire-user', password: 'wire-user-pass-K3', rules: '+@all ~* &*' }],
  })
  const admin = secured.client()
  const locker = new Locker({ host: '127.0.0.1', port: secured.port, username: 'wire-user', password: 'wire-user-pass-K3', db: 2 })
  const wire = await wireUp(locker, admin)
  expect(wire).toMatchObject({ user: 'wire-user', db: '2' })
  const lock = await locker.acquire('wire:acl', { ttl: 5000 })
  await admin.select(2)
  expect(await admin.get('wire:acl')).toBe(lock.token)
  expect(await lock.release()).toBe(true)
  await locker.close()
  await secured.stop()
})

describe('faults under the wire', () => {
  let faulty
  let admin

  beforeEach(async () => {
    faulty = await startRedis()
    admin = faulty.client()
  })

  afterEach(async () => {
    faulty.resume()
    await faulty.stop()
  })

  test('a stalled Redis fails wire operations with LockConnectionError after commandTimeout', async () => {
    const locker = new Locker(faulty.url, { commandTimeout: 300 })
    await wireUp(locker, admin)
    faulty.pause()
    const started = Date.now()
    const error = await locker.acquire('wire:stalled', { ttl: 5000 }).catch((e) => e)
    expect(error).toBeInstanceOf(LockConnectionError)
    expect(error.key).toBe('wire:stalled')
    expect(Date.now() - started).toBeLessThan(2000)
    faulty.resume()
    // Whatever the timed-out attempt may have set is given back, long before its TTL.
    await eventually(async () => (await admin.exists('wire:stalled')) === 0, 3000)
    const lock = await locker.acquire('wire:stalled', { ttl: 5000, wait: 0 })
    expect(await lock.release()).toBe(true)
    await locker.close()
  })

  test('a Redis that stalls right after an answer fails what it still owes commandTimeout after that answer', async () => {
    const commandTimeout = 2000
    const locker = new Locker(faulty.url, { commandTimeout })
    await wireUp(locker, admin)
    // Microtasks only: the first acquire leaves on the wire, and no I/O is read meanwhile.
    const flushed = async () => { for (let i = 0; i < 20; i += 1) await null }
    const first = locker.acquire('wire:answered', { ttl: 10000 })
    await flushed()
    // Its answer arrives but stays unread while Redis stops and a second acquire follows it, so
    // the wire reads an answer while it still owes one.
    const until = performance.now() + 300
    while (performance.now() < until) { /* the first answer lands in the socket meanwhile */ }
    faulty.pause()
    const started = Date.now()
    const second = locker.acquire('wire:owed', { ttl: 10000 }).catch((e) => e)
    await flushed()
    const held = await first
    const error = await second
    const waited = Date.now() - started
    expect(error).toBeInstanceOf(LockConnectionError)
    expect(error.message).toContain(`no answer within ${commandTimeout} ms`)
    // Not a whole timer period later (up to twice commandTimeout) than the last answer.
    expect(waited).toBeGreaterThanOrEqual(commandTimeout * 0.9)
    expect(waited).toBeLessThan(commandTimeout + 1000)
    faulty.resume()
    expect(await held.release()).toBe(true)
    await locker.close()
  })

  test('a Redis killed with operations on the wire rejects them at once, and a restarted one serves again', async () => {
    const locker = new Locker(faulty.url, { commandTimeout: 5000 })
    await wireUp(locker, admin)
    faulty.pause()
    const pending = locker.acquire('wire:killed', { ttl: 5000 }).catch((e) => e)
    await sleep(50)
    const killed = Date.now()
    await faulty.kill('SIGKILL')
    const error = await pending
    expect(error).toBeInstanceOf(LockConnectionError)
    expect(Date.now() - killed).toBeLessThan(2000)
    await faulty.restart()
    // The admin client reconnects too; stopping it mid-reconnect would leave its timer behind.
    await admin.ping()
    const lock = await locker.acquire('wire:killed', { ttl: 5000, wait: 3000 })
    expect(await lock.release()).toBe(true)
    await locker.close()
  })

  test('close() rejects what is on the wire with LockConnectionError', async () => {
    const locker = new Locker(faulty.url)
    await wireUp(locker, admin)
    faulty.pause()
    const pending = locker.acquire('wire:closing', { ttl: 5000 }).catch((e) => e)
    await sleep(20)
    await locker.close()
    const error = await pending
    expect(error).toBeInstanceOf(LockConnectionError)
    expect(error.key).toBe('wire:closing')
  })

  test('an abort while the attempt is on the wire rejects with the reason and leaves nothing locked', async () => {
    const locker = new Locker(faulty.url)
    await wireUp(locker, admin)
    faulty.pause()
    const controller = new AbortController()
    const pending = locker.acquire('wire:abort', { ttl: 30000, signal: controller.signal }).catch((e) => e)
    await sleep(20)
    const reason = new Error('user went away')
    controller.abort(reason)
    expect(await pending).toBe(reason)
    faulty.resume()
    await eventually(async () => (await admin.exists('wire:abort')) === 0, 3000)
    await locker.close()
  })
})

/** Resolves once `check()` resolves true, polling; fails after `ms`. */
async function eventually(check, ms) {
  const giveUpAt = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > giveUpAt) throw new Error(`not true within ${ms} ms`)
    await sleep(20)
  }
}
