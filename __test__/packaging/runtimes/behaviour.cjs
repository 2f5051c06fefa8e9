'use strict'

// ironlock's behaviour on whatever runtime runs this file: Node, Bun or Deno. It is the suite
// scripts/test-runtimes.js runs under every pinned runtime (`npm run test:runtimes`), so it uses
// only what all three support: CommonJS, node:assert and the redis-server harness the jest
// suites use (node:child_process, node:net). Three real redis-servers on free loopback ports,
// never 6379.
//
// ironlock is loaded the way an application in the current directory gets it: `require('ironlock')`
// and the package's exports. The driver runs this in a directory where the package's files are
// installed as npm installs them; run from the checkout's root, the checkout is the package (a
// package may require itself by name):
//
//   node __test__/packaging/runtimes/behaviour.cjs
//   (bun …, deno run … with the flags in scripts/runtimes.js)

const assert = require('node:assert/strict')
const { createRequire } = require('node:module')
const path = require('node:path')
const { pathToFileURL } = require('node:url')
const { inspect } = require('node:util')
const { startRedisSet, stopAll, freePort } = require('../../helpers/redis-server')
const { whenAborted } = require('../../helpers/signals')
const { test, run } = require('./runner.cjs')

const app = createRequire(path.join(process.cwd(), 'app.cjs'))
const ironlock = app('ironlock')
const Redlock = app('ironlock/redlock')
const packageDir = path.dirname(app.resolve('ironlock/package.json'))

const { Locker, LockError, LockBusyError, LockLostError, LockConnectionError } = ironlock

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let servers
let url
let locker
// Plain clients of the servers, to look at what the locks wrote; `redis` is the first one's.
let clients
let redis

/** The runtime running this file, as it names itself. */
function runtimeName() {
  if (typeof globalThis.Bun !== 'undefined') return `bun ${globalThis.Bun.version}`
  if (typeof globalThis.Deno !== 'undefined') return `deno ${globalThis.Deno.version.deno}`
  return `node ${process.versions.node}`
}

/** Resolves once `check()` resolves true; fails with `what` if it has not within 5 s. */
async function eventually(check, what) {
  const deadline = Date.now() + 5000
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what}: still so after 5 s`)
    await sleep(20)
  }
}

/** The rejection of `promise`; fails if it resolves. */
async function rejection(promise) {
  try {
    await promise
  } catch (error) {
    return error
  }
  assert.fail('expected a rejection')
}

/** Checks `error` is the Node-style argument error `code`, naming `name`. */
function assertArgumentError(error, ErrorClass, code, name) {
  assert.ok(error instanceof ErrorClass, `expected a ${ErrorClass.name}, got ${error && error.stack}`)
  assert.equal(error.code, code)
  // Node quotes the name "so" for ERR_INVALID_ARG_TYPE and 'so' for ERR_INVALID_ARG_VALUE.
  assert.match(error.message, new RegExp(`["']${name.replace(/[.[\]]/g, '\\$&')}["']`))
}

test('acquire and release: a lock with its key, token, fence and expiry', async () => {
  const before = Date.now()
  const lock = await locker.acquire('order:1', { ttl: 5000 })
  assert.equal(lock.key, 'order:1')
  assert.deepEqual(lock.keys, ['order:1'])
  assert.match(lock.token, UUID_V4)
  assert.ok(lock.fence > 0)
  assert.ok(lock.expiresAt > before + 2500 && lock.expiresAt <= Date.now() + 5000, `expiresAt ${lock.expiresAt - before} ms on`)
  assert.equal(await redis.get('order:1'), lock.token)
  assert.equal(await lock.release(), true)
  assert.equal(await locker.release(lock), false)
  assert.equal(await redis.exists('order:1'), 0)
})

test('busy: wait 0 rejects LockBusyError with its code, key and retryAfter', async () => {
  const holder = await locker.acquire('busy', { ttl: 3000 })
  const error = await rejection(locker.acquire('busy', { wait: 0 }))
  assert.ok(error instanceof LockBusyError)
  assert.ok(error instanceof LockError)
  assert.ok(error instanceof Error)
  assert.equal(error.name, 'LockBusyError')
  assert.equal(error.code, 'ELOCKBUSY')
  assert.equal(error.key, 'busy')
  assert.ok(error.retryAfter > 0 && error.retryAfter <= 3000, `retryAfter ${error.retryAfter}`)
  await holder.release()
})

