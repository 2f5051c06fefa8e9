'use strict'

// require('ironlock/redlock'): redlock 5's API (as in @sesamecare-oss/redlock) and redlock 4's
// aliases on an ironlock Locker, built from ioredis clients. Behaviours, error mapping, the retry
// settings, and mutual exclusion with the real `redlock` (4) and `@sesamecare-oss/redlock` (5)
// on the same servers and keys, on one Redis and on 3 (Redlock).

const { execFile } = require('node:child_process')
const path = require('node:path')
const { inspect, promisify } = require('node:util')
const Bluebird = require('bluebird')
const IORedis = require('ioredis')
const RedlockV4 = require('redlock')
const { Redlock: RedlockV5 } = require('@sesamecare-oss/redlock')
const { startRedis, startRedisSet, stopAll } = require('../../helpers/redis-server')
const Redlock = require('ironlock/redlock')
const { Redlock: Named, Lock, LockError, ExecutionError, ResourceLockedError } = require('ironlock/redlock')
const { LockBusyError, LockLostError, LockConnectionError, QuorumError, Locker } = require('../../..')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Everything created here that needs closing: shims, redlocks, ioredis clients. */
const opened = []
/**
 * A shim over `clients` that other tests share: at the end only its own connections are closed
 * (`quit()` would quit the shared clients too, as redlock's does); the clients' owners close them.
 */
function shim(clients, settings) {
  const redlock = new Redlock(clients, settings)
  opened.push(() => redlock.locker.close())
  return redlock
}
function ownClient(options) {
  const client = new IORedis({ lazyConnect: true, maxRetriesPerRequest: 1, ...options })
  client.on('error', () => {})
  opened.push(() => client.disconnect())
  return client
}

afterAll(async () => {
  for (const close of opened) await close()
  await stopAll()
})

const errorsOf = (emitter, event) => {
  const seen = []
  emitter.on(event, (error) => seen.push(error))
  return seen
}

test('module shape: the class is the export, with v5 named exports and v4 statics', () => {
  expect(typeof Redlock).toBe('function')
  expect(Named).toBe(Redlock)
  expect(Redlock.default).toBe(Redlock)
  expect(Lock).toBe(Redlock.Lock)
  expect(Redlock.LockError).toBe(LockError)
  expect(new ExecutionError('x', [])).toBeInstanceOf(LockError) // v4 code's instanceof checks hold
  expect(new ExecutionError('x', [])).toMatchObject({ name: 'ExecutionError', message: 'x', attempts: [] })
  expect(new LockError('y', 3)).toMatchObject({ name: 'LockError', message: 'y', attempts: 3 })
  expect(new ResourceLockedError('z')).toMatchObject({ name: 'ResourceLockedError', message: 'z' })
  expect(require('../../../lib/redlock')).toBe(Redlock)
})

test('ESM: the default and the named exports import', async () => {
  const source = `
    import Redlock, { Redlock as Named, Lock, LockError, ExecutionError, ResourceLockedError } from 'ironlock/redlock'
    console.log(JSON.stringify([Named === Redlock, Redlock.Lock === Lock, typeof LockError, typeof ExecutionError, typeof ResourceLockedError]))`
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', source], {
    cwd: path.join(__dirname, '..', '..', '..'),
  })
  expect(JSON.parse(stdout)).toEqual([true, true, 'function', 'function', 'function'])
})

