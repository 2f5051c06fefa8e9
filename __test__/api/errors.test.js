'use strict'

const { inspect } = require('node:util')
const { startRedis, stopAll } = require('../helpers/redis-server')
const {
  Locker, LockError, LockBusyError, LockLostError, QuorumError, LockConnectionError,
} = require('../..')

let server
let locker

beforeAll(async () => {
  server = await startRedis()
  locker = new Locker(server.url)
})

afterAll(async () => {
  await locker.close()
  await stopAll()
})

describe('error classes', () => {
  test('every lock error is a LockError and an Error', () => {
    for (const ErrorClass of [LockBusyError, LockLostError, QuorumError, LockConnectionError]) {
      const error = new ErrorClass('message', { key: 'k', votes: {}, retryAfter: 1, cause: new Error('x') })
      expect(error).toBeInstanceOf(LockError)
      expect(error).toBeInstanceOf(Error)
      expect(error.name).toBe(ErrorClass.name)
      expect(error.key).toBe('k')
    }
  })
})

describe('an internal error (a bug in ironlock) is its own kind', () => {
  test('a native EINTERNAL failure becomes a LockError with code EINTERNAL, not a connection error', () => {
    const { fromNative } = require('../../lib/errors')
    const message = 'internal error while releasing "k": … This is a bug in ironlock'
    const error = fromNative({ code: 'EINTERNAL', key: 'k', message })
    expect(error).toBeInstanceOf(LockError)
    expect(error).not.toBeInstanceOf(LockConnectionError)
    expect(error).toMatchObject({ name: 'LockError', code: 'EINTERNAL', key: 'k', message })
  })
})

