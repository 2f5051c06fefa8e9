'use strict'

// Starts throwaway redis-server processes (in the spirit of redis-rs's `redis-test`
// crate) for the jest suites and for plain Node scripts: the bench (bench/redis.js)
// and the release rehearsal. Every server binds 127.0.0.1 on a free port, keeps its
// data and log in its own temp dir, and is tracked in a registry so that `stopAll()`,
// the jest environment (environment.js) and an exit hook can clean up after it.

const { execFile, spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { setTimeout: delay } = require('node:timers/promises')
const { promisify } = require('node:util')
const Redis = require('ioredis')

const HOST = '127.0.0.1'
const READY_TIMEOUT_MS = 5000
const READY_POLL_MS = 50
const PING_PROBE_TIMEOUT_MS = 500
const STOP_GRACE_MS = 2000
const CLUSTER_READY_TIMEOUT_MS = 15000
const CLUSTER_POLL_MS = 100
const CLUSTER_CREATE_TIMEOUT_MS = 30000
// Redis Cluster's bus listens on the client port + 10000, so that port must be free too.
const CLUSTER_BUS_PORT_OFFSET = 10000
const REPLICA_READY_TIMEOUT_MS = 10000
const REPLICA_POLL_MS = 50
const MAX_PORT = 65535
const MAX_PORT_ATTEMPTS = 5
const MAX_STDERR_CHARS = 16 * 1024

const runFile = promisify(execFile)

class ServerRegistry {
  servers = new Set()

  async stopAll () {
    await Promise.all([...this.servers].map((server) => server.stop()))
  }

  // Synchronous on purpose: usable from an 'exit' handler, where nothing async runs.
  killAllNow () {
    for (const server of this.servers) {
      if (server.running) {
        try {
          process.kill(server.pid, 'SIGKILL')
        } catch {
          // Exited already; its 'close' event just has not been delivered yet.
        }
      }
      fs.rmSync(server.dir, { recursive: true, force: true })
    }
    this.servers.clear()
  }
}

// Stored on the global object so that the jest environment, which runs outside the
// test's vm context, can reach it through `this.global.__ironlockRedisServers`.
const registry = (global.__ironlockRedisServers ??= new ServerRegistry())

// Last resort for plain Node scripts. Under jest, `process` is a sandbox copy whose
// 'exit' never fires, so environment.js installs the equivalent hook on the real one.
process.once('exit', () => registry.killAllNow())

class RedisServer {
  host = HOST
  #options
  #child = null
  #exited = Promise.resolve()
  #spawnError = null
  #stderr = ''
  #logAfterStop = ''
  #clients = new Set()

  constructor (port, options) {
    this.port = port
    this.#options = options
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ironlock-redis-'))
  }

  static async start (port, options) {
    const server = new RedisServer(port, options)
    await server.#start()
    return server
  }

  get url () {
    const { password } = this.#options
    const credentials = password === undefined ? '' : `:${encodeURIComponent(password)}@`
    return `redis://${credentials}${this.host}:${this.port}`
  }

  get pid () {
    return this.#child?.pid
  }

  /** Whether this server runs as a Redis Sentinel (`--sentinel`). */
  get isSentinel () {
    return this.#options.sentinel !== undefined
  }

  // True while the process exists, paused or not.
  get running () {
    return this.#child !== null
  }

  log () {
    try {
      return fs.readFileSync(this.#logPath, 'utf8')
    } catch (error) {
      if (error.code === 'ENOENT') return this.#logAfterStop
      throw error
    }
  }

  // Graceful shutdown, then the temp dir (data, log, nodes.conf) is removed; log() keeps working.
  async stop () {
    // A client disconnected before (say, as its server was killed) is left alone: disconnecting it
    // again would start ioredis a timer on its closed socket that nothing clears for 2 s.
    for (const client of this.#clients) if (client.status !== 'end') client.disconnect()
    this.#clients.clear()
    await this.#terminate()
    this.#removeDir()
    registry.servers.delete(this)
  }

  // Unlike stop(), keeps the temp dir, so a restarted cluster node keeps its identity.
  async kill (signal = 'SIGKILL') {
    const child = this.#child
    if (!child) return
    child.kill(signal)
    if (signal === 'SIGTERM' || signal === 'SIGKILL') {
      // A paused server only acts on SIGTERM once it runs again.
      if (signal === 'SIGTERM') child.kill('SIGCONT')
      await this.#exited
    }
  }

  pause () {
    this.#child?.kill('SIGSTOP')
  }

  resume () {
    this.#child?.kill('SIGCONT')
  }

  // Same port, same config; stops the server first if it is still running.
  async restart () {
    await this.#terminate()
    await this.#start()
  }

  client () {
    const client = new Redis({
      host: this.host,
      port: this.port,
      password: this.#options.password,
      lazyConnect: false,
      maxRetriesPerRequest: 1
    })
    // Failures still reject the commands; this only stops ioredis from printing
    // "Unhandled error event" while a test has the server killed or paused.
    client.on('error', () => {})
    this.#clients.add(client)
    return client
  }

  get #logPath () {
    return path.join(this.dir, 'redis.log')
  }

  async #start () {
    fs.mkdirSync(this.dir, { recursive: true })
    const configPath = path.join(this.dir, 'redis.conf')
    fs.writeFileSync(configPath, this.#config())

    this.#spawnError = null
    const mode = this.isSentinel ? ['--sentinel'] : []
    const child = spawn('redis-server', [configPath, ...mode, ...(this.#options.args ?? [])], {
      stdio: ['ignore', 'ignore', 'pipe']
    })
    this.#child = child
    // Registered before it is ready so that cleanup covers the startup window too.
    registry.servers.add(this)
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk) => {
      this.#stderr = (this.#stderr + chunk).slice(-MAX_STDERR_CHARS)
    })
    child.on('error', (error) => {
      this.#spawnError = error
    })
    // 'close' also fires after a failed spawn, and only once stderr is drained.
    this.#exited = new Promise((resolve) => child.once('close', resolve)).then(() => {
      this.#child = null
    })

    try {
      await this.#waitUntilReady()
    } catch (error) {
      child.kill('SIGKILL')
      await this.#exited
      this.#removeDir()
      registry.servers.delete(this)
      throw error
    }
  }

  #config () {
    const { password, aclUsers = [], cluster = false, sentinel = [] } = this.#options
    const lines = [
      `port ${this.port}`,
      `bind ${HOST}`,
      'save ""',
      'appendonly no',
      // A replica (startReplica) syncs at once, not after Redis 7's default 5 s.
      'repl-diskless-sync-delay 0',
      `dir ${quoteConfigValue(this.dir)}`,
      `logfile ${quoteConfigValue(this.#logPath)}`
    ]
    if (password !== undefined) lines.push(`requirepass ${quoteConfigValue(password)}`)
    for (const { username, password: userPassword, rules } of aclUsers) {
      lines.push(`user ${username} on ${quoteConfigValue(`>${userPassword}`)} ${rules}`)
    }
    if (cluster) {
      lines.push(
        'cluster-enabled yes',
        `cluster-config-file ${quoteConfigValue(path.join(this.dir, 'nodes.conf'))}`,
        'cluster-node-timeout 2000'
      )
    }
    // A sentinel rewrites this file with what it learns (its id, the replicas, the other sentinels).
    lines.push(...sentinel)
    return `${lines.join('\n')}\n`
  }

  async #waitUntilReady () {
    const deadline = Date.now() + READY_TIMEOUT_MS
    for (;;) {
      if (!this.running) {
        const reason = this.#spawnError ? `failed to spawn (${this.#spawnError.message})` : 'exited'
        throw this.#startupError(`${reason} before answering PING`)
      }
      if (await answersPing(this.port)) return
      if (Date.now() > deadline) {
        throw this.#startupError(`did not answer PING within ${READY_TIMEOUT_MS} ms`)
      }
      await delay(READY_POLL_MS)
    }
  }

  #startupError (reason) {
    const log = this.log()
    const sections = [`redis-server on ${this.host}:${this.port} ${reason}`]
    if (this.#stderr) sections.push(`--- stderr ---\n${this.#stderr.trimEnd()}`)
    if (log) sections.push(`--- ${this.#logPath} ---\n${log.trimEnd()}`)
    const error = new Error(sections.join('\n'))
    error.addressInUse = /Address already in use/.test(log)
    return error
  }

  async #terminate () {
    const child = this.#child
    if (!child) return
    child.kill('SIGTERM')
    child.kill('SIGCONT')
    const forceKill = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS)
    await this.#exited
    clearTimeout(forceKill)
  }

  #removeDir () {
    if (!fs.existsSync(this.dir)) return
    this.#logAfterStop = this.log()
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}

