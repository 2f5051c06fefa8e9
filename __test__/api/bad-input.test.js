'use strict'

// Bad input that once got past validation: key arrays with holes (they crashed the process and
// stranded the other requests of their tick), malformed targets (errors without a code), keys
// that are not valid UTF-16 (the native side turned distinct keys into one lock), timeouts the
// timers or the native side could not take, and what the fuzzer (torture/fuzz.test.js) found.

const { startRedis, stopAll } = require('../helpers/redis-server')
const { thrownBy } = require('../helpers/thrown')
const { Locker, Lock, configure, close } = require('../..')
const Redlock = require('ironlock/redlock')

let server
const lockers = {}

beforeAll(async () => {
  server = await startRedis()
  lockers.redis = new Locker(server.url)
  lockers.memory = new Locker('memory://')
})

afterAll(async () => {
  await Promise.all(Object.values(lockers).map((locker) => locker.close()))
  await close()
  await stopAll()
})

/** `promise`, or a rejection once it has not settled within `ms`. */
function within(promise, ms = 2000) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

const holes = [[['a', , 'b'], 'key[1]'], [[,], 'key[0]'], [new Array(3), 'key[0]'], [['a', undefined], 'key[1]']]

describe.each(['memory', 'redis'])('key arrays with holes (%s)', (target) => {
  test.each(holes)('%p is a TypeError naming %s, from acquire, tryAcquire and using', async (keys, name) => {
    const locker = lockers[target]
    for (const call of [() => locker.acquire(keys), () => locker.tryAcquire(keys), () => locker.using(keys, () => {})]) {
      const error = await within(call()).catch((e) => e)
      expect(error).toBeInstanceOf(TypeError)
      expect(error.code).toBe('ERR_INVALID_ARG_TYPE')
      expect(error.message).toContain(`"${name}"`)
    }
  })

  test('a valid acquire in the same tick as a key array with holes still gets its lock', async () => {
    const locker = lockers[target]
    const bad = locker.acquire(['a', , 'b'])
    const good = locker.acquire(`same-tick-${target}`)
    const after = locker.tryAcquire(`same-tick-after-${target}`)
    await expect(within(bad)).rejects.toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
    const lock = await within(good)
    expect(lock).toBeInstanceOf(Lock)
    expect(await lock.release()).toBe(true)
    expect(await (await within(after)).release()).toBe(true)
  })
})

describe('malformed targets are Node-style errors naming the argument', () => {
  const url = 'redis://127.0.0.1:1'
  const cases = [
    ['a bad percent-encoding in the password', 'redis://:%ZZx@127.0.0.1:1', RangeError, 'ERR_INVALID_ARG_VALUE', 'target'],
    ['a bad percent-encoding in the user name', 'redis://us%ZZer:pw@127.0.0.1:1', RangeError, 'ERR_INVALID_ARG_VALUE', 'target'],
    ['a bad percent-encoding in one Redlock node', [url, 'redis://:%E0%A4%A@127.0.0.1:2'], RangeError, 'ERR_INVALID_ARG_VALUE', 'target[1]'],
    ['an array of holes', new Array(3), TypeError, 'ERR_INVALID_ARG_TYPE', 'target[0]'],
    ['a hole between Redlock nodes', [url, , url], TypeError, 'ERR_INVALID_ARG_TYPE', 'target[1]'],
    ['undefined after a Redlock node', [url, undefined], TypeError, 'ERR_INVALID_ARG_TYPE', 'target[1]'],
    ['null as a Redlock node', [null, url], TypeError, 'ERR_INVALID_ARG_TYPE', 'target[0]'],
    // The native side took the db as a u32, so 2^32 quietly became db 0; SELECT takes an i32.
    ['a db past 2^31 - 1', { host: '127.0.0.1', port: 1, db: 2 ** 32 }, RangeError, 'ERR_INVALID_ARG_VALUE', 'target.db'],
    ['a db past 2^31 - 1 in a URL', 'redis://127.0.0.1:1/4294967296', RangeError, 'ERR_INVALID_ARG_VALUE', 'target database'],
  ]

  test.each(cases)('%s: from new Locker() and configure()', (_, target, ErrorClass, code, name) => {
    for (const construct of [() => new Locker(target), () => configure(target)]) {
      const error = thrownBy(construct)
      expect(error).toBeInstanceOf(ErrorClass)
      expect(error.code).toBe(code)
      expect(error.message).toContain(`${name}`)
      expect(error.message).not.toMatch(/ZZx|pw@/)
    }
  })

  test('the redlock shim: bad clients are TypeErrors naming the client', () => {
    const client = server.client()
    for (const [clients, name] of [[new Array(3), 'clients[0]'], [[client, , client], 'clients[1]'], [[client, null], 'clients[1]'], [['redis://127.0.0.1:1'], 'clients[0]']]) {
      const error = thrownBy(() => new Redlock(clients))
      expect(error).toBeInstanceOf(TypeError)
      expect(error.code).toBe('ERR_INVALID_ARG_TYPE')
      expect(error.message).toContain(name)
    }
  })
})

