'use strict'

// redlock 4's Lock objects are plain data: `resource` can be reassigned, `Object.create(lock)`
// copies act as the lock, and a Lock built from stored values
// (`new Lock(redlock, resource, value, expiration, attempts)`, or redlock 5's
// `new Lock(redlock, resources, value, attempts, expiration)`) can be unlocked and extended, by
// another Redlock or process too. Release and extension compare the value: a lock someone else
// holds is never deleted or extended.

const { startRedisSet, stopAll } = require('../../../helpers/redis-server')
const { settled } = require('./clients')
const Redlock = require('ironlock/redlock')
const { Locker } = require('../../../..')
const { Lock, LockError, ExecutionError } = Redlock

const opened = []
afterAll(async () => {
  for (const close of opened) await close()
  await stopAll()
})

describe.each([1, 3])('on %i server(s)', (count) => {
  let clients
  let redlock
  let other // another Redlock on the same servers: another process, as far as the locks go

  beforeAll(async () => {
    clients = (await startRedisSet(count)).map((server) => server.client())
    redlock = new Redlock(clients, { retryCount: 0 })
    other = new Redlock(clients, { retryCount: 0 })
    opened.push(() => redlock.locker.close(), () => other.locker.close())
  })

  beforeEach(() => Promise.all(clients.map((client) => client.flushall())))

  /** Every node's value of `key`, once they all hold `value` (see `settled`). */
  const valuesOf = (key, value) => settled(() => Promise.all(clients.map((client) => client.get(key))), clients.map(() => value))
  const ttlsOf = (key) => Promise.all(clients.map((client) => client.pttl(key)))

  test('lock.resource is data, and an Object.create copy unlocks the lock', async () => {
    const lock = await redlock.lock('k', 5000)
    expect(Object.getOwnPropertyDescriptor(lock, 'resource')).toMatchObject({ value: ['k'], writable: true })
    const copy = Object.create(lock)
    expect(copy).toBeInstanceOf(Lock)
    await copy.unlock()
    expect(await valuesOf('k', null)).toEqual(clients.map(() => null))
  })

  test('a copy pointed at a key holding another type fails to unlock, with the server\'s error', async () => {
    await Promise.all(clients.map((client) => client.sadd('a-set', 'member')))
    const lock = await redlock.lock('k', 5000)
    const copy = Object.create(lock)
    copy.resource = 'a-set'
    const clientErrors = []
    redlock.on('clientError', (error) => clientErrors.push(error))
    await expect(copy.unlock()).rejects.toThrow(LockError)
    redlock.removeAllListeners('clientError')
    expect(clientErrors).toHaveLength(count)
    for (const error of clientErrors) expect(error.message).toMatch(/WRONGTYPE/)
    expect(await valuesOf('k', lock.value)).toEqual(clients.map(() => lock.value)) // the real lock is untouched
    await lock.unlock()
  })

  test('v4: a Lock rebuilt from stored values extends and unlocks from another Redlock', async () => {
    const held = await redlock.lock('k', 3000)
    await valuesOf('k', held.value) // on every node, so that every node's TTL can be checked
    const stored = JSON.parse(JSON.stringify({ resource: 'k', value: held.value, expiration: held.expiration }))
    const rebuilt = new Lock(other, stored.resource, stored.value, stored.expiration, 1)
    expect(await rebuilt.extend(20000)).toBe(rebuilt)
    for (const ttl of await ttlsOf('k')) expect(ttl).toBeGreaterThan(10000)
    await rebuilt.unlock()
    expect(await valuesOf('k', null)).toEqual(clients.map(() => null))
  })

  test('v5: a Lock rebuilt from stored values extends and releases', async () => {
    const held = await redlock.acquire(['k'], 3000)
    await valuesOf('k', held.value)
    const rebuilt = new Lock(other, ['k'], held.value, [], Date.now() + 3000)
    const extended = await rebuilt.extend(20000)
    for (const ttl of await ttlsOf('k')) expect(ttl).toBeGreaterThan(10000)
    const { attempts } = await extended.release()
    expect(attempts).toHaveLength(1)
    expect(await valuesOf('k', null)).toEqual(clients.map(() => null))
  })

  test('a rebuilt lock whose value no longer holds the resource never touches the new holder\'s lock', async () => {
    const newHolder = await redlock.lock('k', 5000)
    const stale = new Lock(other, 'k', 'an-old-value', Date.now() + 5000, 1)
    await expect(stale.extend(20000)).rejects.toThrow(LockError)
    await expect(stale.unlock()).rejects.toThrow(LockError)
    const staleV5 = new Lock(other, ['k'], 'an-old-value', [], Date.now() + 5000)
    await expect(staleV5.release()).rejects.toThrow(ExecutionError)
    expect(await valuesOf('k', newHolder.value)).toEqual(clients.map(() => newHolder.value))
    for (const ttl of await ttlsOf('k')) expect(ttl).toBeLessThanOrEqual(5000)
    await newHolder.unlock()
  })

  test('releasing a rebuilt ironlock lock wakes an ironlock waiter at once, not at the TTL', async () => {
    const locker = new Locker(clients.map(({ options: { host, port } }) => ({ host, port })))
    opened.push(() => locker.close())
    const held = await redlock.acquire(['k'], 20000)
    const waiting = locker.acquire('k', { wait: 15000 })
    await new Promise((resolve) => setTimeout(resolve, 200))
    const started = Date.now()
    await new Lock(other, ['k'], held.value, [], held.expiration).release()
    const lock = await waiting
    expect(Date.now() - started).toBeLessThan(5000)
    await lock.release()
  })
})
