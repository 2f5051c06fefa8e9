'use strict'

// The usage examples of redlock 4's README (node_modules/redlock/README.md) and of redlock 5's
// (node_modules/@sesamecare-oss/redlock/README.md, the maintained fork) run against
// require('ironlock/redlock'). The snippets are read from the READMEs themselves and run as
// written; only the module they require changes (`redlock` / `@sesamecare-oss/redlock` →
// `ironlock/redlock`, ES imports written as `require`). The example hosts (redis1.example.com,
// a.redis.example.com, …) are served by the throwaway servers this file starts: the `redis` and
// `ioredis` modules the snippets require hand out ioredis clients of those servers.
//
// The examples do not return their promises, so every call into the shim is tracked (and a
// release checks that a majority of nodes still held the lock's value) and the test waits until
// the calls are settled.

const Bluebird = require('bluebird')
const { startRedisSet, stopAll } = require('../../helpers/redis-server')
const Redlock = require('ironlock/redlock')
const { codeBlocks, adapt, changedLines, compile, run } = require('../../fixtures/readme-snippets')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const V4 = codeBlocks(require.resolve('redlock/README.md')).map(({ code }) => code)
const V5 = codeBlocks(require.resolve('@sesamecare-oss/redlock/README.md')).map(({ code }) => code)

/** Block `index` of a README, checked to be the one we mean. */
function snippet(blocks, index, marker) {
  const code = blocks[index]
  if (code === undefined || !code.includes(marker)) throw new Error(`README block ${index} is not the "${marker}" example`)
  return code
}

const v4 = {
  configuration: snippet(V4, 1, "require('redis').createClient(6379, 'redis1.example.com')"),
  clientError: snippet(V4, 2, "redlock.on('clientError'"),
  promiseUnlock: snippet(V4, 3, 'redlock.lock(resource, ttl).then(function(lock) {'),
  promiseExtend: snippet(V4, 4, 'return lock.extend(1000).then(function(lock){'),
  disposerUnlock: snippet(V4, 5, 'using(redlock.disposer(resource, ttl, unlockErrorHandler), function(lock) {'),
  disposerExtend: snippet(V4, 6, 'return lock.extend(1000).then(function(extended){'),
  callbackUnlock: snippet(V4, 7, 'redlock.lock(resource, ttl, function(err, lock) {'),
  callbackExtend: snippet(V4, 8, 'lock.extend(1000, function(err, lock){'),
  multiple: snippet(V4, 9, "redlock.lock(['locks:account:322456', 'locks:account:322457', 'locks:account:322458'], 1000)"),
}

const v5 = {
  configuration: snippet(V5, 1, 'automaticExtensionThreshold: 500'),
  using: snippet(V5, 2, 'await redlock.using([senderId, recipientId], 5000, async (signal, context) => {'),
  acquire: snippet(V5, 3, 'let lock = await redlock.acquire(["a"], 5000);'),
  commonjs: snippet(V5, 4, 'const { Redlock } = require("@sesamecare-oss/redlock");'),
  errorEvent: snippet(V5, 5, 'redlock.on("error", (error) => {'),
  db: snippet(V5, 6, 'db: 2 // DB to select and use for lock records'),
}

let nodes

beforeAll(async () => {
  nodes = await startRedisSet(3)
})

afterEach(() => jest.restoreAllMocks())

afterAll(() => stopAll())

/** What `require` gives the snippets: the example hosts map onto our servers. */
function requireForSnippets(id) {
  if (id === 'redis') {
    return {
      createClient(port, host) {
        const number = /^redis(\d)\.example\.com$/.exec(host)
        if (port !== 6379 || number === null) throw new Error(`unexpected redis host ${host}:${port}`)
        return nodes[Number(number[1]) - 1].client()
      },
    }
  }
  if (id === 'ioredis') {
    return function Redis(options) {
      const letter = /^([abc])\.redis\.example\.com$/.exec(options.host)
      if (letter === null) throw new Error(`unexpected ioredis host ${options.host}`)
      return nodes['abc'.indexOf(letter[1])].client()
    }
  }
  if (id === 'ironlock/redlock' || id === 'bluebird') return require(id)
  throw new Error(`the README snippets were not expected to require ${id}`)
}

/** A console whose `error` and `log` calls are kept, to keep the test output quiet and checked. */
function fakeConsole() {
  const logged = []
  return {
    logged,
    error: (...args) => logged.push(args),
    log: (...args) => logged.push(args),
  }
}

const TRACKED = ['acquire', 'release', 'extend', 'using', 'lock', 'unlock']