describe.each(['memory', 'redis'])('keys that are not valid UTF-16 (%s)', (target) => {
  const cases = [
    ['a lone high surrogate', '\uD800', 'key'],
    ['a lone low surrogate', '\uDFFF', 'key'],
    ['a lone surrogate inside a key', 'order:\uDBFF:1', 'key'],
    ['a swapped pair', '\uDE00\uD83D', 'key'],
    ['a lone surrogate in a key array', ['fine', 'a\uD800'], 'key[1]'],
  ]

  test.each(cases)('%s is a RangeError naming the argument', async (_, keys, name) => {
    const locker = lockers[target]
    for (const call of [() => locker.acquire(keys), () => locker.tryAcquire(keys), () => locker.using(keys, () => {})]) {
      const error = await within(call()).catch((e) => e)
      expect(error).toBeInstanceOf(RangeError)
      expect(error.code).toBe('ERR_INVALID_ARG_VALUE')
      expect(error.message).toContain(`'${name}'`)
    }
  })

  test('\\uD800 and \\uDFFF are no longer one lock, and a well-formed pair still works', async () => {
    const locker = lockers[target]
    await expect(locker.acquire('\uD800')).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' })
    await expect(locker.acquire('\uDFFF')).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' })
    const emoji = await locker.acquire(`\uD83D\uDE00-${target}`)
    expect(emoji.key).toBe(`\uD83D\uDE00-${target}`)
    const replacement = await locker.tryAcquire(`\uFFFD-${target}`)
    expect(replacement).not.toBeNull()
    expect(await emoji.release()).toBe(true)
    expect(await replacement.release()).toBe(true)
  })
})

describe('the key prefix and the memory:// store name get the same check', () => {
  test.each([
    ['a memory:// store name', () => new Locker('memory://\uD800'), 'target'],
    ['defaults', () => new Locker('memory://', { keyPrefix: '\uD800' }), 'keyPrefix'],
    ['defaults of a Redis target', () => new Locker('redis://127.0.0.1:1', { keyPrefix: 'app:\uDFFF' }), 'keyPrefix'],
    ['the options-object target', () => new Locker({ host: '127.0.0.1', port: 1, keyPrefix: '\uDC00:' }), 'keyPrefix'],
    ['configure()', () => configure('memory://', { keyPrefix: '\uD800' }), 'keyPrefix'],
  ])('%s', (_, construct, name) => {
    const error = thrownBy(construct)
    expect(error).toBeInstanceOf(RangeError)
    expect(error.code).toBe('ERR_INVALID_ARG_VALUE')
    expect(error.message).toContain(`'${name}'`)
  })
})

test('a timeout longer than setTimeout allows (2^31 ms) does not fire at once on the wire', async () => {
  const stalled = await startRedis()
  const locker = new Locker(stalled.url, { commandTimeout: 2 ** 31 })
  // A one-key cycle first, so that the next acquire goes on the wire.
  expect(await (await locker.acquire('huge-timeout')).release()).toBe(true)
  stalled.pause()
  const acquiring = locker.acquire('huge-timeout').catch((e) => e)
  await new Promise((resolve) => setTimeout(resolve, 200))
  stalled.resume()
  const lock = await within(acquiring, 5000)
  expect(lock).toBeInstanceOf(Lock)
  expect(await lock.release()).toBe(true)
  await locker.close()
  await stalled.stop()
})

test('a timeout of a fraction of a millisecond reaches the native side rounded up, not cut to 0 ms', () => {
  // The native side counts whole ms: `connectTimeout: 0.5` was a 0 ms connect timeout there.
  const { resolveTarget } = require('../../lib/target')
  const { native } = resolveTarget(server.url, { connectTimeout: 0.5, commandTimeout: 1.2 })
  expect(native).toMatchObject({ connectTimeout: 1, commandTimeout: 2 })
})