describe('on one Redis', () => {
  let server
  let client // the ioredis client the shim is built from
  let redis // for looking at what was written
  let redlock

  beforeAll(async () => {
    server = await startRedis()
    client = server.client()
    redis = server.client()
  })

  beforeEach(async () => {
    await redis.flushall()
    redlock = shim([client])
  })

  describe('construction', () => {
    test('reads the client\'s connection options and uses its own connection, not the client', async () => {
      const prefixed = ownClient({ host: server.host, port: server.port, keyPrefix: 'app:' })
      const sent = jest.spyOn(prefixed, 'sendCommand')
      const own = shim([prefixed])
      const lock = await own.acquire(['k'], 5000)
      expect(await redis.get('app:k')).toBe(lock.value)
      await lock.release()
      expect(sent).not.toHaveBeenCalled()
      expect(prefixed.status).toBe('wait') // never even connected
    })

    test('settings: redlock\'s defaults, numbers override, anything else is ignored', () => {
      expect(redlock.settings).toEqual({
        driftFactor: 0.01, retryCount: 10, retryDelay: 200, retryJitter: 100, automaticExtensionThreshold: 500, db: 0,
      })
      const custom = shim([client], { retryCount: -1, retryDelay: '5', retryJitter: 0, db: 99 })
      expect(custom.settings).toEqual({
        driftFactor: 0.01, retryCount: -1, retryDelay: 200, retryJitter: 0, automaticExtensionThreshold: 500, db: 0,
      })
      // v4 kept them on the instance
      expect(custom).toMatchObject({ driftFactor: 0.01, retryCount: -1, retryDelay: 200, retryJitter: 0 })
      expect(custom.servers).toEqual([client])
      expect([...custom.clients]).toEqual([client])
      expect(custom.locker).toBeInstanceOf(Locker)
    })

    test('needs at least one client', () => {
      expect(() => new Redlock([])).toThrow('Redlock must be instantiated with at least one redis client.')
      expect(() => new Redlock()).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
      expect(() => new Redlock([42])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('clients[0]') }))
    })

    test('inspect shows neither the clients nor a password', async () => {
      const secured = await startRedis({ password: 'hunter2-secret' })
      const own = shim([secured.client()])
      const lock = await own.acquire(['k'], 5000)
      const shown = inspect(own, { depth: 10 }) + inspect(lock, { depth: 10 })
      expect(shown).not.toContain('hunter2-secret')
      expect(shown).toContain('Redlock')
      await lock.release()
      await secured.stop()
    })
  })

  describe('acquire (v5)', () => {
    test('resolves a Lock: resources, value, attempts, expiration', async () => {
      const started = Date.now()
      const lock = await redlock.acquire(['a', 'b'], 10000)
      expect(lock).toBeInstanceOf(Lock)
      expect(lock.redlock).toBe(redlock)
      expect(lock.resources).toEqual(['a', 'b'])
      expect(await redis.mget('a', 'b')).toEqual([lock.value, lock.value])
      expect(await redis.pttl('a')).toBeGreaterThan(9000)
      // drift = round(0.01 × 10000) + 2 ms, as redlock computes it
      expect(lock.expiration).toBeLessThanOrEqual(Date.now() + 10000 - 102)
      expect(lock.expiration).toBeGreaterThanOrEqual(started + 10000 - 102 - 50)
      expect(lock.attempts).toHaveLength(1)
      const stats = await lock.attempts[0]
      expect(stats).toMatchObject({ membershipSize: 1, quorumSize: 1 })
      expect([...stats.votesFor]).toEqual([client])
      expect(stats.votesAgainst.size).toBe(0)
      expect(typeof lock.fence).toBe('number')
    })

    test('a per-call driftFactor moves the expiration like redlock\'s', async () => {
      const lock = await redlock.acquire(['a'], 10000, { driftFactor: 0.1 })
      expect(lock.expiration).toBeLessThanOrEqual(Date.now() + 10000 - 1002)
      expect(lock.expiration).toBeGreaterThan(Date.now() + 10000 - 1002 - 100)
      expect(lock.settings).toEqual({ driftFactor: 0.1 })
    })

    test('rejects a duration that is not an integer, as redlock does', async () => {
      await expect(redlock.acquire(['a'], 1000.5)).rejects.toThrow('Duration must be an integer value in milliseconds.')
      await expect(redlock.acquire(['a'], 'soon')).rejects.toThrow('Duration must be an integer value in milliseconds.')
    })

    test('busy: ExecutionError with attempts, and ResourceLockedError on the error event', async () => {
      const events = errorsOf(redlock, 'error')
      await redis.set('a', 'someone-else', 'PX', 10000)
      const error = await redlock.acquire(['a'], 1000, { retryCount: 0 }).catch((e) => e)
      expect(error).toBeInstanceOf(ExecutionError)
      expect(error).toBeInstanceOf(LockError)
      expect(error.message).toBe('The operation was unable to achieve a quorum during its retry window.')
      expect(error.cause).toBeInstanceOf(LockBusyError)
      const stats = await error.attempts[0]
      expect(stats.votesFor.size).toBe(0)
      expect(stats.votesAgainst.get(client)).toBeInstanceOf(ResourceLockedError)
      expect(events).toHaveLength(1)
      expect(events[0]).toBeInstanceOf(ResourceLockedError)
      expect(events[0].message).toBe('The operation was applied to: 0 of the 1 requested resources.')
      expect(await redis.get('a')).toBe('someone-else')
    })

    test('several resources are all-or-nothing', async () => {
      await redis.set('b', 'someone-else', 'PX', 10000)
      await expect(redlock.acquire(['a', 'b'], 1000, { retryCount: 0 })).rejects.toThrow(ExecutionError)
      expect(await redis.exists('a')).toBe(0)
    })

    test('acquire(\'key\', ttl) and acquire(r, ttl, callback) are redlock 4 calls', async () => {
      const lock = await redlock.acquire('k', 1000)
      expect(lock.resource).toEqual(['k'])
      expect(lock.attempts).toBe(1)
      await redis.set('busy', 'x', 'PX', 10000)
      await expect(redlock.acquire('busy', 1000, { retryCount: 0 })).rejects.toThrow(LockError)
      await expect(redlock.acquire('busy', 1000, { retryCount: 0 })).rejects.not.toThrow(ExecutionError)
      const viaCallback = await new Promise((resolve, reject) =>
        redlock.acquire(['cb'], 1000, (error, acquired) => (error ? reject(error) : resolve(acquired))))
      expect(viaCallback.attempts).toBe(1)
      expect(await redlock.release(lock)).toBeUndefined() // v4 unlock semantics for a v4 lock
      await viaCallback.unlock()
    })
  })

  describe('retry settings → ironlock wait (no polling)', () => {
    test('retryCount 0 fails at once', async () => {
      await redis.set('a', 'x', 'PX', 10000)
      const started = Date.now()
      await expect(shim([client], { retryCount: 0 }).acquire(['a'], 1000)).rejects.toThrow(ExecutionError)
      expect(Date.now() - started).toBeLessThan(150)
    })

    test('gives up after retryCount waits of retryDelay ± retryJitter ms, one attempt each and a last one', async () => {
      await redis.set('a', 'x', 'PX', 10000)
      const started = Date.now()
      const error = await shim([client], { retryCount: 3, retryDelay: 100, retryJitter: 50 }).acquire(['a'], 1000).catch((e) => e)
      const elapsed = Date.now() - started
      expect(error).toBeInstanceOf(ExecutionError)
      expect(error.attempts).toHaveLength(4)
      expect(elapsed).toBeGreaterThanOrEqual(150)
      expect(elapsed).toBeLessThan(3000)
    })

    test('a release inside the window wakes the waiter at once', async () => {
      const held = await redlock.acquire(['a'], 10000)
      setTimeout(() => held.release(), 100)
      const started = Date.now()
      const lock = await redlock.acquire(['a'], 1000) // default window: 10 × (200 + 50) ms
      expect(Date.now() - started).toBeLessThan(400)
      expect(await redis.get('a')).toBe(lock.value)
    })

    test('retryCount -1 waits as long as it takes; a holder that never releases is outlived', async () => {
      await redis.set('a', 'crashed-holder', 'PX', 700)
      await expect(shim([client], { retryCount: 10, retryDelay: 10, retryJitter: 0 }).acquire(['a'], 1000))
        .rejects.toThrow(ExecutionError)
      const lock = await shim([client], { retryCount: -1, retryDelay: 10, retryJitter: 0 }).acquire(['a'], 1000)
      expect(await redis.get('a')).toBe(lock.value)
    })

    test('per-call settings override the instance\'s', async () => {
      const impatient = shim([client], { retryCount: 0 })
      const held = await impatient.acquire(['a'], 10000)
      setTimeout(() => held.release(), 100)
      const lock = await impatient.acquire(['a'], 1000, { retryCount: -1 })
      expect(await redis.get('a')).toBe(lock.value)
      const v4held = await impatient.lock('b', 10000)
      setTimeout(() => v4held.unlock(), 100)
      const v4lock = await impatient.lockWithOptions('b', 1000, { retryCount: 5 })
      expect(await redis.get('b')).toBe(v4lock.value)
    })
  })

  describe('release (v5)', () => {
    test('resolves { attempts, start } and invalidates the lock', async () => {
      const lock = await redlock.acquire(['a'], 5000)
      const before = Date.now()
      const result = await lock.release()
      expect(result.start).toBeGreaterThanOrEqual(before)
      expect(result.attempts).toHaveLength(1)
      expect((await result.attempts[0]).votesFor.has(client)).toBe(true)
      expect(lock.expiration).toBe(0)
      expect(await redis.exists('a')).toBe(0)
    })

    test('a lock that expired and was taken: ExecutionError, the new holder keeps it', async () => {
      const lock = await redlock.acquire(['a'], 100)
      await sleep(150)
      await redis.set('a', 'next-holder')
      const error = await redlock.release(lock).catch((e) => e)
      expect(error).toBeInstanceOf(ExecutionError)
      expect(error.cause).toBeInstanceOf(LockLostError)
      expect(await redis.get('a')).toBe('next-holder')
    })

    test('a lock given as plain values is released only while its value holds the resources', async () => {
      const lock = await redlock.acquire(['a'], 5000)
      await expect(redlock.release({ resources: ['a'], value: 'someone-else' })).rejects.toThrow(ExecutionError)
      expect(await redis.get('a')).toBe(lock.value)
      await expect(redlock.release({ ...lock })).resolves.toMatchObject({ attempts: [expect.any(Promise)] })
      expect(await redis.exists('a')).toBe(0)
      await expect(redlock.release(null)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' })
      await expect(redlock.release({ resources: ['a'] })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' })
    })
  })

  describe('extend (v5)', () => {
    test('resolves a new Lock and invalidates the old one', async () => {
      const lock = await redlock.acquire(['a'], 1000)
      const extended = await lock.extend(8000)
      expect(extended).toBeInstanceOf(Lock)
      expect(extended).not.toBe(lock)
      expect(extended.value).toBe(lock.value)
      expect(extended.resources).toEqual(['a'])
      expect(lock.expiration).toBe(0)
      expect(extended.expiration).toBeGreaterThan(Date.now() + 7000)
      expect(await redis.pttl('a')).toBeGreaterThan(7000)
      const again = await redlock.extend(extended, 3000)
      expect(await redis.pttl('a')).toBeLessThanOrEqual(3000)
      await again.release()
      expect(await redis.exists('a')).toBe(0)
    })

    test('an expired lock: ExecutionError, without asking Redis', async () => {
      const lock = await redlock.acquire(['a'], 100)
      await sleep(150)
      const error = await lock.extend(1000).catch((e) => e)
      expect(error).toBeInstanceOf(ExecutionError)
      expect(error.message).toBe('Cannot extend an already-expired lock.')
      expect(error.attempts).toEqual([])
    })

    test('a lock taken by someone else: ExecutionError, their key untouched', async () => {
      const lock = await redlock.acquire(['a'], 5000)
      await redis.set('a', 'thief')
      const error = await lock.extend(5000).catch((e) => e)
      expect(error).toBeInstanceOf(ExecutionError)
      expect(error.cause).toBeInstanceOf(LockLostError)
      expect(await redis.get('a')).toBe('thief')
    })

    test('rejects a duration that is not an integer', async () => {
      const lock = await redlock.acquire(['a'], 5000)
      await expect(lock.extend(1.5)).rejects.toThrow('Duration must be an integer value in milliseconds.')
    })
  })

  describe('using (v5)', () => {
    test('runs routine(signal, context) with the lock held, returns its value, releases', async () => {
      const result = await redlock.using(['a', 'b'], 5000, async (signal, context) => {
        expect(signal).toBeInstanceOf(AbortSignal)
        expect(signal.aborted).toBe(false)
        expect(signal.error).toBeUndefined()
        expect(context.extensions).toBe(0)
        expect(context.lock).toBeInstanceOf(Lock)
        expect(context.lock.resources).toEqual(['a', 'b'])
        expect(await redis.mget('a', 'b')).toEqual([context.lock.value, context.lock.value])
        return 'done'
      })
      expect(result).toBe('done')
      expect(await redis.exists('a', 'b')).toBe(0)
    })

    test('using(resources, duration, settings, routine): the settings apply', async () => {
      await redis.set('a', 'x', 'PX', 10000)
      const routine = jest.fn()
      const started = Date.now()
      await expect(redlock.using(['a'], 1000, { retryCount: 0 }, routine)).rejects.toThrow(ExecutionError)
      expect(Date.now() - started).toBeLessThan(150)
      expect(routine).not.toHaveBeenCalled()
    })

    test('keeps the lock past its duration while the routine runs', async () => {
      await redlock.using(['a'], 600, async (signal, context) => {
        await sleep(1500)
        expect(signal.aborted).toBe(false)
        expect(await redis.get('a')).toBe(context.lock.value)
      })
      expect(await redis.exists('a')).toBe(0)
    })

    test('a lost lock aborts the signal; signal.error is an ExecutionError that using rejects with', async () => {
      let seen
      const error = await redlock.using(['a'], 600, async (signal) => {
        await redis.del('a')
        await redis.set('a', 'thief')
        while (!signal.aborted) await sleep(20)
        seen = signal.error
        // the README's pattern
        if (signal.aborted) {
          throw signal.error
        }
      }).catch((e) => e)
      expect(seen).toBeInstanceOf(ExecutionError)
      expect(seen.cause).toBeInstanceOf(LockLostError)
      expect(error).toBe(seen)
      expect(await redis.get('a')).toBe('thief')
    })

    test('a lost lock rejects using even when the routine does not look', async () => {
      const error = await redlock.using(['a'], 600, async () => {
        await redis.set('a', 'thief')
        await sleep(600)
        return 'finished anyway'
      }).catch((e) => e)
      expect(error).toBeInstanceOf(ExecutionError)
    })

    test('the routine\'s own error passes through unchanged', async () => {
      const mine = new LockBusyError('not from the shim', { key: 'x', retryAfter: 1 })
      await expect(redlock.using(['a'], 1000, async () => { throw mine })).rejects.toBe(mine)
      expect(await redis.exists('a')).toBe(0)
    })

    test('validates like redlock: the threshold, the routine', async () => {
      await expect(redlock.using(['a'], 500, async () => {}))
        .rejects.toThrow('A lock `duration` must be at least 100ms greater than the `automaticExtensionThreshold` setting.')
      await expect(redlock.using(['a'], 500, { automaticExtensionThreshold: 100 }, async () => 1)).resolves.toBe(1)
      await expect(redlock.using(['a'], 1000)).rejects.toThrow('INVARIANT: routine is not a function.')
      await expect(redlock.using(['a'], 1000.5, async () => {})).rejects.toThrow('Duration must be an integer')
    })
  })

  describe('redlock 4 API', () => {
    test('lock / lock.extend / lock.unlock with promises', async () => {
      const lock = await redlock.lock('account:1', 1000)
      expect(lock).toBeInstanceOf(Redlock.Lock)
      expect(lock).toMatchObject({ redlock, resource: ['account:1'], attempts: 1, attemptsRemaining: 9 })
      expect(await redis.get('account:1')).toBe(lock.value)
      const extended = await lock.extend(5000)
      expect(extended).toBe(lock) // v4 extends in place
      expect(lock.expiration).toBeGreaterThan(Date.now() + 4000)
      expect(await redis.pttl('account:1')).toBeGreaterThan(4000)
      await expect(lock.unlock()).resolves.toBeUndefined()
      expect(await redis.exists('account:1')).toBe(0)
    })

    test('node-style callbacks', async () => {
      const lock = await new Promise((resolve, reject) =>
        redlock.lock('account:2', 1000, (error, acquired) => (error ? reject(error) : resolve(acquired))))
      const extended = await new Promise((resolve, reject) =>
        lock.extend(3000, (error, same) => (error ? reject(error) : resolve(same))))
      expect(extended).toBe(lock)
      const args = await new Promise((resolve) => lock.unlock((...given) => resolve(given)))
      expect(args).toEqual([null])
      expect(await redis.exists('account:2')).toBe(0)
      const failure = await new Promise((resolve) => redlock.unlock(lock, resolve))
      expect(failure).toBeInstanceOf(LockError)
    })

    test('busy: Redlock.LockError (not an ExecutionError), also through the callback', async () => {
      const impatient = shim([client], { retryCount: 2, retryDelay: 10, retryJitter: 0 })
      await redis.set('account:3', 'x', 'PX', 10000)
      const error = await impatient.lock('account:3', 1000).catch((e) => e)
      expect(error).toBeInstanceOf(LockError)
      expect(error).not.toBeInstanceOf(ExecutionError)
      expect(error.message).toBe('Exceeded 2 attempts to lock the resource "account:3".')
      expect(error.attempts).toBe(3)
      expect(error.cause).toBeInstanceOf(LockBusyError)
      const viaCallback = await new Promise((resolve) => impatient.lock('account:3', 1000, (e) => resolve(e)))
      expect(viaCallback).toBeInstanceOf(LockError)
    })

    test('unlock and extend of an expired lock reject Redlock.LockError', async () => {
      const lock = await redlock.lock('account:4', 100)
      await sleep(150)
      await expect(lock.extend(1000)).rejects.toThrow('Cannot extend lock on resource "account:4" because the lock has already expired.')
      await expect(lock.unlock()).rejects.toThrow('Unable to fully release the lock on resource "account:4".')
    })

    test('extend of a lock taken by someone else rejects Redlock.LockError', async () => {
      const lock = await redlock.lock('account:5', 5000)
      await redis.set('account:5', 'thief')
      const error = await lock.extend(5000).catch((e) => e)
      expect(error).toBeInstanceOf(LockError)
      expect(error.cause).toBeInstanceOf(LockLostError)
      expect(await redis.get('account:5')).toBe('thief')
    })

    test('disposer works with bluebird\'s using', async () => {
      const unlockErrors = []
      const value = await Bluebird.using(redlock.disposer('account:6', 1000, (e) => unlockErrors.push(e)), async (lock) => {
        expect(await redis.get('account:6')).toBe(lock.value)
        return 'inside'
      })
      expect(value).toBe('inside')
      expect(await redis.exists('account:6')).toBe(0)
      expect(unlockErrors).toEqual([])
    })

    test('release and extend on a v4 lock keep v4 semantics', async () => {
      const lock = await redlock.lock(['x', 'y'], 1000)
      expect(lock.resource).toEqual(['x', 'y'])
      expect(await redlock.extend(lock, 4000)).toBe(lock)
      await expect(redlock.release(lock)).resolves.toBeUndefined()
      expect(await redis.exists('x', 'y')).toBe(0)
    })
  })

  describe('quit', () => {
    test('closes the shim\'s connections and quits the ioredis clients it was given, as redlock does', async () => {
      const connected = server.client()
      const own = new Redlock([connected])
      await (await own.acquire(['a'], 1000)).release()
      expect(await connected.ping()).toBe('PONG')
      const done = await new Promise((resolve) => own.quit((...args) => resolve(args)))
      expect(done).toEqual([null, ['OK']]) // the clients' replies, as redlock 4 resolves them
      // QUIT was answered; the client ends as Redis closes the connection (else the test times out).
      if (connected.status !== 'end') await new Promise((resolve) => connected.once('end', resolve))
      await expect(connected.ping()).rejects.toThrow('Connection is closed')
      const error = await own.acquire(['a'], 1000).catch((e) => e)
      expect(error).toBeInstanceOf(ExecutionError)
      expect(error.cause).toBeInstanceOf(LockConnectionError)
      // A lazy client that never connected is closed too; the shared client of the other tests is untouched.
      const lazy = ownClient({ host: server.host, port: server.port })
      await expect(new Redlock([lazy]).quit()).resolves.toHaveLength(1)
      if (lazy.status !== 'end') await new Promise((resolve) => lazy.once('end', resolve))
      expect(await client.ping()).toBe('PONG')
    })

    test('a second quit() settles as redlock\'s does: ioredis decides, the clients being closed already', async () => {
      const outcome = (promise) => promise.then((value) => ['resolved', value], (error) => ['rejected', error.message])
      const ours = new Redlock([server.client()])
      const theirs = new RedlockV4([server.client()])
      expect(await outcome(ours.quit())).toEqual(await outcome(theirs.quit()))
      const [second, theirSecond] = [await outcome(ours.quit()), await outcome(theirs.quit())]
      expect(second).toEqual(theirSecond)
    })
  })

  test('an unreachable Redis: ExecutionError, and both the error and clientError events', async () => {
    const gone = await startRedis()
    const unreachable = ownClient({ host: gone.host, port: gone.port, connectTimeout: 300, commandTimeout: 300 })
    await gone.stop()
    const own = shim([unreachable], { retryCount: 0 })
    const errors = errorsOf(own, 'error')
    const clientErrors = errorsOf(own, 'clientError')
    const error = await own.acquire(['a'], 1000).catch((e) => e)
    expect(error).toBeInstanceOf(ExecutionError)
    expect(error.cause).toBeInstanceOf(LockConnectionError)
    expect((await error.attempts[0]).votesAgainst.get(unreachable)).toBe(error.cause)
    expect(errors).toEqual([error.cause])
    expect(clientErrors).toEqual([error.cause])
    await expect(own.lock('a', 1000)).rejects.toThrow(LockError)
  })
})