describe('bad arguments are rejected with Node-style errors naming the argument', () => {
  const cases = [
    ['empty key', () => locker.acquire(''), RangeError, 'ERR_INVALID_ARG_VALUE', '"key"|\'key\''],
    ['non-string key', () => locker.acquire(42), TypeError, 'ERR_INVALID_ARG_TYPE', 'key'],
    ['empty key array', () => locker.acquire([]), RangeError, 'ERR_INVALID_ARG_VALUE', 'key'],
    ['non-string in key array', () => locker.acquire(['a', 1]), TypeError, 'ERR_INVALID_ARG_TYPE', 'key\\[1\\]'],
    ['ttl 0', () => locker.acquire('k', { ttl: 0 }), RangeError, 'ERR_OUT_OF_RANGE', 'options.ttl'],
    ['negative ttl', () => locker.acquire('k', { ttl: -5 }), RangeError, 'ERR_OUT_OF_RANGE', 'options.ttl'],
    ['NaN ttl', () => locker.acquire('k', { ttl: NaN }), RangeError, 'ERR_OUT_OF_RANGE', 'options.ttl'],
    ['Infinity ttl', () => locker.acquire('k', { ttl: Infinity }), RangeError, 'ERR_OUT_OF_RANGE', 'options.ttl'],
    ['string ttl', () => locker.acquire('k', { ttl: '100' }), TypeError, 'ERR_INVALID_ARG_TYPE', 'options.ttl'],
    ['negative wait', () => locker.acquire('k', { wait: -1 }), RangeError, 'ERR_OUT_OF_RANGE', 'options.wait'],
    ['NaN wait', () => locker.acquire('k', { wait: NaN }), RangeError, 'ERR_OUT_OF_RANGE', 'options.wait'],
    ['bad signal', () => locker.acquire('k', { signal: {} }), TypeError, 'ERR_INVALID_ARG_TYPE', 'options.signal'],
    ['non-object options', () => locker.acquire('k', 5), TypeError, 'ERR_INVALID_ARG_TYPE', 'options'],
    ['non-function fn', () => locker.using('k', {}, 'nope'), TypeError, 'ERR_INVALID_ARG_TYPE', 'fn'],
    ['missing fn', () => locker.using('k'), TypeError, 'ERR_INVALID_ARG_TYPE', 'fn'],
    ['forged lock', () => locker.release({ key: 'k', token: 'x' }), TypeError, 'ERR_INVALID_ARG_TYPE', 'lock'],
    ['no lock', () => locker.release(), TypeError, 'ERR_INVALID_ARG_TYPE', 'lock'],
    ['forged lock to extend', () => locker.extend({ key: 'k' }), TypeError, 'ERR_INVALID_ARG_TYPE', 'lock'],
    ['bad extend ttl', () => locker.acquire('bad-extend').then((lock) => lock.extend(-1)), RangeError, 'ERR_OUT_OF_RANGE', 'ttl'],
  ]

  test.each(cases)('%s', async (_, call, ErrorClass, code, name) => {
    const error = await call().catch((e) => e)
    expect(error).toBeInstanceOf(ErrorClass)
    expect(error.code).toBe(code)
    expect(error.message).toMatch(new RegExp(name))
  })

  test('a Lock from another Locker is foreign', async () => {
    const other = new Locker(server.url)
    const lock = await other.acquire('foreign')
    const error = await locker.release(lock).catch((e) => e)
    expect(error).toBeInstanceOf(RangeError)
    expect(error.code).toBe('ERR_INVALID_ARG_VALUE')
    expect(error.message).toMatch(/lock/)
    expect(await lock.release()).toBe(true)
    await other.close()
  })

  test('bad targets throw from the constructor', () => {
    expect(() => new Locker('http://localhost')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
    expect(() => new Locker('not a url')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
    expect(() => new Locker(42)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
    expect(() => new Locker({ port: 70000 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
    expect(() => new Locker(server.url, { connectTimeout: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }))
    expect(() => new Locker(server.url, { ttl: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }))
  })

  test('nothing is locked after a rejected call', async () => {
    const redis = server.client()
    await locker.acquire('k', { ttl: -1 }).catch(() => {})
    expect(await redis.exists('k')).toBe(0)
  })
})

describe('passwords never show', () => {
  const password = 'pw-s3cr3t-Zq9'
  let secured

  beforeAll(async () => {
    secured = await startRedis({
      password,
      aclUsers: [{ username: 'locker', password: 'acl-pass-Xy7', rules: '+@all ~* &*' }],
    })
  })

  test('in util.inspect of a locker, from a URL or an options object', () => {
    const fromUrl = new Locker(`redis://:${password}@127.0.0.1:${secured.port}`)
    const fromObject = new Locker({ host: '127.0.0.1', port: secured.port, password })
    for (const shown of [inspect(fromUrl), inspect(fromObject), inspect(fromObject, { showHidden: true, depth: 10 })]) {
      expect(shown).not.toContain(password)
    }
    expect(inspect(fromUrl)).toContain(':***@')
    fromUrl.close()
    fromObject.close()
  })

  test('in errors from a wrong password', async () => {
    const wrong = 'wr0ng-Passw0rd'
    const bad = new Locker(`redis://:${wrong}@127.0.0.1:${secured.port}`, { connectTimeout: 2000 })
    const error = await bad.acquire('k').catch((e) => e)
    await bad.close()
    expect(error).toBeInstanceOf(LockConnectionError)
    const everything = `${error.message} ${error.stack} ${error.cause && error.cause.message} ${inspect(error)}`
    expect(everything).not.toContain(wrong)
  })

  test('in errors from a bad URL', () => {
    const error = (() => { try { return new Locker(`redis://:${password}@exa mple:1`) } catch (e) { return e } })()
    expect(error.message).not.toContain(password)
  })

  test('the right password and an ACL user work', async () => {
    const withPassword = new Locker(`redis://:${password}@127.0.0.1:${secured.port}`)
    const aclUser = new Locker({ host: '127.0.0.1', port: secured.port, username: 'locker', password: 'acl-pass-Xy7' })
    const first = await withPassword.acquire('secured')
    expect(await aclUser.tryAcquire('secured')).toBeNull()
    await first.release()
    expect(await aclUser.tryAcquire('secured')).not.toBeNull()
    await withPassword.close()
    await aclUser.close()
  })
})

describe('Redis down or stalled', () => {
  test('nothing listening: LockConnectionError within connectTimeout', async () => {
    const dead = await startRedis()
    const port = dead.port
    await dead.stop()
    const unreachable = new Locker(`redis://127.0.0.1:${port}`, { connectTimeout: 500, commandTimeout: 500 })
    const started = Date.now()
    const error = await unreachable.acquire('k').catch((e) => e)
    expect(Date.now() - started).toBeLessThan(1500)
    expect(error).toBeInstanceOf(LockConnectionError)
    expect(error.code).toBe('ECONNECTION')
    expect(error.key).toBe('k')
    expect(error.cause).toBeInstanceOf(Error)
    await unreachable.close()
  })

  test('a stalled server (SIGSTOP) rejects within commandTimeout and recovers on SIGCONT', async () => {
    const stalled = await startRedis()
    const flaky = new Locker(stalled.url, { connectTimeout: 500, commandTimeout: 300 })
    const first = await flaky.acquire('k', { ttl: 60000 })
    await stalled.pause()
    try {
      const started = Date.now()
      const results = await Promise.all([
        flaky.acquire('other').catch((e) => e),
        flaky.release(first).catch((e) => e),
        flaky.extend(first).catch((e) => e),
      ])
      expect(Date.now() - started).toBeLessThan(1500)
      for (const error of results) expect(error).toBeInstanceOf(LockConnectionError)
    } finally {
      await stalled.resume()
    }
    const again = await flaky.acquire('after-stall')
    expect(await again.release()).toBe(true)
    await flaky.close()
  })

  test('a killed server rejects, and after a restart the same locker works', async () => {
    const mortal = await startRedis()
    const survivor = new Locker(mortal.url, { connectTimeout: 500, commandTimeout: 500 })
    const before = await survivor.acquire('k')
    expect(await before.release()).toBe(true)
    await mortal.kill('SIGKILL')
    const started = Date.now()
    await expect(survivor.acquire('k')).rejects.toThrow(LockConnectionError)
    expect(Date.now() - started).toBeLessThan(1500)
    await mortal.restart()
    let after
    for (let attempt = 0; attempt < 20 && !after; attempt++) {
      after = await survivor.acquire('k').catch(() => null)
      if (!after) await new Promise((resolve) => setTimeout(resolve, 100))
    }
    expect(after).toBeTruthy()
    expect(await after.release()).toBe(true)
    await survivor.close()
  })
})

// Issue 20: a connection error says which address was tried, where it came from, and what to check.
describe('connection errors say where they tried and what to check', () => {
  const net = require('node:net')
  const { freePort } = require('../helpers/redis-server')
  const REFUSED = 'connection refused; is a Redis running there? Check the host and port, and any firewall in between'

  /** The error of one acquire on `locker`, which is then closed. */
  async function failure(locker) {
    const error = await locker.acquire('where', { wait: 0 }).catch((e) => e)
    await locker.close()
    return error
  }

  test('nothing listening, a target given: the address, "from the target argument", what to check', async () => {
    const port = await freePort()
    for (const target of [`redis://127.0.0.1:${port}`, { port }, [`redis://127.0.0.1:${port}`]]) {
      const error = await failure(new Locker(target, { connectTimeout: 2000 }))
      expect(error).toBeInstanceOf(LockConnectionError)
      expect(error.message).toBe(`Redis unavailable while locking "where": 127.0.0.1:${port} (from the target argument): ${REFUSED}`)
    }
  })

  test('nothing listening, no target given: "from REDIS_URL"', async () => {
    const port = await freePort()
    const saved = process.env.REDIS_URL
    process.env.REDIS_URL = `redis://127.0.0.1:${port}`
    let locker
    try {
      locker = new Locker(undefined, { connectTimeout: 2000 })
    } finally {
      process.env.REDIS_URL = saved
    }
    const error = await failure(locker)
    expect(error.message).toBe(`Redis unavailable while locking "where": 127.0.0.1:${port} (from REDIS_URL): ${REFUSED}`)
  })

  test('no target and no REDIS_URL: the built-in default, said as such (checked without connecting)', () => {
    const { resolveTarget } = require('../../lib/target')
    const saved = process.env.REDIS_URL
    delete process.env.REDIS_URL
    try {
      expect(resolveTarget(undefined).native.nodes).toEqual([expect.objectContaining({ host: '127.0.0.1', port: 6379, origin: 'default' })])
      process.env.REDIS_URL = ''
      expect(resolveTarget(undefined).native.nodes[0].origin).toBe('default')
      process.env.REDIS_URL = 'redis://127.0.0.1:1'
      expect(resolveTarget(undefined).native.nodes[0]).toMatchObject({ port: 1, origin: 'REDIS_URL' })
      expect(resolveTarget('redis://127.0.0.1:2').native.nodes[0]).toMatchObject({ port: 2, origin: 'argument' })
    } finally {
      if (saved === undefined) delete process.env.REDIS_URL
      else process.env.REDIS_URL = saved
    }
  })

  test('Redlock: each failed node is named by its address, with what to check', async () => {
    const ports = [await freePort(), await freePort()]
    const error = await failure(new Locker(ports.map((port) => `redis://127.0.0.1:${port}`), { connectTimeout: 2000 }))
    expect(error).toBeInstanceOf(QuorumError)
    expect(error.votes.errors.length).toBeGreaterThan(0)
    for (const { node, message } of error.votes.errors) {
      expect(ports.map((port) => `127.0.0.1:${port}`)).toContain(node)
      expect([REFUSED, 'no answer before the round was decided']).toContain(message)
    }
    expect(error.message).toContain(`: ${REFUSED}`)
  })

  test('a server that accepts and never answers: no connection within connectTimeout, and TLS among the things to check', async () => {
    const sockets = new Set()
    const silent = net.createServer((socket) => {
      sockets.add(socket)
      socket.on('error', () => {})
    })
    await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve))
    const { port } = silent.address()
    try {
      const error = await failure(new Locker(`redis://127.0.0.1:${port}`, { connectTimeout: 500 }))
      expect(error.message).toBe(`Redis unavailable while locking "where": 127.0.0.1:${port} (from the target argument): ` +
        'no connection within 500 ms; is a Redis running there? Check the host and port, any firewall in between, ' +
        'and whether the server needs TLS (rediss://)')
    } finally {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => silent.close(resolve))
    }
  })
})

// Issue 12: messages that named no key, the wrong operation, or a parse error of the driver.
describe('messages say the truth', () => {
  test('a busy lock: the message names the key and when the holder\'s TTL ends at the latest', async () => {
    for (const target of [server.url, 'memory://']) {
      const own = new Locker(target)
      const held = await own.acquire('busy-message', { ttl: 5000 })
      // At once, and after a wait that runs out.
      const atOnce = await own.acquire('busy-message', { wait: 0 }).catch((e) => e)
      const waited = await own.acquire('busy-message', { wait: 50 }).catch((e) => e)
      await held.release()
      await own.close()
      for (const busy of [atOnce, waited]) {
        expect(busy).toBeInstanceOf(LockBusyError)
        expect(busy.key).toBe('busy-message')
        expect(busy.retryAfter).toBeGreaterThan(0)
        expect(busy.message).toBe(`lock "busy-message" is held by someone else; it expires in ${busy.retryAfter} ms at the latest`)
      }
    }
  })

  test('a call on a closed locker: the LockConnectionError says nothing was done for the key', async () => {
    const own = new Locker('memory://')
    const lock = await own.acquire('closed-message')
    await own.close()
    for (const [call, key] of [[own.acquire('other'), 'other'], [own.release(lock), 'closed-message'], [own.extend(lock), 'closed-message']]) {
      const error = await call.catch((e) => e)
      expect(error).toBeInstanceOf(LockConnectionError)
      expect(error.code).toBe('ECONNECTION')
      expect(error.key).toBe(key)
      expect(error.message).toBe(`the locker was closed; nothing was done for lock "${key}"`)
    }
  })

  test('extend after a double release: the LockLostError names the key', async () => {
    for (const target of [server.url, 'memory://']) {
      const own = new Locker(target)
      const lock = await own.acquire('released-twice')
      expect(await lock.release()).toBe(true)
      expect(await lock.release()).toBe(false)
      const error = await lock.extend().catch((e) => e)
      await own.close()
      expect(error).toBeInstanceOf(LockLostError)
      expect(error.key).toBe('released-twice')
      expect(error.message).toContain('"released-twice"')
      expect(error.message).toMatch(/released/)
      expect(error.message).not.toContain('""')
    }
  })

  test('a stalled server: acquire says locking, release releasing, extend extending (wire and native paths)', async () => {
    const stalled = await startRedis()
    const flaky = new Locker(stalled.url, { connectTimeout: 500, commandTimeout: 300 })
    // Cycled until the wire is up, so the one-key release below goes on it (a two-key lock
    // always goes on the native connection).
    for (let cycle = 0; cycle < 20; cycle++) await (await flaky.acquire('warm-up')).release()
    const one = await flaky.acquire('one', { ttl: 60000 })
    const two = await flaky.acquire(['two', 'three'], { ttl: 60000 })
    await stalled.pause()
    try {
      const [acquired, releasedOne, releasedTwo, extended] = await Promise.all([
        flaky.acquire('other').catch((e) => e),
        flaky.release(one).catch((e) => e),
        flaky.release(two).catch((e) => e),
        flaky.extend(one).catch((e) => e),
      ])
      for (const error of [acquired, releasedOne, releasedTwo, extended]) expect(error).toBeInstanceOf(LockConnectionError)
      expect(acquired.message).toMatch(/^Redis unavailable while locking "other": /)
      // The wire's timeout (the one-key release) names the server and where it came from too.
      expect(releasedOne.message).toContain(`127.0.0.1:${stalled.port} (from the target argument): no answer within`)
      expect(releasedOne.message).toMatch(/^Redis unavailable while releasing "one": /)
      expect(releasedTwo.message).toMatch(/^Redis unavailable while releasing "two": /)
      expect(extended.message).toMatch(/^Redis unavailable while extending "one": /)
    } finally {
      await stalled.resume()
    }
    await flaky.close()
  })

  test('a killed server: release and extend on the native connection say releasing and extending', async () => {
    const mortal = await startRedis()
    const survivor = new Locker(mortal.url, { connectTimeout: 500, commandTimeout: 500 })
    const lock = await survivor.acquire('mortal', { ttl: 60000 })
    await mortal.kill('SIGKILL')
    const released = await survivor.release(lock).catch((e) => e)
    const extended = await survivor.extend(lock).catch((e) => e)
    await survivor.close()
    expect(released).toBeInstanceOf(LockConnectionError)
    expect(released.message).toMatch(/^Redis unavailable while releasing "mortal": /)
    expect(extended).toBeInstanceOf(LockConnectionError)
    expect(extended.message).toMatch(/^Redis unavailable while extending "mortal": /)
  })

  test('Redlock: a release or extend without a majority says so, not "could not lock"', async () => {
    const nodes = await Promise.all([startRedis(), startRedis()])
    const redlock = new Locker(nodes.map((node) => node.url), { connectTimeout: 500, commandTimeout: 300 })
    const lock = await redlock.acquire('quorum-words', { ttl: 60000 })
    await Promise.all(nodes.map((node) => node.pause()))
    try {
      const [released, extended] = await Promise.all([
        redlock.release(lock).catch((e) => e),
        redlock.extend(lock).catch((e) => e),
      ])
      expect(released).toBeInstanceOf(QuorumError)
      expect(released.message).toMatch(/^could not release "quorum-words" on a majority of nodes/)
      expect(extended).toBeInstanceOf(QuorumError)
      expect(extended.message).toMatch(/^could not extend "quorum-words" on a majority of nodes/)
    } finally {
      await Promise.all(nodes.map((node) => node.resume()))
    }
    await redlock.close()
  })

  describe('a port where something else than Redis listens', () => {
    const http = require('node:http')
    const net = require('node:net')
    const { freePort } = require('../helpers/redis-server')
    const servers = []
    const sockets = new Set()

    /** An HTTP server, or a plain TCP server that greets first (like SSH), on a free loopback port. */
    async function listen(kind) {
      const port = await freePort()
      const other = kind === 'http'
        ? http.createServer((req, res) => res.end('not redis'))
        : net.createServer((socket) => socket.end('SSH-2.0-OpenSSH_9.6\r\n'))
      other.on('connection', (socket) => {
        // ironlock resets a connection it gave up on.
        socket.on('error', () => {})
        sockets.add(socket)
        socket.on('close', () => sockets.delete(socket))
      })
      await new Promise((resolve) => other.listen(port, '127.0.0.1', resolve))
      servers.push(other)
      return port
    }

    afterAll(async () => {
      for (const socket of sockets) socket.destroy()
      await Promise.all(servers.map((other) => new Promise((resolve) => other.close(resolve))))
    })

    test.each(['http', 'tcp'])('one Redis (%s server): a LockConnectionError saying so, at once, without the password', async (kind) => {
      const port = await listen(kind)
      const password = 'n0t-r3dis-Pw'
      for (const target of [`redis://127.0.0.1:${port}`, { host: '127.0.0.1', port, password }]) {
        const wrong = new Locker(target)
        const started = Date.now()
        const error = await wrong.acquire('k').catch((e) => e)
        const elapsed = Date.now() - started
        await wrong.close()
        expect(error).toBeInstanceOf(LockConnectionError)
        expect(error.message).toBe(`Redis unavailable while locking "k": the server at 127.0.0.1:${port} (from the target argument) did not answer as Redis`)
        expect(elapsed).toBeLessThan(2000)
        expect(`${error.message} ${error.cause && error.cause.message} ${inspect(error)}`).not.toContain(password)
      }
    })

    test('Redlock: a QuorumError whose node votes say so, at once', async () => {
      const ports = [await listen('http'), await listen('tcp')]
      const wrong = new Locker(ports.map((port) => `redis://127.0.0.1:${port}`))
      const started = Date.now()
      const error = await wrong.acquire('k').catch((e) => e)
      const elapsed = Date.now() - started
      await wrong.close()
      expect(error).toBeInstanceOf(QuorumError)
      expect(elapsed).toBeLessThan(2000)
      expect(error.votes.errors.map(({ node }) => node).sort()).toEqual(ports.map((port) => `127.0.0.1:${port}`).sort())
      // The first node to fail decides the round (no majority is left): the other one may not have answered yet.
      for (const { node, message } of error.votes.errors) {
        expect([`the server at ${node} did not answer as Redis`, 'no answer before the round was decided']).toContain(message)
      }
      expect(error.message).toMatch(/: the server at 127\.0\.0\.1:\d+ did not answer as Redis/)
      expect(error.message).not.toMatch(/Incompatible|Parse error/)
    })
  })
})
