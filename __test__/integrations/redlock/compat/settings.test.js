'use strict'

// What a Redlock shows of its settings and internals, as redlock 4 and @sesamecare-oss/redlock
// have them: `settings.db` (0 by default), redlock 4's `_lock`, construction from a jest
// auto-mock of ioredis (as unit tests of code using redlock do), a Cluster client (a Redis Cluster
// target; several are refused), and a warning that redlock 4's script options are not run.

const IORedis = require('ioredis')
const { startRedis, stopAll } = require('../../../helpers/redis-server')
const Redlock = require('ironlock/redlock')

let server
let client
const opened = []
function shim(clients, settings) {
  const redlock = new Redlock(clients, settings)
  opened.push(redlock)
  return redlock
}

beforeAll(async () => {
  server = await startRedis()
  client = server.client()
})

afterAll(async () => {
  for (const redlock of opened) await redlock.locker.close()
  await stopAll()
})

beforeEach(() => client.flushall())

test('settings.db is 0 by default; a db from 0 to 15 is kept, anything else ignored', () => {
  expect(shim([client]).settings.db).toBe(0)
  expect(shim([client], { db: 7 }).settings.db).toBe(7)
  for (const db of [16, -1, 1.5, '3']) expect(shim([client], { db }).settings.db).toBe(0)
})

test('the locks go to the db setting when given, else to each client\'s own database', async () => {
  const inDb3 = new IORedis({ host: server.host, port: server.port, db: 3, lazyConnect: true })
  const lock = await shim([inDb3]).acquire(['k'], 5000)
  const atDb5 = await shim([inDb3], { db: 5 }).acquire(['k'], 5000)
  const dbs = {}
  for (const db of [0, 3, 5]) {
    await client.select(db)
    dbs[db] = await client.get('k')
  }
  await client.select(0)
  expect(dbs).toEqual({ 0: null, 3: lock.value, 5: atDb5.value })
})

test('redlock 4\'s _lock: null locks, a value extends the lock that value holds', async () => {
  const redlock = shim([client], { retryCount: 3 })
  const lock = await redlock._lock('k', null, 2000)
  expect(lock).toMatchObject({ resource: ['k'], attempts: 1, attemptsRemaining: 2 })
  const viaCallback = await new Promise((resolve, reject) =>
    redlock._lock('k', lock.value, 20000, (error, extended) => (error ? reject(error) : resolve(extended))))
  expect(viaCallback.value).toBe(lock.value)
  expect(await client.pttl('k')).toBeGreaterThan(10000)
  await lock.unlock()
})

test('a jest auto-mock of an ioredis client is taken as a client, not a Cluster', () => {
  const MockedRedis = jest.createMockFromModule('ioredis')
  const mocked = new MockedRedis()
  expect(typeof mocked.cluster).toBe('function')
  expect(mocked.options).toBeUndefined()
  const redlock = shim([mocked], { db: 2 })
  expect(redlock.settings).toMatchObject({ db: 2, retryCount: 10 })
})

test('one Cluster client is a Redis Cluster target; several are refused with a clear error', () => {
  const cluster = () => new IORedis.Cluster([{ host: server.host, port: server.port }], { lazyConnect: true })
  expect(shim([cluster()]).locker).toBeDefined()
  expect(() => new Redlock([cluster(), cluster()])).toThrow(expect.objectContaining({
    code: 'ERR_INVALID_ARG_VALUE',
    message: expect.stringContaining('clients[0]\' is a Redis Cluster client'),
  }))
})

test('several Sentinel clients are refused with a clear error: no Redlock over Sentinel setups', () => {
  const sentinelClient = () => new IORedis({ sentinels: [{ host: server.host, port: 1 }], name: 'mymaster', lazyConnect: true })
  expect(() => new Redlock([sentinelClient(), sentinelClient()])).toThrow(expect.objectContaining({
    code: 'ERR_INVALID_ARG_VALUE',
    message: expect.stringContaining('clients[0]\' is a Redis Sentinel client'),
  }))
})

test('lockScript / unlockScript / extendScript: not run, and a warning says so once', async () => {
  const warning = jest.spyOn(process, 'emitWarning').mockImplementation(() => {})
  const custom = { lockScript: (script) => `${script} broken`, unlockScript: (script) => script, extendScript: (script) => script }
  const redlock = shim([client], custom)
  shim([client], custom)
  expect(warning).toHaveBeenCalledTimes(1)
  expect(warning.mock.calls[0][0]).toMatch(/lockScript/)
  warning.mockRestore()
  const lock = await redlock.acquire(['k'], 5000)
  expect(await client.get('k')).toBe(lock.value)
  await lock.release()
})