// Redis config files accept double-quoted strings with backslash escapes.
function quoteConfigValue (value) {
  return `"${String(value).replace(/[\\"]/g, '\\$&')}"`
}

// Resolves true once the server replies to PING; NOAUTH also proves it is serving.
function answersPing (port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: HOST, port })
    let reply = ''
    const finish = (ready) => {
      socket.destroy()
      resolve(ready)
    }
    socket.setTimeout(PING_PROBE_TIMEOUT_MS, () => finish(false))
    socket.on('error', () => finish(false))
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'))
    })
  })
}

// Binds `port` (0 = any) and releases it; resolves the bound port, or null if taken.
function probePort (port) {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', (error) => (error.code === 'EADDRINUSE' ? resolve(null) : reject(error)))
    server.listen({ host: HOST, port, exclusive: true }, () => {
      const boundPort = server.address().port
      server.close(() => resolve(boundPort))
    })
  })
}

async function findFreePort ({ withClusterBus }) {
  for (;;) {
    const port = await probePort(0)
    if (!withClusterBus) return port
    const busPort = port + CLUSTER_BUS_PORT_OFFSET
    if (busPort <= MAX_PORT && (await probePort(busPort)) !== null) return port
  }
}

/**
 * Starts a redis-server and resolves once it answers PING.
 * @param {object} [options]
 * @param {string[]} [options.args] extra redis-server arguments, e.g. ['--maxmemory', '10mb']
 * @param {string} [options.password] requirepass for the default user
 * @param {{username: string, password: string, rules: string}[]} [options.aclUsers]
 * @param {number} [options.port] fixed port instead of a free one
 * @param {boolean} [options.cluster] enable cluster mode (nodes.conf kept in the server's dir)
 * @param {string[]} [options.sentinel] run as a Redis Sentinel (`--sentinel`) with these lines
 *   (`sentinel monitor …`) in its config file; a restart writes them afresh, forgetting what it learnt
 * @returns {Promise<RedisServer>}
 */