// Issue 20: '30s' said only "must be of type number"; the unit is what the caller got wrong.
describe('a duration of the wrong type says it is a number of milliseconds', () => {
  test.each([
    ['ttl', () => lockers.memory.acquire('unit', { ttl: '30s' }), 'options.ttl', "Received type string ('30s')"],
    ['wait', () => lockers.memory.tryAcquire('unit', { wait: '10s' }), 'options.wait', "Received type string ('10s')"],
    ['ttl of using', () => lockers.memory.using('unit', { ttl: 30n }, () => {}), 'options.ttl', 'Received type bigint (30)'],
    ['extend', () => lockers.memory.acquire('unit-extend').then((lock) => lock.extend('5s')), 'ttl', "Received type string ('5s')"],
    ['defaults', async () => new Locker('memory://', { ttl: '1m' }), 'defaults.ttl', "Received type string ('1m')"],
    ['connectTimeout', async () => new Locker('memory://', { connectTimeout: '2s' }), 'connectTimeout', "Received type string ('2s')"],
  ])('%s', async (_, call, name, received) => {
    const error = await call().catch((e) => e)
    expect(error).toBeInstanceOf(TypeError)
    expect(error.code).toBe('ERR_INVALID_ARG_TYPE')
    expect(error.message).toBe(`The "${name}" argument must be a number of milliseconds. ${received}`)
  })

  test('out of range, the unit is said too', async () => {
    const error = await lockers.memory.acquire('unit', { ttl: -1 }).catch((e) => e)
    expect(error).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
    expect(error.message).toBe('The value of "options.ttl" is out of range. It must be a number of milliseconds > 0 and finite. Received -1')
  })

  test('a fraction is rounded up to whole milliseconds, the one rule of every duration', () => {
    const { acquireOptions } = require('../../lib/validate')
    const defaults = { ttl: 1, wait: 1, autoExtend: true, replicas: 0, replicasTimeout: 1 }
    expect(acquireOptions({ ttl: 0.2, wait: 1000.01, replicasTimeout: 0.5 }, defaults)).toMatchObject({ ttl: 1, wait: 1001, replicasTimeout: 1 })
    expect(acquireOptions({ wait: Infinity }, defaults)).toMatchObject({ wait: Infinity })
  })
})

describe('replicas and replicasTimeout are checked like every option, naming it', () => {
  test.each([
    [{ replicas: '1' }, 'TypeError', 'ERR_INVALID_ARG_TYPE', 'The "options.replicas" argument must be of type number. Received type string (\'1\')'],
    [{ replicas: 1.5 }, 'RangeError', 'ERR_OUT_OF_RANGE', 'The value of "options.replicas" is out of range. It must be an integer >= 0 and <= 4294967295. Received 1.5'],
    [{ replicas: -1 }, 'RangeError', 'ERR_OUT_OF_RANGE', 'The value of "options.replicas" is out of range. It must be an integer >= 0 and <= 4294967295. Received -1'],
    [{ replicas: Infinity }, 'RangeError', 'ERR_OUT_OF_RANGE', 'The value of "options.replicas" is out of range. It must be an integer >= 0 and <= 4294967295. Received Infinity'],
    // WAIT with a timeout of 0 would block until the replicas answer, however long.
    [{ replicasTimeout: 0 }, 'RangeError', 'ERR_OUT_OF_RANGE', 'The value of "options.replicasTimeout" is out of range. It must be a number of milliseconds > 0 and finite. Received 0'],
    [{ replicasTimeout: Infinity }, 'RangeError', 'ERR_OUT_OF_RANGE', 'The value of "options.replicasTimeout" is out of range. It must be a number of milliseconds > 0 and finite. Received Infinity'],
    [{ replicasTimeout: '1s' }, 'TypeError', 'ERR_INVALID_ARG_TYPE', 'The "options.replicasTimeout" argument must be a number of milliseconds. Received type string (\'1s\')'],
  ])('%p', async (options, name, code, message) => {
    for (const call of [
      () => lockers.redis.acquire('replicas-input', options),
      () => lockers.redis.tryAcquire('replicas-input', options),
      () => lockers.memory.using('replicas-input', options, () => {}),
    ]) {
      const error = await call().catch((e) => e)
      expect(error).toMatchObject({ name, code, message })
    }
    const asDefault = thrownBy(() => new Locker(server.url, options))
    expect(asDefault).toMatchObject({ name, code, message: message.replace('options.', 'defaults.') })
    // Refused before anything was asked of Redis: the key is free.
    const lock = await lockers.redis.tryAcquire('replicas-input')
    expect(lock).not.toBeNull()
    await lock.release()
  })
})