/** Records every call into the shim; a release first checks that a majority held the lock. */
function track(clients) {
  const calls = []
  const quorum = Math.floor(clients.length / 2) + 1
  const held = async (lock) => {
    // A v5 lock names its `resources`; a v4 lock, as redlock 4's, its `resource`.
    for (const key of lock.resources ?? [].concat(lock.resource)) {
      const values = await Promise.all(clients.map((client) => client.get(key)))
      if (values.filter((value) => value === lock.value).length < quorum) return false
    }
    return true
  }
  for (const method of TRACKED) {
    const original = Redlock.prototype[method]
    jest.spyOn(Redlock.prototype, method).mockImplementation(function (...args) {
      const call = { method, args }
      calls.push(call)
      const lock = args[0]
      const check = (method === 'release' || method === 'unlock') && lock instanceof Redlock.Lock
        ? held(lock).then((isHeld) => { call.heldAtRelease = isHeld })
        : Promise.resolve()
      const promise = check.then(() => original.apply(this, args))
      call.done = promise.then((value) => { call.value = value }, (error) => { call.error = error })
      return promise
    })
  }
  return {
    calls,
    of: (method) => calls.filter((call) => call.method === method),
    /** Resolves once every tracked call (including ones started by others) has settled. */
    async idle() {
      for (let seen = -1; seen !== calls.length;) {
        seen = calls.length
        await Promise.all(calls.map((call) => call.done))
        await sleep(50)
      }
    },
  }
}

/** Keys of every node, to check that an example left nothing behind. */
async function allKeys(clients) {
  const keys = await Promise.all(clients.map((client) => client.keys('*')))
  return keys.flat().filter((key) => !key.startsWith('ironlock:fence:'))
}

