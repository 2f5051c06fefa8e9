'use strict'

// redlock 4 returned bluebird promises: code written for it calls `.done`, `.nodeify` /
// `.asCallback` and `.disposer` on what lock(), unlock(), extend() and quit() return, and reads
// the clients' replies from quit(). bluebird stays optional: only a disposer needs it.

const { execFile } = require('node:child_process')
const path = require('node:path')
const { promisify } = require('node:util')
const Bluebird = require('bluebird')
const { startRedis, stopAll } = require('../../../helpers/redis-server')
const { makeClient, closeAll } = require('./clients')
const Redlock = require('ironlock/redlock')
const { LockError } = Redlock

let server
let client
let redlock

beforeAll(async () => {
  server = await startRedis()
  client = server.client()
  redlock = new Redlock([client], { retryCount: 0 })
})

afterAll(async () => {
  await redlock.locker.close()
  await closeAll()
  await stopAll()
})

beforeEach(() => client.flushall())

const settled = (promise) => new Promise((resolve) => promise.done((value) => resolve(['resolved', value]), (error) => resolve(['rejected', error])))

test('lock, extend and unlock answer .done, also down a .then chain', async () => {
  const locking = redlock.lock('k', 5000)
  const [outcome, lock] = await settled(locking)
  expect(outcome).toBe('resolved')
  expect(locking.done()).toBeUndefined() // done ends the chain
  const chained = redlock.lock('k', 5000).then((never) => never)
  expect(await settled(chained)).toEqual(['rejected', expect.any(LockError)])
  expect(await settled(lock.extend(8000))).toEqual(['resolved', lock])
  expect(await settled(lock.unlock())).toEqual(['resolved', undefined])
  expect(await client.exists('k')).toBe(0)
})

test('nodeify and asCallback call back Node-style and return the same promise', async () => {
  const viaNodeify = await new Promise((resolve) => redlock.lock('a', 5000).nodeify((...args) => resolve(args)))
  expect(viaNodeify).toEqual([null, expect.any(Redlock.Lock)])
  const busy = await new Promise((resolve) => redlock.lock('a', 5000).asCallback((...args) => resolve(args)))
  expect(busy).toEqual([expect.any(LockError)])
  const unlocking = viaNodeify[1].unlock()
  expect(unlocking.asCallback(() => {})).toBe(unlocking)
  await unlocking
})

test('a disposer for bluebird\'s Promise.using locks and then unlocks', async () => {
  const seen = await Bluebird.using(redlock.lock('d', 5000).disposer((lock) => lock.unlock()), async (lock) => (await client.get('d')) === lock.value)
  expect(seen).toBe(true)
  expect(await client.exists('d')).toBe(0)
})

test('quit() resolves the clients\' replies, as redlock 4 does, and has .done too', async () => {
  const own = new Redlock([await makeClient('ioredis 5', server).then((made) => made.raw)])
  expect(await settled(own.quit())).toEqual(['resolved', ['OK']])
})

test('bluebird is not loaded by requiring the module or locking', async () => {
  const script = `
    const Redlock = require('ironlock/redlock')
    const redlock = new Redlock([{ options: { host: '127.0.0.1', port: ${server.port} } }], { retryCount: 0 })
    redlock.lock('b', 1000).done(async (lock) => {
      await lock.unlock()
      await redlock.locker.close()
      console.log(Object.keys(require.cache).some((file) => file.includes(\`\${require('path').sep}bluebird\${require('path').sep}\`)))
    })`
  const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], { cwd: path.join(__dirname, '..', '..', '..', '..') })
  expect(stdout.trim()).toBe('false')
})
