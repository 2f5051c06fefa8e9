'use strict'

// "An idle locker never keeps Node alive" (README, Testing with jest), and it holds nothing that
// jest's --detectOpenHandles reports either: not even for a test file that never calls close().

const { execFile } = require('node:child_process')
const path = require('node:path')
const { startRedis, stopAll } = require('../helpers/redis-server')

const ROOT = path.join(__dirname, '..', '..')
const RUN_TIMEOUT_MS = 60000

let server

beforeAll(async () => {
  server = await startRedis()
})

afterAll(() => stopAll())

test('jest --detectOpenHandles on a file whose lockers are never closed reports no open handle', async () => {
  const config = {
    rootDir: path.join(__dirname, '..', 'fixtures'),
    testMatch: ['<rootDir>/forgets-close.jest.js'],
    testEnvironment: 'node',
  }
  const env = { ...process.env, REDIS_URL: server.url }
  delete env.JEST_WORKER_ID // this worker's id; the child jest numbers its own
  const { code, output } = await new Promise((resolve) => {
    execFile(process.execPath, [require.resolve('jest/bin/jest'), '--config', JSON.stringify(config), '--detectOpenHandles', '--ci'],
      { cwd: ROOT, env, timeout: RUN_TIMEOUT_MS }, (error, stdout, stderr) => {
        resolve({ code: error ? error.code ?? error.signal : 0, output: `${stdout}\n${stderr}` })
      })
  })

  if (code !== 0) throw new Error(`the child jest exited with ${code}:\n${output}`)
  expect(output).toMatch(/^Tests:\s+3 passed, 3 total/m)
  expect(output).not.toMatch(/open handle|did not exit|napi_rs_threadsafe_function/i)
}, RUN_TIMEOUT_MS + 10000)
