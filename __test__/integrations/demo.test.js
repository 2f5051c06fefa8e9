'use strict'

const { execFile } = require('node:child_process')
const net = require('node:net')
const path = require('node:path')
const { startRedis, stopAll } = require('../helpers/redis-server')

const CLI = path.join(__dirname, '..', '..', 'lib', 'cli.js')
const DEMO_TIMEOUT_MS = 60000

/** Runs the CLI; resolves its exit code and output whatever the code. */
function cli(args, { nodeArgs = [] } = {}) {
  return new Promise((resolve) => {
    execFile(process.execPath, [...nodeArgs, CLI, ...args], { timeout: DEMO_TIMEOUT_MS }, (error, stdout, stderr) => {
      resolve({ code: error ? error.code : 0, stdout, stderr })
    })
  })
}

/** The sold and oversold columns of the row that starts with `label`. */
function row(output, label) {
  const line = output.split('\n').find((each) => each.startsWith(label))
  if (line === undefined) throw new Error(`no "${label}" row in:\n${output}`)
  const [sold, oversold] = line.slice(label.length).trim().split(/\s+/).map(Number)
  return { sold, oversold }
}

function expectTheStory(stdout) {
  expect(row(stdout, 'ironlock using()')).toEqual({ sold: 10, oversold: 0 })
  expect(row(stdout, 'no lock').oversold).toBeGreaterThan(0)
  // The slow holder outlives the 1 s TTL by design, so the fixed-value lock lets orders overlap.
  expect(row(stdout, 'SET NX EX 1 + DEL').oversold).toBeGreaterThan(0)
  expect(stdout).toMatch(/wall time\s+Redis commands/)
}

let server
let redis

beforeAll(async () => {
  server = await startRedis()
  redis = server.client()
})

afterAll(() => stopAll())

test('demo --redis: ironlock sells exactly 10, without a lock it oversells; no demo keys are left', async () => {
  const { code, stdout, stderr } = await cli(['demo', '--redis', server.url])
  expect({ code, stderr }).toEqual({ code: 0, stderr: '' })
  expectTheStory(stdout)
  // Not even ironlock's fencing counter.
  expect(await redis.keys('*')).toEqual([])
}, DEMO_TIMEOUT_MS)

test('demo on memory:// (the default, nothing installed): ironlock sells exactly 10, without a lock it oversells', async () => {
  const { code, stdout, stderr } = await cli(['demo'])
  expect({ code, stderr }).toEqual({ code: 0, stderr: '' })
  expectTheStory(stdout)
  expect(stdout).toMatch(/counted as 2 operations per order/)
}, DEMO_TIMEOUT_MS)

test('--help prints the usage and --version the version, both exiting with 0', async () => {
  for (const flag of ['--help', '-h']) {
    const help = await cli([flag])
    expect({ flag, code: help.code, stderr: help.stderr }).toEqual({ flag, code: 0, stderr: '' })
    expect(help.stdout).toMatch(/^Usage: ironlock <command>/)
  }
  for (const flag of ['--version', '-v']) {
    const version = await cli([flag])
    expect({ flag, code: version.code, stdout: version.stdout }).toEqual({ flag, code: 0, stdout: `${require('../../package.json').version}\n` })
  }
})

test('no command, unknown commands and bad options print the usage and exit with 2', async () => {
  for (const args of [[], ['frobnicate'], ['demo', '--frobnicate'], ['demo', '--redis'], ['demo', 'extra']]) {
    const { code, stderr } = await cli(args)
    expect({ args, code }).toEqual({ args, code: 2 })
    expect(stderr).toMatch(/Usage: ironlock <command>/)
  }
})

test('demo --redis says what to install when ioredis is missing', async () => {
  const hideIoredis = path.join(__dirname, '..', 'fixtures', 'hide-ioredis.js')
  const { code, stderr } = await cli(['demo', '--redis', server.url], { nodeArgs: ['-r', hideIoredis] })
  expect(code).toBe(1)
  expect(stderr).toMatch(/npm install ioredis/)
})

test('demo --redis fails with a clear message, and no password, when Redis is unreachable', async () => {
  const port = await new Promise((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address()
      probe.close(() => resolve(free))
    })
  })
  const { code, stderr } = await cli(['demo', '--redis', `redis://:hunter2@127.0.0.1:${port}`])
  expect(code).toBe(1)
  expect(stderr).toMatch(new RegExp(`could not connect to redis://:\\*\\*\\*@127\\.0\\.0\\.1:${port}`))
  expect(stderr).not.toMatch(/hunter2/)
})