// ---------------------------------------------------------------------------------------------
// Interop: the real redlock 4, @sesamecare-oss/redlock (v5) and the shim on the same servers and
// keys never hold a resource at the same time.

/**
 * Runs every party's workers for `ms`: each picks a resource set, locks it, checks that no one
 * else holds any of its resources, holds it a few ms, and releases. A holder counts until it
 * leaves or its lock's `expiration` (redlock's validity time, which every party's Lock carries)
 * passes, whichever is first: a lock outliving its TTL under a stalled event loop is not a
 * failure of mutual exclusion. Resolves the overlaps seen and how many times each party got in.
 */
async function contend(parties, { ms, resourceSets, ttl }) {
  const holders = new Map() // resource -> [{ name, expiration }] holding it right now
  const overlaps = []
  const acquired = Object.fromEntries(parties.map(({ name }) => [name, 0]))
  const deadline = Date.now() + ms
  const worker = async ({ name, lock, unlock }) => {
    while (Date.now() < deadline) {
      const resources = resourceSets[Math.floor(Math.random() * resourceSets.length)]
      let handle
      try {
        handle = await lock(resources, ttl)
      } catch {
        await sleep(5)
        continue
      }
      const me = { name, expiration: handle.expiration }
      for (const resource of resources) {
        const current = (holders.get(resource) ?? []).filter((holder) => holder.expiration > Date.now())
        if (current.length > 0) overlaps.push({ resource, holders: [...current.map((holder) => holder.name), name] })
        holders.set(resource, [...current, me])
      }
      acquired[name] += 1
      await sleep(Math.random() * 5)
      // Out of the critical section before the release is sent.
      for (const resource of resources) holders.set(resource, holders.get(resource).filter((holder) => holder !== me))
      await unlock(handle).catch(() => {})
      await sleep(Math.random() * 5)
    }
  }
  await Promise.all(parties.flatMap((party) => Array.from({ length: party.workers }, () => worker(party))))
  return { overlaps, acquired }
}

