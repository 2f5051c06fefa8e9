'use strict'

// locker.close() while `using` bodies run: once close() resolves the locker no longer keeps
// those locks alive, so every body must have seen its signal abort by then, and each `using`
// must reject with that reason.

const { startRedis, startRedisSet, stopAll } = require('../helpers/redis-server')
const { now, sleep, within, abortTime, report, describeError } = require('./support/torture')
const { Locker, LockError } = require('../..')

const BODIES = 3

afterAll(() => stopAll())

const targets = {
  'one Redis': async () => (await startRedis()).url,
  'Redlock on 3 nodes': async () => (await startRedisSet(3)).map((node) => node.url),
  'memory://': async () => 'memory://',
}

test.each(Object.keys(targets))('%s: close() aborts the signals of running using bodies before it resolves', async (kind) => {
  const locker = new Locker(await targets[kind](), { connectTimeout: 1000, commandTimeout: 1000 })
  let enter
  let entered = 0
  const allEntered = new Promise((resolve) => { enter = () => { if (++entered === BODIES) resolve() } })
  const bodies = Array.from({ length: BODIES }, (_, i) => {
    const entry = { key: `close:${i}` }
    entry.promise = locker.using(entry.key, { ttl: 2000 }, async (signal) => {
      entry.signal = signal
      enter()
      entry.abortedAt = await abortTime(signal, 5000)
    }).then(
      (value) => { entry.outcome = { value } },
      (error) => { entry.outcome = { error } },
    ).finally(() => { entry.settledAt = now() })
    return entry
  })
  await within(allEntered, 5000, 'the using bodies starting')
  await sleep(50)

  const closeCalledAt = now()
  await within(locker.close(), 5000, 'close()')
  const closedAt = now()
  const atClose = bodies.map((entry) => ({ key: entry.key, aborted: entry.signal.aborted, reason: entry.signal.reason }))
  await within(Promise.all(bodies.map((entry) => entry.promise)), 5000, 'the using calls after close()')

  report(`close() while holding, ${kind}`, {
    closeMs: Math.round(closedAt - closeCalledAt),
    abortedWhenCloseResolved: atClose.map((entry) => entry.aborted),
    reasons: atClose.map((entry) => (entry.reason === undefined ? null : describeError(entry.reason))),
    'signal aborted (ms after close() was called)': bodies.map((entry) => (entry.abortedAt ? Math.round(entry.abortedAt - closeCalledAt) : null)),
    usingOutcomes: bodies.map((entry) => (entry.outcome.error ? describeError(entry.outcome.error) : `resolved ${entry.outcome.value}`)),
  })

  for (const entry of atClose) {
    expect(entry.aborted).toBe(true)
    expect(entry.reason).toBeInstanceOf(LockError)
  }
  // using rejects with the reason its signal carried.
  for (const [i, entry] of bodies.entries()) expect(entry.outcome.error).toBe(atClose[i].reason)
}, 30000)