test('without String.prototype.isWellFormed (Node 18), a regular expression does the check', () => {
  const { isWellFormed } = String.prototype
  delete String.prototype.isWellFormed
  try {
    jest.isolateModules(() => {
      const { keysArgument } = require('../../lib/validate')
      expect(() => keysArgument('\uD800')).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' }))
      expect(() => keysArgument(['ok', 'x\uDFFFy'])).toThrow(/'key\[1\]'/)
      expect(() => keysArgument('\uDE00\uD83D')).toThrow(RangeError)
      expect(keysArgument(['\uD83D\uDE00', 'plain', '\uFFFD'])).toEqual(['\uD83D\uDE00', 'plain', '\uFFFD'])
    })
  } finally {
    String.prototype.isWellFormed = isWellFormed
  }
})

test('the redlock shim inherits the key check', async () => {
  const redlock = new Redlock([server.client()])
  await expect(redlock.acquire(['\uD800'], 1000)).rejects.toMatchObject({ name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' })
  await expect(redlock.acquire(['a', , 'b'], 1000)).rejects.toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
  const lock = await redlock.acquire(['\uD83D\uDE00'], 1000)
  await lock.release()
  await redlock.quit()
})

describe('found by the fuzzer', () => {
  test('a signal-like object that cannot remove its listener fails nobody, and its own call settles', async () => {
    for (const locker of Object.values(lockers)) {
      const noRemove = { aborted: false, addEventListener() {} }
      const throwsOnRemove = { aborted: false, addEventListener() {}, removeEventListener() { throw new Error('nope') } }
      const calls = [
        locker.acquire('fake-signal-1', { signal: noRemove }),
        locker.acquire('fake-signal-2', { signal: throwsOnRemove }),
        locker.acquire('fake-signal-neighbour'),
      ]
      for (const lock of await within(Promise.all(calls))) expect(await lock.release()).toBe(true)
    }
  })

  test('a signal-like object whose addEventListener throws: the call rejects with that error, and nothing stays pending', async () => {
    const failure = new Error('addEventListener failed')
    const removed = []
    const signal = { aborted: false, addEventListener() { throw failure }, removeEventListener: (...args) => removed.push(args) }
    const locker = new Locker('memory://')
    await expect(locker.acquire('fake-signal', { signal })).rejects.toBe(failure)
    // A pending operation would keep Node alive until close(), which would then settle it.
    await locker.close()
    expect(removed).toEqual([])
  })

  test('Locks are made by Lockers only; a Lock method or getter on anything else is ERR_INVALID_THIS', async () => {
    expect(() => new Lock(lockers.memory, 1, ['a'], 'token', 1, Date.now() + 1000)).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_ILLEGAL_CONSTRUCTOR' }))
    const lock = await lockers.memory.acquire('brand')
    for (const self of [Object.create(Lock.prototype), new Proxy(lock, {}), {}, undefined]) {
      await expect(Lock.prototype.release.call(self)).rejects.toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_THIS' })
      await expect(Lock.prototype.extend.call(self, 1000)).rejects.toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_THIS' })
    }
    expect(() => Object.create(Lock.prototype).key).toThrow(expect.objectContaining({ code: 'ERR_INVALID_THIS' }))
    expect(await lock.release()).toBe(true)
  })

  test('a Locker method called on something else (e.g. detached) is ERR_INVALID_THIS', async () => {
    const { acquire, tryAcquire, release, extend, using, close: closeDetached } = lockers.memory
    for (const call of [() => acquire('k'), () => tryAcquire('k'), () => release({}), () => extend({}), () => using('k', () => {}), () => closeDetached()]) {
      await expect(call()).rejects.toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_THIS' })
    }
    await expect(Locker.prototype.acquire.call(new Proxy(lockers.memory, {}), 'k')).rejects.toMatchObject({ code: 'ERR_INVALID_THIS' })
  })

  test.each([
    ['an object without a primitive value as db', { db: Object.create(null) }],
    ['a symbol as driftFactor', { driftFactor: Symbol('d') }],
  ])('%s is a Node-style error, not a TypeError from a template literal', (_, target) => {
    const { driftFactor, ...node } = target
    const error = thrownBy(() => new Locker({ host: '127.0.0.1', ...node }, driftFactor === undefined ? undefined : { driftFactor }))
    expect(error.code).toMatch(/^ERR_INVALID_ARG_/)
  })
})

// A typo such as `tll` used to be ignored: the lock got the default 30 s instead (issue 12).
describe('an option name ironlock does not know is ERR_INVALID_ARG_VALUE, naming it and the one meant', () => {
  /** The error of `call` (a throw or a rejection), checked to name `name` and suggest `meant`. */
  async function expectUnknown(call, name, meant) {
    let error
    try {
      error = await within(Promise.resolve(call()).then(() => new Error('did not fail'), (e) => e))
    } catch (thrown) {
      error = thrown
    }
    expect(error).toBeInstanceOf(RangeError)
    expect(error.code).toBe('ERR_INVALID_ARG_VALUE')
    expect(error.message).toContain(`'${name}'`)
    if (meant === undefined) expect(error.message).not.toContain('Did you mean')
    else expect(error.message).toContain(`Did you mean '${meant}'?`)
    return error
  }

  test.each(['memory', 'redis'])('acquire, tryAcquire and using (%s); the key stays free', async (target) => {
    const locker = lockers[target]
    const key = `typo-${target}`
    await expectUnknown(() => locker.acquire(key, { tll: 1000 }), 'options.tll', 'ttl')
    await expectUnknown(() => locker.tryAcquire(key, { wiat: 0 }), 'options.wiat', 'wait')
    await expectUnknown(() => locker.using(key, { autoextend: false }, () => {}), 'options.autoextend', 'autoExtend')
    await expectUnknown(() => locker.acquire(key, { ttl: 1000, retries: 3 }), 'options.retries', undefined)
    const lock = await locker.tryAcquire(key)
    expect(lock).not.toBeNull()
    expect(await lock.release()).toBe(true)
  })

  test('the top-level functions of the default locker', async () => {
    configure('memory://')
    await expectUnknown(() => require('../..').acquire('typo-default', { tll: 1000 }), 'options.tll', 'ttl')
    await expectUnknown(() => require('../..').tryAcquire('typo-default', { sginal: null }), 'options.sginal', 'signal')
    await expectUnknown(() => require('../..').using('typo-default', { tll: 1000 }, () => {}), 'options.tll', 'ttl')
  })

  test('new Locker() and configure() defaults, lock options and connection options alike', async () => {
    for (const construct of [(defaults) => new Locker(server.url, defaults), (defaults) => configure(server.url, defaults)]) {
      await expectUnknown(() => construct({ tll: 1000 }), 'defaults.tll', 'ttl')
      await expectUnknown(() => construct({ connectTimout: 500 }), 'defaults.connectTimout', 'connectTimeout')
      await expectUnknown(() => construct({ keyprefix: 'app:' }), 'defaults.keyprefix', 'keyPrefix')
      // Options of a single call are not defaults.
      await expectUnknown(() => construct({ signal: new AbortController().signal }), 'defaults.signal', undefined)
    }
  })

  test('a target written as options, alone or as a Redlock node; an ioredis client is not checked', async () => {
    const port = server.port
    await expectUnknown(() => new Locker({ host: '127.0.0.1', port, passwrod: 'x' }), 'target.passwrod', 'password')
    await expectUnknown(() => configure({ port, lazyConnect: true }), 'target.lazyConnect', undefined)
    await expectUnknown(() => new Locker([server.url, { port, hots: '127.0.0.1' }]), 'target[1].hots', 'host')
    // An ioredis client's options hold many more names; it keeps working.
    const client = server.client()
    expect(Object.keys(client.options).length).toBeGreaterThan(20)
    const locker = new Locker(client)
    try {
      expect(await (await locker.acquire('typo-ioredis', { ttl: 1000 })).release()).toBe(true)
    } finally {
      await locker.close()
    }
  })

  test('the redlock shim keeps redlock\'s rule: settings it does not know are ignored', async () => {
    const redlock = new Redlock([server.client()], { retryCont: 3, retryCount: 0 })
    expect(redlock.settings.retryCount).toBe(0)
    expect(redlock.settings).not.toHaveProperty('retryCont')
    const lock = await redlock.acquire(['typo-shim'], 1000, { unknownSetting: true })
    await lock.release()
    await redlock.quit()
  })
})