/** Polls `read()` until it equals `expected` (or `timeout` ms pass) and resolves its last value. */
async function eventually(read, expected, timeout = 1000) {
  const until = Date.now() + timeout
  for (;;) {
    const value = await read()
    if (JSON.stringify(value) === JSON.stringify(expected) || Date.now() > until) return value
    await sleep(20)
  }
}

function interop(count) {
  describe(`interop with redlock 4 and redlock 5 on ${count === 1 ? 'one Redis' : `${count} nodes`}`, () => {
    let nodes
    let clients
    let realV4
    let realV5

    beforeAll(async () => {
      nodes = await startRedisSet(count)
      clients = nodes.map((node) => node.client())
      // Bounded retries for the real redlocks: an endless one would go on retrying in the
      // background after a failed test. `contend` calls them again when they give up.
      realV4 = new RedlockV4(nodes.map((node) => node.client()), { retryCount: 100, retryDelay: 10, retryJitter: 5 })
      realV4.on('clientError', () => {})
      // And redlock 5 must not retry endlessly anyway: it keeps the nodes it won across its
      // retries and its script refuses a key that exists, even with its own value, so on 3
      // contended nodes an endless acquire can block itself (and everyone) for seconds. A bounded
      // one releases them when it gives up.
      realV5 = new RedlockV5(nodes.map((node) => node.client()), { retryCount: 20, retryDelay: 10, retryJitter: 5 })
    })

    beforeEach(() => Promise.all(clients.map((client) => client.flushall())))

    test('each side refuses what the other holds, and takes it once released', async () => {
      const ours = shim(nodes.map((node) => node.client()), { retryCount: 0 })
      const theirs = new RedlockV4(nodes.map((node) => node.client()), { retryCount: 0 })
      theirs.on('clientError', () => {})
      const mine = await ours.acquire(['order:1'], 5000)
      await expect(theirs.lock('order:1', 5000)).rejects.toThrow(RedlockV4.LockError)
      await mine.release()
      const their = await theirs.lock('order:1', 5000)
      await expect(ours.acquire(['order:1'], 5000)).rejects.toThrow(ExecutionError)
      await expect(ours.lock('order:1', 5000)).rejects.toThrow(LockError)
      await their.unlock()
      await (await ours.acquire(['order:1'], 5000)).release()
    })

    test('never hold a resource at the same time (~2 s of contention, single and multi-resource)', async () => {
      const shimA = shim(nodes.map((node) => node.client()), { retryCount: -1 })
      const shimB = shim(nodes.map((node) => node.client()), { retryCount: 50, retryDelay: 20, retryJitter: 0 })
      const parties = [
        { name: 'redlock 4', workers: 2, lock: (r, ttl) => realV4.lock(r, ttl), unlock: (l) => l.unlock() },
        { name: 'redlock 5', workers: 2, lock: (r, ttl) => realV5.acquire(r, ttl), unlock: (l) => l.release() },
        { name: 'shim v5 API', workers: 2, lock: (r, ttl) => shimA.acquire(r, ttl), unlock: (l) => l.release() },
        { name: 'shim v4 API', workers: 2, lock: (r, ttl) => shimB.lock(r, ttl), unlock: (l) => l.unlock() },
      ]
      const { overlaps, acquired } = await contend(parties, {
        ms: 2000,
        ttl: 300,
        resourceSets: [['stock:1'], ['stock:2'], ['stock:1', 'stock:2']],
      })
      expect(overlaps).toEqual([])
      // Everyone got in. (ironlock waiters are woken at once by ironlock releases, but notice a
      // redlock release only when that lock's TTL ends, so the shim gets in less often.)
      for (const party of parties) expect(acquired[party.name]).toBeGreaterThanOrEqual(1)
      const left = await Promise.all(clients.map((client) => client.exists('stock:1', 'stock:2')))
      expect(left.every((n) => n === 0)).toBe(true)
    })
  })
}