test('the snippets are adapted on their require / import lines only', () => {
  for (const code of Object.values(v4)) {
    for (const line of changedLines(code, adapt(code, 'redlock', 'ironlock/redlock'))) expect(line).toMatch(/require\(/)
  }
  for (const code of Object.values(v5)) {
    for (const line of changedLines(code, adapt(code, '@sesamecare-oss/redlock', 'ironlock/redlock'))) {
      expect(line).toMatch(/require\(/)
    }
  }
  expect(changedLines(v5.commonjs, adapt(v5.commonjs, '@sesamecare-oss/redlock', 'ironlock/redlock')))
    .toEqual(['const { Redlock } = require("ironlock/redlock");'])
})

// The usage examples of both READMEs, given a `redlock` made by the README's configuration
// example (3 nodes) or by hand on one client.
function usageExamples(setup) {
  let redlock
  let clients

  beforeAll(async () => {
    ;({ redlock, clients } = await setup())
  })

  beforeEach(() => Promise.all(clients.map((client) => client.flushall())))

  afterAll(() => redlock.quit())

  describe('redlock 4 README', () => {
    async function runV4(code, scope = {}) {
      const tracker = track(clients)
      const console = fakeConsole()
      await run(adapt(code, 'redlock', 'ironlock/redlock'), { require: requireForSnippets, redlock, console, ...scope })
      await tracker.idle()
      expect(await allKeys(clients)).toEqual([])
      for (const call of tracker.calls) expect(call.error).toBeUndefined()
      return { tracker, logged: console.logged }
    }

    test('Usage (promise style): Locking & Unlocking', async () => {
      const { tracker, logged } = await runV4(v4.promiseUnlock)
      expect(tracker.of('lock')).toHaveLength(1)
      expect(tracker.of('lock')[0].args.slice(0, 2)).toEqual(['locks:account:322456', 1000])
      expect(tracker.of('unlock').map((call) => call.heldAtRelease)).toEqual([true])
      expect(logged).toEqual([])
    })

    test('Usage (promise style): Locking and Extending', async () => {
      const { tracker, logged } = await runV4(v4.promiseExtend)
      const [lock] = tracker.of('lock')
      const [extend] = tracker.of('extend')
      expect(extend.args[1]).toBe(1000)
      expect(extend.value).toBe(lock.value) // v4 extends the lock in place
      expect(tracker.of('unlock').map((call) => call.heldAtRelease)).toEqual([true])
      expect(logged).toEqual([])
    })

    test('Usage (disposer style): Locking & Unlocking', async () => {
      const { tracker, logged } = await runV4(v4.disposerUnlock)
      expect(tracker.of('lock')).toHaveLength(1)
      expect(tracker.of('unlock').map((call) => call.heldAtRelease)).toEqual([true])
      expect(logged).toEqual([])
    })

    test('Usage (disposer style): Locking and Extending', async () => {
      const errors = []
      const { tracker, logged } = await runV4(v4.disposerExtend, {
        using: Bluebird.using,
        unlockErrorHandler: (error) => errors.push(error),
      })
      const [lock] = tracker.of('lock')
      // "redlock modifies the original lock, so the vars `lock` and `extended` point to the exact same object"
      expect(tracker.of('extend')[0].value).toBe(lock.value)
      expect(tracker.of('unlock').map((call) => call.heldAtRelease)).toEqual([true])
      expect(errors).toEqual([])
      expect(logged).toEqual([])
    })

    test('Usage (callback style): Locking & Unlocking', async () => {
      const { tracker, logged } = await runV4(v4.callbackUnlock)
      expect(tracker.of('lock')).toHaveLength(1)
      expect(tracker.of('unlock').map((call) => call.heldAtRelease)).toEqual([true])
      // The example logs the unlock callback's `err` unconditionally: null on success.
      expect(logged).toEqual([[null]])
    })

    test('Usage (callback style): Locking and Extending (with the README\'s missing `)` added)', async () => {
      // As printed, the example is not valid JavaScript: `lock.extend(1000, function(err, lock){`
      // is never closed. It runs once its closing parenthesis is added.
      expect(() => compile(v4.callbackExtend)).toThrow(SyntaxError)
      const fixed = v4.callbackExtend.replace('\t\t\tlock.unlock();\n\t\t}\n\t}\n});', '\t\t\tlock.unlock();\n\t\t});\n\t}\n});')
      expect(fixed).not.toBe(v4.callbackExtend)
      const { tracker, logged } = await runV4(fixed)
      expect(tracker.of('extend')[0].value).toBe(tracker.of('lock')[0].value)
      expect(tracker.of('unlock').map((call) => call.heldAtRelease)).toEqual([true])
      expect(logged).toEqual([])
    })

    test('Locking multiple resources', async () => {
      const { tracker, logged } = await runV4(v4.multiple)
      const [lock] = tracker.of('lock')
      expect(lock.value.resource).toEqual(['locks:account:322456', 'locks:account:322457', 'locks:account:322458'])
      expect(tracker.of('extend')).toHaveLength(1)
      expect(tracker.of('unlock').map((call) => call.heldAtRelease)).toEqual([true])
      expect(logged).toEqual([])
    })
  })

  describe('redlock 5 README', () => {
    const snippetScope = (extra) => ({ require: requireForSnippets, redlock, ...extra })

    /** `something()` / `somethingElse()` of the examples: they check the lock is held meanwhile. */
    function work(keys) {
      const seen = []
      const quorum = Math.floor(clients.length / 2) + 1
      const check = async () => {
        const values = await Promise.all(keys.flatMap((key) => clients.map((client) => client.get(key))))
        const value = values.find((each) => each !== null)
        seen.push(value !== undefined && values.filter((each) => each === value).length >= quorum * keys.length)
        await sleep(20)
      }
      return { seen, something: check, somethingElse: check }
    }

    test('Usage: using', async () => {
      const tracker = track(clients)
      const { seen, something, somethingElse } = work(['sender:1', 'recipient:2'])
      await run(adapt(v5.using, '@sesamecare-oss/redlock', 'ironlock/redlock'),
        snippetScope({ senderId: 'sender:1', recipientId: 'recipient:2', something, somethingElse }))
      await tracker.idle()
      expect(seen).toEqual([true, true])
      expect(tracker.of('using')).toHaveLength(1)
      expect(tracker.of('using')[0].error).toBeUndefined()
      expect(await allKeys(clients)).toEqual([])
    })

    test('Usage: acquire, extend and release', async () => {
      const tracker = track(clients)
      const { seen, something, somethingElse } = work(['a'])
      await run(adapt(v5.acquire, '@sesamecare-oss/redlock', 'ironlock/redlock'), snippetScope({ something, somethingElse }))
      await tracker.idle()
      expect(seen).toEqual([true, true])
      const [acquired] = tracker.of('acquire')
      const [extended] = tracker.of('extend')
      // "Note that this returns a new `Lock` instance."
      expect(extended.value).toBeInstanceOf(Redlock.Lock)
      expect(extended.value).not.toBe(acquired.value)
      expect(extended.value.value).toBe(acquired.value.value)
      expect(tracker.of('release').map((call) => [call.args[0], call.heldAtRelease])).toEqual([[extended.value, true]])
      for (const call of tracker.calls) expect(call.error).toBeUndefined()
      expect(await allKeys(clients)).toEqual([])
    })

    test('Use in CommonJS Projects', async () => {
      const required = await run(`${adapt(v5.commonjs, '@sesamecare-oss/redlock', 'ironlock/redlock')}\nreturn Redlock`,
        { require: requireForSnippets })
      expect(required).toBe(Redlock)
    })

    test('Error Handling: ResourceLockedError is ignored, everything else logged', async () => {
      const console = fakeConsole()
      const listeners = redlock.listenerCount('error')
      await run(adapt(v5.errorEvent, '@sesamecare-oss/redlock', 'ironlock/redlock'),
        snippetScope({ console, ResourceLockedError: Redlock.ResourceLockedError }))
      expect(redlock.listenerCount('error')).toBe(listeners + 1)
      const handler = redlock.listeners('error').at(-1)
      try {
        const lock = await redlock.acquire(['busy'], 5000)
        const failure = await redlock.acquire(['busy'], 1000, { retryCount: 0 }).catch((error) => error)
        expect(failure).toBeInstanceOf(Redlock.ExecutionError)
        expect(console.logged).toEqual([]) // the ResourceLockedError events were ignored
        const other = new Error('something else')
        redlock.emit('error', other)
        expect(console.logged).toEqual([[other]])
        await lock.release()
      } finally {
        redlock.off('error', handler)
      }
    })
  })
}

describe('as configured in the READMEs (3 clients, one per node)', () => {
  describe('redlock 4 README: Configuration', () => {
    test('builds a Redlock on the three clients with the README settings', async () => {
      const redlock = await run(`${adapt(v4.configuration, 'redlock', 'ironlock/redlock')}\nreturn redlock`,
        { require: requireForSnippets })
      try {
        expect(redlock).toBeInstanceOf(Redlock)
        expect(redlock.servers).toHaveLength(3)
        expect(redlock).toMatchObject({ driftFactor: 0.01, retryCount: 10, retryDelay: 200, retryJitter: 200 })
        const lock = await redlock.lock('configured', 1000)
        const readers = nodes.map((node) => node.client())
        const values = () => Promise.all(readers.map((reader) => reader.get('configured')))
        // It resolves on a majority; the third SET may still be on its way.
        for (let tries = 0; (await values()).includes(null) && tries < 50; tries++) await sleep(20)
        expect(await values()).toEqual([lock.value, lock.value, lock.value])
        await lock.unlock()

        // Error Handling: the clientError listener of the README is accepted as is.
        const console = fakeConsole()
        await run(adapt(v4.clientError, 'redlock', 'ironlock/redlock'), { redlock, console })
        expect(redlock.listenerCount('clientError')).toBe(1)
        const failure = new Error('node down')
        redlock.emit('clientError', failure)
        expect(console.logged).toEqual([['A redis error has occurred:', failure]])
      } finally {
        await redlock.quit()
      }
    })
  })

  usageExamples(async () => {
    const redlock = await run(`${adapt(v5.configuration, '@sesamecare-oss/redlock', 'ironlock/redlock')}\nreturn redlock`,
      { require: requireForSnippets })
    expect(redlock).toBeInstanceOf(Redlock)
    expect(redlock.settings).toEqual({
      driftFactor: 0.01, retryCount: 10, retryDelay: 200, retryJitter: 200, automaticExtensionThreshold: 500, db: 0,
    })
    return { redlock, clients: nodes.map((node) => node.client()) }
  })
})

describe('on one Redis (one client)', () => {
  usageExamples(async () => {
    const client = nodes[0].client()
    return { redlock: new Redlock([client], { retryDelay: 200, retryJitter: 200 }), clients: [client] }
  })
})

test('redlock 5 README, Using a specific DB index: the locks land in db 2', async () => {
  const redlock = await run(`${adapt(v5.db, '@sesamecare-oss/redlock', 'ironlock/redlock')}\nreturn redlock`,
    { require: requireForSnippets })
  const db2 = nodes[0].client()
  try {
    await db2.select(2)
    await db2.flushdb()
    const lock = await redlock.acquire(['in-db-2'], 5000)
    expect(await db2.get('in-db-2')).toBe(lock.value)
    const db0 = nodes[0].client()
    expect(await db0.get('in-db-2')).toBeNull()
    await lock.release()
    expect(await db2.get('in-db-2')).toBeNull()
  } finally {
    await redlock.quit()
  }
})

// "Change the require line and nothing else" holds at exit too: redlock's quit() quits the clients
// it was given, so a script that ends with it exits; one on the shim must as well (issue 12).
test.each(['redlock', 'ironlock/redlock'])('redlock 4 README example as a script on %s: quit() lets it exit by itself', async (moduleName) => {
  const { execFile } = require('node:child_process')
  const path = require('node:path')
  const script = path.join(__dirname, '..', '..', 'fixtures', 'redlock4-readme-script.js')
  const started = Date.now()
  const { code, signal, stdout, stderr } = await new Promise((resolve) => {
    execFile(process.execPath, [script, moduleName, ...nodes.map((node) => String(node.port))],
      { cwd: path.join(__dirname, '..', '..', '..'), timeout: 10000, killSignal: 'SIGKILL' },
      (error, out, err) => resolve({ code: error ? error.code : 0, signal: error ? error.signal : null, stdout: out, stderr: err }))
  })
  expect({ code, signal, stderr }).toEqual({ code: 0, signal: null, stderr: '' })
  expect(stdout).toBe('unlocked\nquit\n')
  expect(Date.now() - started).toBeLessThan(5000)
})