test('a multi-key lock is all or nothing', async () => {
  const holder = await locker.acquire('multi:b', { ttl: 5000 })
  assert.ok((await rejection(locker.acquire(['multi:a', 'multi:b'], { wait: 0 }))) instanceof LockBusyError)
  assert.equal(await redis.exists('multi:a'), 0)
  await holder.release()
  const both = await locker.acquire(['multi:a', 'multi:b'], { wait: 0 })
  assert.deepEqual(both.keys, ['multi:a', 'multi:b'])
  assert.equal(await redis.get('multi:a'), both.token)
  assert.equal(await redis.get('multi:b'), both.token)
  assert.equal(await both.release(), true)
})

test('tryAcquire: null while held, a lock once free', async () => {
  const holder = await locker.acquire('try')
  assert.equal(await locker.tryAcquire('try'), null)
  await holder.release()
  const lock = await locker.tryAcquire('try')
  assert.equal(lock.key, 'try')
  assert.ok(lock.fence > holder.fence)
  await lock.release()
})

test('waiting: a waiter gets the lock handed over when the holder releases', async () => {
  const other = new Locker(url)
  try {
    const holder = await locker.acquire('handoff', { ttl: 30000 })
    const waiting = other.acquire('handoff', { wait: 15000 })
    await sleep(200)
    const releasedAt = Date.now()
    assert.equal(await holder.release(), true)
    const lock = await waiting
    // Long before the holder's 30 s lease could have lapsed: the release woke it.
    assert.ok(Date.now() - releasedAt < 10000)
    assert.ok(lock.fence > holder.fence)
    assert.equal(await redis.get('handoff'), lock.token)
    await lock.release()
  } finally {
    await other.close()
  }
})

test('waiting: waiters in one process are served in arrival order', async () => {
  const holder = await locker.acquire('queue', { ttl: 30000 })
  const order = []
  const wait = (index) => locker.using('queue', { wait: 15000 }, async () => {
    order.push(index)
  })
  // The first waiter has found the lock busy once it listens for its release; the others then
  // queue behind it.
  const waiters = [wait(0)]
  await eventually(async () => (await redis.pubsub('NUMSUB', '{queue}:released'))[1] > 0, 'the first waiter not listening')
  waiters.push(wait(1), wait(2), wait(3))
  await holder.release()
  await Promise.all(waiters)
  assert.deepEqual(order, [0, 1, 2, 3])
})

test('extend: pushes expiresAt out; a lock no longer ours rejects LockLostError', async () => {
  const lock = await locker.acquire('extend', { ttl: 1000 })
  const first = lock.expiresAt
  const extended = await lock.extend(10000)
  assert.equal(extended, lock)
  assert.ok(lock.expiresAt > first + 5000)
  const ttl = await redis.pttl('extend')
  assert.ok(ttl > 5000, `PTTL ${ttl}`)
  await lock.release()
  const error = await rejection(locker.extend(lock, 1000))
  assert.ok(error instanceof LockLostError)
  assert.equal(error.code, 'ELOCKLOST')
  assert.equal(error.key, 'extend')
})

test('using: returns the value of fn and releases', async () => {
  const value = await locker.using('using', { ttl: 5000 }, async (signal, lock) => {
    assert.equal(signal.aborted, false)
    assert.equal(lock.key, 'using')
    assert.equal(await locker.tryAcquire('using'), null)
    return 42
  })
  assert.equal(value, 42)
  assert.equal(await redis.exists('using'), 0)
})

test('using: an error thrown by fn rejects using and still releases', async () => {
  const thrown = new Error('the handler failed')
  const error = await rejection(locker.using('using-throws', async () => {
    throw thrown
  }))
  assert.equal(error, thrown)
  assert.equal(await redis.exists('using-throws'), 0)
})

