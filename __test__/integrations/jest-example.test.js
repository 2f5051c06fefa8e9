'use strict'

// examples/jest is what users copy: its suite must pass and exit cleanly under --detectOpenHandles,
// with the Redis integration tests running (REDIS_URL set) next to the memory:// unit tests.

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

test('npx jest on examples/jest passes, runs every test, and exits with no open handles', async () => {
  const env = { ...process.env, REDIS_URL: server.url }
  delete env.JEST_WORKER_ID // this worker's id; the child jest numbers its own
  const { code, output } = await new Promise((resolve) => {
    execFile('npx', ['jest', '--config', 'examples/jest/jest.config.js', '--detectOpenHandles', '--ci'],
      { cwd: ROOT, env, timeout: RUN_TIMEOUT_MS }, (error, stdout, stderr) => {
        resolve({ code: error ? error.code ?? error.signal : 0, output: `${stdout}\n${stderr}` })
      })
  })

  if (code !== 0) throw new Error(`the examples/jest suite exited with ${code}:\n${output}`)
  expect(output).not.toMatch(/did not exit|open handle/i)
  expect(output).not.toMatch(/skipped/i) // REDIS_URL is set: the integration tests run too
  const passed = Number(/^Tests:.*?(\d+) passed/m.exec(output)?.[1] ?? 0)
  expect(passed).toBeGreaterThan(0)
}, RUN_TIMEOUT_MS + 10000)