async function startRedis (options = {}) {
  if (options.port !== undefined) return RedisServer.start(options.port, options)
  // A free port can be taken by someone else before redis-server binds it; retry then.
  for (let attempt = 1; ; attempt++) {
    const port = await findFreePort({ withClusterBus: Boolean(options.cluster) })
    try {
      return await RedisServer.start(port, options)
    } catch (error) {
      if (!error.addressInUse || attempt === MAX_PORT_ATTEMPTS) throw error
    }
  }
}

/** Starts `count` independent masters, e.g. for Redlock. */
function startRedisSet (count, options = {}) {
  return Promise.all(Array.from({ length: count }, () => startRedis(options)))
}

/**
 * Starts a replica of `master` (`--replicaof`) and resolves once a write on the master reached it
 * (WAIT): from then on WAIT counts it at once. Its `master_link_status:up`, and even
 * `state=online` on the master, come earlier: Redis 7 streams writes to a new replica only after
 * its first acknowledgement, which it sends once a second.
 * @param {RedisServer} master
 * @param {object} [options] as for startRedis
 * @returns {Promise<RedisServer>}
 */
async function startReplica (master, options = {}) {
  const args = [...(options.args ?? []), '--replicaof', master.host, String(master.port)]
  const replica = await startRedis({ ...options, args })
  try {
    await waitUntilStreaming(master, replica)
  } catch (error) {
    await replica.stop()
    throw error
  }
  return replica
}