test('using: a lock deleted behind its back aborts the signal with LockLostError', async () => {
  let reason = null
  const running = locker.using('lost', { ttl: 600 }, async (signal) => {
    await redis.del('lost')
    await whenAborted(signal)
    reason = signal.reason
  })
  const error = await rejection(running)
  assert.ok(error instanceof LockLostError)
  assert.equal(error.code, 'ELOCKLOST')
  assert.equal(reason, error)
})

test('using without autoExtend: the signal aborts with LockLostError when the lease lapses', async () => {
  const running = locker.using('lapse', { ttl: 300, autoExtend: false }, async (signal) => {
    await whenAborted(signal)
    assert.ok(signal.reason instanceof LockLostError)
  })
  assert.ok((await rejection(running)) instanceof LockLostError)
})

test('a wait cancelled with an AbortSignal rejects with its reason and takes nothing', async () => {
  const holder = await locker.acquire('cancel', { ttl: 10000 })
  const controller = new AbortController()
  const waiting = locker.acquire('cancel', { wait: 15000, signal: controller.signal })
  await sleep(100)
  controller.abort()
  const error = await rejection(waiting)
  assert.equal(error, controller.signal.reason)
  assert.equal(error.name, 'AbortError')
  await holder.release()
  const after = await locker.tryAcquire('cancel')
  assert.notEqual(after, null)
  await after.release()
})

test('50-way exclusion: 50 contenders on 5 lockers, never two holders at once', async () => {
  const lockers = Array.from({ length: 5 }, () => new Locker(url))
  let holders = 0
  let mostHolders = 0
  let counter = 0
  try {
    await Promise.all(Array.from({ length: 50 }, (_, i) => lockers[i % lockers.length].using(
      'exclusive', { ttl: 10000, wait: 60000 }, async () => {
        holders++
        mostHolders = Math.max(mostHolders, holders)
        // A read-modify-write across a pause: two holders at once would lose an increment.
        const seen = counter
        await sleep(2)
        counter = seen + 1
        holders--
      })))
  } finally {
    await Promise.all(lockers.map((each) => each.close()))
  }
  assert.equal(mostHolders, 1)
  assert.equal(counter, 50)
})

test('Redlock on 3 servers: the lock on a majority, one holder, released everywhere', async () => {
  const urls = servers.map((server) => server.url)
  const first = new Locker(urls)
  const second = new Locker(urls)
  try {
    const lock = await first.acquire('quorum', { ttl: 5000 })
    // acquire and release resolve once a majority answered; the last node may answer later.
    const holding = async () => (await Promise.all(clients.map((client) => client.get('quorum'))))
      .filter((value) => value === lock.token).length
    assert.ok((await holding()) >= 2)
    const busy = await rejection(second.acquire('quorum', { wait: 0 }))
    assert.ok(busy instanceof LockBusyError)
    assert.equal(await lock.release(), true)
    assert.ok((await holding()) <= 1)
    await eventually(async () => (await holding()) === 0, 'the lock left on a node after its release')
    const next = await second.acquire('quorum', { wait: 0 })
    await next.release()
  } finally {
    await Promise.all([first.close(), second.close()])
  }
})

test('ironlock/redlock: the drop-in Redlock class on 3 ioredis clients', async () => {
  // Clients of their own: quit() quits them, as redlock's does.
  const redlock = new Redlock(servers.map((server) => server.client()), { retryCount: 0 })
  const lock = await redlock.acquire(['dropin'], 5000)
  await assert.rejects(redlock.acquire(['dropin'], 5000), Redlock.ExecutionError)
  await lock.release()
  const value = await redlock.using(['dropin'], 5000, async (signal) => {
    assert.equal(signal.aborted, false)
    return 'done'
  })
  assert.equal(value, 'done')
  await redlock.quit()
})

test('memory://: the same semantics in-process, one store per name', async () => {
  const first = new Locker('memory://runtimes')
  const second = new Locker('memory://runtimes')
  try {
    const lock = await first.acquire('mem', { ttl: 5000 })
    assert.ok((await rejection(second.acquire('mem', { wait: 0 }))) instanceof LockBusyError)
    const waiting = second.acquire('mem', { wait: 5000 })
    await sleep(50)
    await lock.release()
    const next = await waiting
    assert.ok(next.fence > lock.fence)
    assert.equal(await second.using('mem-using', async () => 'value'), 'value')
    await next.release()
  } finally {
    await Promise.all([first.close(), second.close()])
  }
})

