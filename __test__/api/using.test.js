'use strict'

const { startRedis, stopAll } = require('../helpers/redis-server')
const { whenAborted } = require('../helpers/signals')
const { Locker, LockLostError, LockConnectionError } = require('../..')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it returns true; fails after 2 s. */
async function eventually(check) {
  const deadline = Date.now() + 2000
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not true within 2 s: ${check}`)
    await sleep(10)
  }
}

function blockEventLoop(ms) {
  const until = Date.now() + ms
  while (Date.now() < until) {
    // Busy on purpose: nothing else on the JS thread may run.
  }
}

let server
let redis
let locker

beforeAll(async () => {
  server = await startRedis()
  redis = server.client()
})

beforeEach(async () => {
  await redis.flushall()
  locker = new Locker(server.url)
})

afterEach(() => locker.close())
afterAll(() => stopAll())

test('runs fn with the lock held, returns its value and releases', async () => {
  const result = await locker.using('k', async (signal, lock) => {
    expect(signal.aborted).toBe(false)
    expect(await redis.get('k')).toBe(lock.token)
    return 42
  })
  expect(result).toBe(42)
  expect(await redis.exists('k')).toBe(0)
})

test('accepts options before fn, and sync functions', async () => {
  expect(await locker.using('k', { ttl: 2000 }, () => 'sync')).toBe('sync')
  expect(await redis.exists('k')).toBe(0)
})

test('releases when fn throws, and rejects with fn\'s error', async () => {
  const boom = new Error('boom')
  await expect(locker.using('k', async () => { throw boom })).rejects.toBe(boom)
  expect(await redis.exists('k')).toBe(0)
})

test('keeps the lock while the JS event loop is blocked far past the TTL', async () => {
  let token
  await locker.using('k', { ttl: 1000 }, async (signal, lock) => {
    token = lock.token
    blockEventLoop(3000)
    // The native watchdog extended the lock while JS could not run.
    expect(await redis.get('k')).toBe(token)
    expect(signal.aborted).toBe(false)
  })
  expect(await redis.exists('k')).toBe(0)
})

test('extends for as long as fn runs', async () => {
  await locker.using('k', { ttl: 300 }, async (signal, lock) => {
    await sleep(1200)
    expect(await redis.get('k')).toBe(lock.token)
    expect(await redis.pttl('k')).toBeGreaterThan(0)
  })
})

test('a lock deleted behind its back aborts the signal with LockLostError', async () => {
  let seen
  const run = locker.using('k', { ttl: 600 }, async (signal) => {
    await redis.del('k')
    await whenAborted(signal)
    seen = signal.reason
    return 'finished anyway'
  })
  const error = await run.catch((e) => e)
  expect(error).toBeInstanceOf(LockLostError)
  expect(error.key).toBe('k')
  expect(seen).toBe(error)
})

test('a lock taken by another holder aborts with LockLostError and is not deleted', async () => {
  const run = locker.using('k', { ttl: 600 }, async (signal) => {
    await redis.set('k', 'someone-else', 'PX', 10000)
    await whenAborted(signal)
  })
  await expect(run).rejects.toThrow(LockLostError)
  expect(await redis.get('k')).toBe('someone-else')
})

test('fn\'s own error wins when it threw before the lock was lost', async () => {
  const own = new Error('own')
  await expect(locker.using('k', { ttl: 600 }, async () => { throw own })).rejects.toBe(own)
})

test('a Redis that stops answering: the signal aborts with LockLostError before the lease ends', async () => {
  let abortedAt
  let expiresAt
  const run = locker.using('k', { ttl: 1000 }, async (signal, lock) => {
    expiresAt = lock.expiresAt
    server.pause()
    await whenAborted(signal)
    abortedAt = Date.now()
  })
  try {
    await expect(run).rejects.toThrow(LockLostError)
  } finally {
    server.resume()
  }
  expect(abortedAt).toBeLessThanOrEqual(expiresAt)
})

test('without autoExtend, the signal aborts with LockLostError by the time the lease ends', async () => {
  let abortedAt
  let expiresAt
  const run = locker.using('k', { ttl: 400, autoExtend: false }, async (signal, lock) => {
    expiresAt = lock.expiresAt
    await whenAborted(signal)
    abortedAt = Date.now()
    return 'too late'
  })
  await expect(run).rejects.toThrow(LockLostError)
  expect(abortedAt).toBeLessThanOrEqual(expiresAt)
})

test('close() aborts the signal of every running using() before it resolves', async () => {
  let started
  const running = new Promise((resolve) => { started = resolve })
  const signals = []
  const runs = ['a', 'b'].map((key) => locker.using(key, async (signal) => {
    signals.push(signal)
    if (signals.length === 2) started()
    await whenAborted(signal)
    return 'finished'
  }))
  await running
  await locker.close()
  for (const signal of signals) {
    expect(signal.aborted).toBe(true)
    expect(signal.reason).toBeInstanceOf(LockConnectionError)
  }
  const errors = await Promise.all(runs.map((run) => run.catch((e) => e)))
  expect(errors.map((error) => error.key).sort()).toEqual(['a', 'b'])
  errors.forEach((error, i) => expect(error).toBe(signals.find((signal) => signal.reason.key === error.key).reason))
})

test('a connection killed while fn runs: using resolves with fn\'s value and the lock is released', async () => {
  const result = await locker.using('k', async () => {
    // Every connection of the locker, the JS-thread socket and the native one alike.
    await redis.client('KILL', 'TYPE', 'normal')
    return 'done'
  })
  expect(result).toBe('done')
  expect(await redis.exists('k')).toBe(0)
})

test('a release that fails after fn finished is a process warning, not the caller\'s error', async () => {
  const impatient = new Locker(server.url, { connectTimeout: 300, commandTimeout: 300 })
  // jest's sandboxed `process` does not deliver 'warning' events: watch the call instead.
  const emitWarning = jest.spyOn(process, 'emitWarning').mockImplementation(() => {})
  let warnings
  try {
    const result = await impatient.using('k', async () => {
      server.pause()
      return 'done'
    })
    expect(result).toBe('done')
  } finally {
    server.resume()
    warnings = emitWarning.mock.calls
    emitWarning.mockRestore()
    await impatient.close()
  }
  expect(warnings).toHaveLength(1)
  const [message, options] = warnings[0]
  expect(message).toContain('lock "k" was not released')
  expect(options).toEqual({ type: 'IronlockWarning', code: 'IRONLOCK_RELEASE_FAILED' })
})

describe('never releases before fn settles', () => {
  // Each way fn can end, or be told to stop, while the lock is held: the key stays ours until fn
  // has settled, and only then is released.
  const deferred = () => {
    let resolve
    const promise = new Promise((done) => { resolve = done })
    return { promise, resolve }
  }

  test('fn returning a thenable that is not a Promise', async () => {
    const later = deferred()
    const thenable = { then: (resolve, reject) => later.promise.then(resolve, reject) }
    let token
    const run = locker.using('k', (signal, lock) => {
      token = lock.token
      return thenable
    })
    await sleep(100)
    expect(await redis.get('k')).toBe(token)
    later.resolve('done')
    expect(await run).toBe('done')
    expect(await redis.exists('k')).toBe(0)
  })

  test('fn that throws synchronously', async () => {
    const boom = new Error('boom')
    const release = jest.spyOn(locker, 'release')
    await expect(locker.using('k', () => { throw boom })).rejects.toBe(boom)
    expect(release).toHaveBeenCalledTimes(1)
    expect(await redis.exists('k')).toBe(0)
  })

  test('the wait\'s own signal aborting while fn runs: it only cancels the wait', async () => {
    const controller = new AbortController()
    const run = locker.using('k', { signal: controller.signal }, async (signal, lock) => {
      controller.abort()
      await sleep(100)
      expect(signal.aborted).toBe(false)
      expect(await redis.get('k')).toBe(lock.token)
      return 'finished'
    })
    expect(await run).toBe('finished')
    expect(await redis.exists('k')).toBe(0)
  })

  test('the lock lost while fn runs: no release until fn settles', async () => {
    const release = jest.spyOn(locker, 'release')
    const mayFinish = deferred()
    const run = locker.using('k', { ttl: 600 }, async (signal) => {
      await redis.del('k')
      await whenAborted(signal)
      await mayFinish.promise
    })
    await sleep(100)
    expect(release).not.toHaveBeenCalled()
    mayFinish.resolve()
    await expect(run).rejects.toThrow(LockLostError)
    expect(release).toHaveBeenCalledTimes(1)
  })

  test('close() while fn runs: the lock is left to its TTL, never released under fn', async () => {
    const release = jest.spyOn(locker, 'release')
    const mayFinish = deferred()
    let token
    const run = locker.using('k', { ttl: 5000 }, async (signal, lock) => {
      token = lock.token
      await mayFinish.promise
    })
    await eventually(() => token !== undefined)
    await locker.close()
    expect(await redis.get('k')).toBe(token)
    expect(release).not.toHaveBeenCalled()
    mayFinish.resolve()
    await expect(run).rejects.toThrow(LockConnectionError)
    expect(await redis.get('k')).toBe(token)
  })
})
