'use strict'

// `redlock` users build their Redlock from ioredis 4 or 5 or node-redis 3 or 4 clients. With each,
// on one server and on three: the locks go to the clients' servers and databases, both APIs lock
// and release, a lock rebuilt from stored values is released through those clients (only while
// its value holds), and quit() quits them.

const { startRedisSet, stopAll } = require('../../../helpers/redis-server')
const { makeClient, closeAll, settled, CLIENT_KINDS } = require('./clients')
const Redlock = require('ironlock/redlock')
const { Lock, LockError } = Redlock

const opened = []
afterAll(async () => {
  for (const redlock of opened) await redlock.locker.close()
  await closeAll()
  await stopAll()
})

describe.each(CLIENT_KINDS.flatMap((kind) => [[kind, 1], [kind, 3]]))('%s clients, %i server(s)', (kind, count) => {
  let clients // what the user hands to Redlock, each in its own database
  let views // the same servers and databases, to look at what was written
  let redlock

  beforeAll(async () => {
    const servers = await startRedisSet(count)
    const made = await Promise.all(servers.map((server, index) => makeClient(kind, server, { db: index + 1 })))
    clients = made.map((client) => client.raw)
    views = made
    redlock = new Redlock(clients, { retryCount: 2, retryDelay: 50, retryJitter: 10 })
    opened.push(redlock)
  })

  /** Every node's value of `key`, once they all hold `value` (see `settled`). */
  const valuesOf = (key, value) => settled(() => Promise.all(views.map((view) => view.get(key))), views.map(() => value))

  test('v4 and v5 locks land in each client\'s server and database, and are released', async () => {
    const v4 = await redlock.lock(`${kind}:v4`, 5000)
    const v5 = await redlock.acquire([`${kind}:v5`], 5000)
    expect(await valuesOf(`${kind}:v4`, v4.value)).toEqual(views.map(() => v4.value))
    expect(await valuesOf(`${kind}:v5`, v5.value)).toEqual(views.map(() => v5.value))
    await expect(redlock.acquire([`${kind}:v5`], 1000)).rejects.toThrow(LockError)
    await v4.unlock()
    await v5.release()
    expect(await valuesOf(`${kind}:v4`, null)).toEqual(views.map(() => null))
    expect(await valuesOf(`${kind}:v5`, null)).toEqual(views.map(() => null))
  })

  test('a lock rebuilt from stored values is released through the clients, only while its value holds', async () => {
    const key = `${kind}:stored`
    const held = await redlock.lock(key, 5000)
    await expect(new Lock(redlock, key, 'not-the-value', Date.now() + 5000, 1).unlock()).rejects.toThrow(LockError)
    expect(await valuesOf(key, held.value)).toEqual(views.map(() => held.value))
    await new Lock(redlock, key, held.value, Date.now() + 5000, 1).unlock()
    expect(await valuesOf(key, null)).toEqual(views.map(() => null))
  })

  test('a key holding another type: clientError from each server on every attempt', async () => {
    const key = `${kind}:set`
    await Promise.all(views.map((view) => view.sadd(key, 'member')))
    const clientErrors = []
    redlock.on('clientError', (error) => clientErrors.push(error))
    await expect(redlock.lock(key, 1000)).rejects.toMatchObject({ attempts: 3 })
    redlock.removeAllListeners('clientError')
    expect(clientErrors).toHaveLength(3 * count)
  })
})

test.each(CLIENT_KINDS)('quit() quits %s clients and resolves their replies', async (kind) => {
  const [server] = await startRedisSet(1)
  const made = await makeClient(kind, server)
  const redlock = new Redlock([made.raw])
  await (await redlock.acquire(['k'], 1000)).release()
  const replies = await redlock.quit()
  expect(replies).toHaveLength(1)
  await expect(made.get('k')).rejects.toThrow()
  await server.stop()
})
