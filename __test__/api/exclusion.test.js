'use strict'

const { execFile } = require('node:child_process')
const path = require('node:path')
const { promisify } = require('node:util')
const { startRedis, stopAll } = require('../helpers/redis-server')
const { Locker } = require('../..')

const run = promisify(execFile)

let server
let redis

beforeAll(async () => {
  server = await startRedis()
  redis = server.client()
})

beforeEach(() => redis.flushall())
afterAll(() => stopAll())

test('200 concurrent using calls doing read-await-write end with the exact count', async () => {
  const locker = new Locker(server.url)
  let inside = 0
  let overlaps = 0
  await Promise.all(Array.from({ length: 200 }, () =>
    locker.using('counter-lock', { wait: Infinity }, async () => {
      inside += 1
      if (inside > 1) overlaps += 1
      const value = Number(await redis.get('counter'))
      await new Promise((resolve) => setImmediate(resolve))
      await redis.set('counter', value + 1)
      inside -= 1
    })))
  await locker.close()
  expect(overlaps).toBe(0)
  expect(await redis.get('counter')).toBe('200')
})

test('without a lock the same work loses updates (the test can fail)', async () => {
  await Promise.all(Array.from({ length: 50 }, async () => {
    const value = Number(await redis.get('counter'))
    await new Promise((resolve) => setImmediate(resolve))
    await redis.set('counter', value + 1)
  }))
  expect(Number(await redis.get('counter'))).toBeLessThan(50)
})

test('4 processes × 50 increments under one lock end with the exact count and no overlap', async () => {
  const worker = path.join(__dirname, '..', 'fixtures', 'counter-worker.js')
  const outputs = await Promise.all(Array.from({ length: 4 }, () =>
    run(process.execPath, [worker, server.url, '50'], { timeout: 60000 })))
  expect(await redis.get('counter')).toBe('200')
  const overlaps = outputs.map(({ stdout }) => JSON.parse(stdout).overlaps)
  expect(overlaps).toEqual([0, 0, 0, 0])
}, 90000)