test('bad input: Node-style errors naming the argument', async () => {
  assertArgumentError(await rejection(locker.acquire(42)), TypeError, 'ERR_INVALID_ARG_TYPE', 'key')
  assertArgumentError(await rejection(locker.acquire(['a', 7])), TypeError, 'ERR_INVALID_ARG_TYPE', 'key[1]')
  assertArgumentError(await rejection(locker.tryAcquire('k', { ttl: 'long' })), TypeError, 'ERR_INVALID_ARG_TYPE', 'options.ttl')
  assertArgumentError(await rejection(locker.using('k', { ttl: 1000 }, 'not a function')), TypeError, 'ERR_INVALID_ARG_TYPE', 'fn')
  assertArgumentError(await rejection(locker.acquire('k', { tll: 1000 })), RangeError, 'ERR_INVALID_ARG_VALUE', 'options.tll')
  let thrown = null
  try {
    new Locker(12)
  } catch (error) {
    thrown = error
  }
  assertArgumentError(thrown, TypeError, 'ERR_INVALID_ARG_TYPE', 'target')
})

test('a closed port: LockConnectionError ECONNECTION, without the password', async () => {
  const port = await freePort()
  const password = 'runtime-s3cret'
  const unreachable = new Locker(`redis://:${password}@127.0.0.1:${port}`, { connectTimeout: 2000, commandTimeout: 2000 })
  try {
    const error = await rejection(unreachable.acquire('nowhere', { wait: 0 }))
    assert.ok(error instanceof LockConnectionError, error && error.stack)
    assert.ok(error instanceof LockError)
    assert.equal(error.code, 'ECONNECTION')
    assert.equal(error.key, 'nowhere')
    assert.ok(!error.message.includes(password))
    assert.ok(!inspect(error).includes(password))
    assert.ok(!inspect(unreachable).includes(password))
  } finally {
    await unreachable.close()
  }
})

test('close(): pending waits reject LockConnectionError, later calls too', async () => {
  const closing = new Locker(url)
  await closing.acquire('closing', { ttl: 10000 })
  const waiting = closing.acquire('closing', { wait: 15000 })
  await sleep(50)
  await closing.close()
  assert.ok((await rejection(waiting)) instanceof LockConnectionError)
  const error = await rejection(closing.acquire('after'))
  assert.ok(error instanceof LockConnectionError)
  assert.equal(error.code, 'ECONNECTION')
  await redis.del('closing')
})

test('a locker never closed is left idle: the runtime must still exit (checked by the driver)', async () => {
  const forgotten = new Locker(url)
  const lock = await forgotten.acquire('forgotten', { ttl: 5000 })
  assert.equal(await lock.release(), true)
})

test('the top-level functions and the ESM entry', async () => {
  ironlock.configure(url)
  try {
    const lock = await ironlock.acquire('top', { ttl: 5000 })
    assert.equal(await ironlock.tryAcquire('top'), null)
    await ironlock.extend(lock, 5000)
    assert.equal(await ironlock.release(lock), true)
    assert.equal(await ironlock.using('top', async (signal, inner) => inner.key), 'top')
  } finally {
    await ironlock.close()
  }
  const esmEntry = path.join(packageDir, app('ironlock/package.json').exports['.'].import)
  const esm = await import(pathToFileURL(esmEntry).href)
  assert.equal(esm.Locker, Locker)
  assert.equal(esm.using, ironlock.using)
})

console.log(`# ${runtimeName()} on ${process.platform}-${process.arch}, ironlock from ${packageDir}`)
run({
  async setup() {
    servers = await startRedisSet(3)
    url = servers[0].url
    clients = servers.map((server) => server.client())
    redis = clients[0]
    locker = new Locker(url)
  },
  async teardown() {
    try {
      if (locker) await locker.close()
    } finally {
      await stopAll()
    }
  },
})
