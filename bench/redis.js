'use strict'

// Throwaway redis-server processes for the bench: started on free loopback
// ports, never persisted, killed on exit. The developer's Redis on 6379 is
// never touched.

const { spawn } = require('node:child_process')
const net = require('node:net')
const Redis = require('ioredis')

const REDIS_SERVER = '/usr/bin/redis-server'
const RESERVED_PORT = 6379
const STARTUP_TIMEOUT_MS = 5000

const running = new Set()

function freePort () {
  return new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
  })
}

function waitForReady (child, port) {
  return new Promise((resolve, reject) => {
    let output = ''
    const timer = setTimeout(() => fail(new Error(`redis-server on ${port} did not start:\n${output}`)), STARTUP_TIMEOUT_MS)
    const onData = (chunk) => {
      output += chunk
      if (output.includes('Ready to accept connections')) finish()
    }
    const onExit = (code) => fail(new Error(`redis-server on ${port} exited with ${code}:\n${output}`))
    function cleanup () {
      clearTimeout(timer)
      child.stdout.off('data', onData)
      child.off('exit', onExit)
    }
    function finish () { cleanup(); resolve() }
    function fail (err) { cleanup(); reject(err) }
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', onData)
    child.once('exit', onExit)
  })
}

class RedisServer {
  constructor (child, port) {
    this.child = child
    this.port = port
    this.url = `redis://127.0.0.1:${port}`
    this.admin = new Redis(this.url, { lazyConnect: true })
  }

  async version () {
    const info = await this.admin.info('server')
    return /redis_version:(\S+)/.exec(info)[1]
  }

  async reset () {
    await this.admin.flushall()
    await this.resetStats()
  }

  resetStats () {
    return this.admin.config('RESETSTAT')
  }

  // Calls per command since the last reset, e.g. { set: 12, evalsha: 10 }.
  // The CONFIG RESETSTAT that opened the window is the bench's own and is left out.
  async commandCalls () {
    const info = await this.admin.info('commandstats')
    const calls = {}
    for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
      if (match[1] !== 'config|resetstat') calls[match[1]] = Number(match[2])
    }
    return calls
  }

  // CPU seconds (user + system) the server has used since it started.
  async cpuSeconds () {
    const info = await this.admin.info('cpu')
    const seconds = (field) => Number(new RegExp(`^${field}:([\\d.]+)`, 'm').exec(info)[1])
    return seconds('used_cpu_user') + seconds('used_cpu_sys')
  }

  async stop () {
    this.admin.disconnect()
    if (this.child.exitCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve))
      this.child.kill('SIGTERM')
      await exited
    }
    running.delete(this)
  }
}

async function startRedis () {
  let port = await freePort()
  while (port === RESERVED_PORT) port = await freePort()
  const child = spawn(REDIS_SERVER, [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', 'no',
    '--loglevel', 'notice'
  ], { stdio: ['ignore', 'pipe', 'inherit'] })
  await waitForReady(child, port)
  child.stdout.resume() // keep draining the log so the server never blocks on it
  const server = new RedisServer(child, port)
  running.add(server)
  await server.admin.connect()
  return server
}

async function startRedisServers (count) {
  return Promise.all(Array.from({ length: count }, startRedis))
}

// Last resort if the bench dies: kill only the servers this process started.
process.on('exit', () => {
  for (const server of running) server.child.kill('SIGKILL')
})

module.exports = { startRedisServers }