async function waitUntilStreaming (master, replica) {
  // Not the master's client(): a test may kill the master, and stop() disconnecting a client of a
  // killed server leaves ioredis a timer that jest reports as an open handle.
  const client = new Redis(master.url, { maxRetriesPerRequest: 1 })
  client.on('error', () => {})
  const online = `port=${replica.port},state=online`
  const deadline = Date.now() + REPLICA_READY_TIMEOUT_MS
  try {
    for (;;) {
      const info = await client.info('replication').catch((error) => error.message)
      if (info.includes(online) && (await writeReachesAReplica(client))) return
      if (Date.now() > deadline) {
        throw new Error(`replica ${replica.host}:${replica.port} not fed by its master after ` +
          `${REPLICA_READY_TIMEOUT_MS} ms:\n${info}\n--- the replica's log ---\n${replica.log()}`)
      }
      await delay(REPLICA_POLL_MS)
    }
  } finally {
    client.disconnect()
  }
}

/** Whether a write (set, then deleted) on `client`'s connection reaches a replica within a second. */
async function writeReachesAReplica (client) {
  const probe = 'ironlock-test:replica-probe'
  await client.set(probe, '1')
  await client.del(probe)
  return (await client.wait(1, 1000)) >= 1
}

/** Starts `masters` cluster nodes, assigns all slots and waits for cluster_state:ok. */
async function startCluster ({ masters = 3 } = {}) {
  const nodes = await startRedisSet(masters, { cluster: true })
  const stop = () => Promise.all(nodes.map((node) => node.stop())).then(() => {})
  try {
    await createCluster(nodes)
    await Promise.all(nodes.map(waitForClusterOk))
  } catch (error) {
    await stop()
    throw error
  }
  return { nodes, seeds: nodes.map(({ host, port }) => ({ host, port })), stop }
}

async function createCluster (nodes) {
  const addresses = nodes.map(({ host, port }) => `${host}:${port}`)
  const args = ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes']
  try {
    await runFile('redis-cli', args, { timeout: CLUSTER_CREATE_TIMEOUT_MS })
  } catch (error) {
    // The message already carries redis-cli's stderr; its report is on stdout.
    throw new Error(`redis-cli --cluster create failed: ${error.message}\n${error.stdout ?? ''}`)
  }
}

async function waitForClusterOk (node) {
  const client = node.client()
  const deadline = Date.now() + CLUSTER_READY_TIMEOUT_MS
  let info = ''
  try {
    for (;;) {
      info = await client.cluster('INFO').catch((error) => error.message)
      if (info.includes('cluster_state:ok')) return
      if (Date.now() > deadline) {
        throw new Error(
          `cluster node ${node.host}:${node.port} not ok after ${CLUSTER_READY_TIMEOUT_MS} ms:\n${info}`
        )
      }
      await delay(CLUSTER_POLL_MS)
    }
  } finally {
    client.disconnect()
  }
}

/** Stops every server started by this test file that is still registered. */
function stopAll () {
  return registry.stopAll()
}

/** A loopback port nothing listened on a moment ago (for a server of a test's own, or none). */
function freePort () {
  return probePort(0)
}

module.exports = { startRedis, startRedisSet, startReplica, startCluster, stopAll, freePort }