interop(1)
interop(3)

describe('on 3 nodes (Redlock)', () => {
  let nodes
  let clients
  let redis

  beforeAll(async () => {
    nodes = await startRedisSet(3)
    redis = nodes.map((node) => node.client())
  })

  beforeEach(async () => {
    await Promise.all(redis.map((client) => client.flushall()))
    clients = nodes.map((node) => ownClient({ host: node.host, port: node.port, connectTimeout: 500, commandTimeout: 500 }))
  })

  const values = (key) => Promise.all(redis.map((client) => client.get(key)))

  test('the lock is the same key and value on every node; attempts report a quorum of 2 of 3', async () => {
    const redlock = shim(clients)
    const lock = await redlock.acquire(['a'], 5000)
    // It resolves on a majority; the third SET may still be on its way.
    expect((await values('a')).filter((value) => value === lock.value).length).toBeGreaterThanOrEqual(2)
    expect(await eventually(() => values('a'), [lock.value, lock.value, lock.value])).toEqual([lock.value, lock.value, lock.value])
    expect(await lock.attempts[0]).toMatchObject({ membershipSize: 3, quorumSize: 2 })
    await lock.release()
    expect(await eventually(() => values('a'), [null, null, null])).toEqual([null, null, null])
  })

  test('a majority is enough', async () => {
    await redis[2].set('a', 'someone-else', 'PX', 10000)
    const redlock = shim(clients, { retryCount: 0 })
    const lock = await redlock.acquire(['a'], 5000)
    expect(await values('a')).toEqual([lock.value, lock.value, 'someone-else'])
    await lock.release()
  })

  test('held on a majority elsewhere: ExecutionError', async () => {
    await redis[0].set('a', 'someone-else', 'PX', 10000)
    await redis[1].set('a', 'someone-else', 'PX', 10000)
    const redlock = shim(clients, { retryCount: 0 })
    const error = await redlock.acquire(['a'], 5000).catch((e) => e)
    expect(error).toBeInstanceOf(ExecutionError)
    // The minority it won is released (right after the rejection: redlock 5 waits for that first).
    expect(await eventually(() => values('a'), ['someone-else', 'someone-else', null])).toEqual(['someone-else', 'someone-else', null])
    const v4error = await redlock.lock('a', 5000).catch((e) => e)
    expect(v4error).toBeInstanceOf(LockError)
  })

  test('two nodes down: ExecutionError whose votes name the failed clients; error and clientError events', async () => {
    const redlock = shim(clients, { retryCount: 0 })
    const errors = errorsOf(redlock, 'error')
    const clientErrors = errorsOf(redlock, 'clientError')
    await nodes[1].kill()
    await nodes[2].kill()
    try {
      const error = await redlock.acquire(['a'], 5000).catch((e) => e)
      expect(error).toBeInstanceOf(ExecutionError)
      expect(error.cause).toBeInstanceOf(QuorumError)
      const stats = await error.attempts[0]
      expect(stats).toMatchObject({ membershipSize: 3, quorumSize: 2 })
      expect(stats.votesFor.size).toBeLessThan(2)
      for (const dead of [clients[1], clients[2]]) {
        expect(stats.votesAgainst.get(dead)).toBeInstanceOf(Error)
        expect(stats.votesAgainst.get(dead).message).toContain(`${nodes[clients.indexOf(dead)].port}`)
      }
      expect(errors.length).toBeGreaterThanOrEqual(2)
      expect(clientErrors.length).toBeGreaterThanOrEqual(2)
      await expect(redlock.lock('a', 5000)).rejects.toThrow(LockError)
    } finally {
      await nodes[1].restart()
      await nodes[2].restart()
    }
    const lock = await redlock.acquire(['b'], 5000)
    await lock.release()
  })

  test('one node down: still locks and using still runs', async () => {
    const redlock = shim(clients, { retryCount: 0 })
    await nodes[2].kill()
    try {
      const lock = await redlock.acquire(['a'], 5000)
      expect(await redis[0].get('a')).toBe(lock.value)
      expect(await redis[1].get('a')).toBe(lock.value)
      await lock.release()
      expect(await redlock.using(['b'], 1000, async () => 'ran')).toBe('ran')
    } finally {
      await nodes[2].restart()
    }
  })
})
