'use strict'

const http = require('node:http')
const net = require('node:net')
const express = require('express')
const { startRedis, stopAll } = require('../helpers/redis-server')
const { send: sendTo, startRequest: startRequestTo } = require('../fixtures/http-client')
const { thrownBy } = require('../helpers/thrown')
const ironlock = require('../..')
const { lock, withLock } = require('../../lib/express')

const { Locker, LockBusyError } = ironlock

const LOCK_TTL_MS = 5000
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function deferred() {
  let resolve
  const promise = new Promise((done) => { resolve = done })
  return { promise, resolve }
}

/** Polls `check` until it returns true; fails after `timeoutMs`. */
async function eventually(check, timeoutMs = 2000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not true within ${timeoutMs} ms: ${check}`)
    await sleep(10)
  }
}

let server
let redis
let locker
let otherProcess
let app
let httpServer
let port

const send = (method, path, body) => sendTo(port, method, path, body)
const startRequest = (path) => startRequestTo(port, path)

/** A loopback port that nothing listens on. */
function closedPort() {
  return new Promise((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address()
      probe.close(() => resolve(free))
    })
  })
}

beforeAll(async () => {
  server = await startRedis()
  redis = server.client()
  locker = new Locker(server.url)
  otherProcess = new Locker(server.url)
  app = express()
  app.use(express.json())
  httpServer = http.createServer(app)
  await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve))
  port = httpServer.address().port
})

afterAll(async () => {
  httpServer.closeAllConnections()
  await new Promise((resolve) => httpServer.close(resolve))
  await Promise.all([locker.close(), otherProcess.close(), ironlock.close()])
  await stopAll()
})

beforeEach(async () => {
  await redis.flushall()
  jest.restoreAllMocks()
})

/** Mounts a route with its own path and an error handler behind it; returns the path. */
let routeCount = 0
function route(...handlers) {
  const path = `/route-${++routeCount}`
  app.post(path, ...handlers, (error, req, res, next) => {
    res.status(error.code === 'ECONNECTION' ? 503 : 500).json({ code: error.code ?? null, name: error.name })
  })
  return path
}

test('100 concurrent orders for 10 seats: exactly 10 sold, the other 90 answered 409 with Retry-After', async () => {
  // 10 seats, 10 buyers per seat, all 100 orders sent at once. The lock is per seat and busy
  // answers 409 at once (the default wait: 0). To make "the other 90 get 409" certain rather than
  // likely, each seat's holder keeps its payment pending until every other order has either been
  // answered or entered a handler itself: a buyer can then only have found its seat locked. If
  // the lock let two buyers of a seat in, more than 10 enter, fewer than 90 get 409, and the
  // assertions below fail (the gate still opens, so the test does not hang).
  const SEATS = 10
  const BUYERS_PER_SEAT = 10
  const ORDERS = SEATS * BUYERS_PER_SEAT
  await redis.mset(Object.fromEntries(Array.from({ length: SEATS }, (_, seat) => [`seat:${seat}`, 'free'])))
  const release = jest.spyOn(locker, 'release')
  const everyoneElseAnswered = deferred()
  let entered = 0
  let answered = 0
  const openGateWhenSettled = () => {
    if (entered + answered === ORDERS) everyoneElseAnswered.resolve()
  }

  const path = route(lock((req) => `lock:seat:${req.body.seat}`, { locker, ttl: LOCK_TTL_MS }), async (req, res) => {
    entered += 1
    openGateWhenSettled()
    const seatKey = `seat:${req.body.seat}`
    if ((await redis.get(seatKey)) !== 'free') return res.status(410).end()
    await everyoneElseAnswered.promise // the payment
    await redis.set(seatKey, 'sold')
    res.status(201).json({ seat: req.body.seat, fence: req.lock.fence })
  })

  const responses = await Promise.all(Array.from({ length: ORDERS }, (_, order) =>
    send('POST', path, { seat: order % SEATS }).then((response) => {
      if (response.status === 409) {
        answered += 1
        openGateWhenSettled()
      }
      return response
    })))

  const sold = responses.filter((response) => response.status === 201)
  const busy = responses.filter((response) => response.status === 409)
  expect(sold).toHaveLength(SEATS)
  expect(busy).toHaveLength(ORDERS - SEATS)
  expect(new Set(sold.map((response) => JSON.parse(response.body).seat)).size).toBe(SEATS)
  for (const response of busy) {
    const seconds = Number(response.headers['retry-after'])
    expect(Number.isInteger(seconds)).toBe(true)
    expect(seconds).toBeGreaterThanOrEqual(1)
    expect(seconds).toBeLessThanOrEqual(LOCK_TTL_MS / 1000)
    expect(JSON.parse(response.body).code).toBe('ELOCKBUSY')
  }
  expect(await redis.mget(Array.from({ length: SEATS }, (_, seat) => `seat:${seat}`))).toEqual(Array(SEATS).fill('sold'))
  // Every lock released once, none left behind.
  await eventually(() => release.mock.calls.length === SEATS)
  expect(await redis.keys('lock:seat:*')).toEqual([])
})

test('100 buyers for 10 pairs, retrying after 409: exactly 10 sold, 90 told sold out, never two inside', async () => {
  // One SKU, one lock: whoever finds it busy gets 409 and tries again, until the handler answers
  // 201 (sold) or 410 (sold out). Whatever the interleaving, exactly 10 sell: the handler reads the
  // stock, awaits a payment and writes stock - 1, which oversells without the lock. Real clients
  // would wait Retry-After seconds; these retry after a few ms to keep the test fast.
  const BUYERS = 100
  const STOCK = 10
  await redis.set('stock:sneakers', STOCK)
  const release = jest.spyOn(locker, 'release')
  let inside = 0
  let overlaps = 0
  let entered = 0
  const path = route(lock(() => 'lock:sku:sneakers', { locker, ttl: LOCK_TTL_MS }), async (req, res) => {
    entered += 1
    inside += 1
    if (inside > 1) overlaps += 1
    try {
      const stock = Number(await redis.get('stock:sneakers'))
      if (stock <= 0) return res.status(410).end()
      await sleep(2) // the payment
      await redis.set('stock:sneakers', stock - 1)
      res.status(201).end()
    } finally {
      inside -= 1
    }
  })

  let busyAnswers = 0
  const buy = async () => {
    for (;;) {
      const response = await send('POST', path)
      if (response.status !== 409) return response.status
      busyAnswers += 1
      expect(Number(response.headers['retry-after'])).toBeGreaterThanOrEqual(1)
      await sleep(5 + Math.random() * 20)
    }
  }
  const outcomes = await Promise.all(Array.from({ length: BUYERS }, buy))

  expect(outcomes.filter((status) => status === 201)).toHaveLength(STOCK)
  expect(outcomes.filter((status) => status === 410)).toHaveLength(BUYERS - STOCK)
  expect(overlaps).toBe(0)
  expect(busyAnswers).toBeGreaterThan(0)
  expect(await redis.get('stock:sneakers')).toBe('0')
  await eventually(() => release.mock.calls.length === entered)
})

test('a client that disconnects mid-handler: lockSignal aborts, and the lock stays held until the handler ends the response', async () => {
  // The order handler: the client gives up while the card is being charged. A second attempt at
  // the same order must find the lock busy until the first handler has answered, else two
  // payments for one order run at once.
  const release = jest.spyOn(locker, 'release')
  const inHandler = deferred()
  const clientGone = deferred()
  const finishPayment = deferred()
  const handlerDone = deferred()
  let handlersEntered = 0
  let firstRequest
  const path = route(lock(() => 'lock:order:1', { locker, ttl: LOCK_TTL_MS }), async (req, res) => {
    handlersEntered += 1
    firstRequest = req
    res.once('close', clientGone.resolve)
    inHandler.resolve()
    await finishPayment.promise // the payment, which the client does not wait for
    res.json({ paid: true }) // the client is gone: nothing is sent, but the handler is done
    handlerDone.resolve()
  })

  const request = startRequest(path)
  await inHandler.promise
  const { token } = firstRequest.lock
  request.destroy()

  await clientGone.promise
  await sleep(200)
  expect(await redis.get('lock:order:1')).toBe(token)
  const second = await send('POST', path)
  expect(second.status).toBe(409)
  expect(handlersEntered).toBe(1)
  expect(release).not.toHaveBeenCalled()
  expect(firstRequest.lockSignal.aborted).toBe(true)
  expect(firstRequest.lockSignal.reason).toMatchObject({ name: 'AbortError', code: 'ECLIENTGONE' })
  expect(firstRequest.lockSignal.reason.message).toMatch(/client went away/)

  finishPayment.resolve()
  await handlerDone.promise
  // Released when the handler ended the response, well before its lease (5 s) could lapse.
  await eventually(async () => (await redis.exists('lock:order:1')) === 0)
  expect(release).toHaveBeenCalledTimes(1)
  expect(await release.mock.results[0].value).toBe(true)
  expect((await send('POST', path)).status).toBe(200)
})

test('a handler that never ends the response after its client left holds the lock about one TTL more: no longer extended, the lease lapses', async () => {
  const TTL_MS = 1000
  const release = jest.spyOn(locker, 'release')
  const inHandler = deferred()
  const clientGone = deferred()
  let lockedRequest
  const path = route(lock(() => 'lock:stuck', { locker, ttl: TTL_MS }), (req, res) => {
    lockedRequest = req
    res.once('close', clientGone.resolve)
    inHandler.resolve() // and never answers
  })

  const request = startRequest(path)
  await inHandler.promise
  request.destroy()
  await clientGone.promise
  const goneAt = Date.now()

  // Still held, and counting down: an extension already on its way may land, none after it.
  await sleep(150)
  expect(await redis.get('lock:stuck')).toBe(lockedRequest.lock.token)
  expect(lockedRequest.lockSignal.reason.code).toBe('ECLIENTGONE')
  let previousTtl = await redis.pttl('lock:stuck')
  while (previousTtl > 0) {
    await sleep(50)
    const ttl = await redis.pttl('lock:stuck')
    expect(ttl).toBeLessThanOrEqual(previousTtl)
    previousTtl = ttl
  }
  expect(Date.now() - goneAt).toBeLessThan(TTL_MS + 1500)
  // The request's `using` settled once the lease ended: nothing is left pending.
  await eventually(() => release.mock.calls.length === 1)
  expect(await release.mock.results[0].value).toBe(false)
  expect(lockedRequest.lockSignal.reason.code).toBe('ECLIENTGONE')
})

test('a client that disconnects while queued gives up its place and never takes the lock', async () => {
  const release = jest.spyOn(locker, 'release')
  const handler = jest.fn((req, res) => res.end())
  const path = route(lock(() => 'lock:queued', { locker, wait: Infinity }), handler)
  const holder = await otherProcess.acquire('lock:queued', { ttl: LOCK_TTL_MS })

  const request = startRequest(path)
  await sleep(100) // the request reaches the middleware and waits
  request.destroy()
  await sleep(50)
  await holder.release()

  await sleep(200)
  expect(handler).not.toHaveBeenCalled()
  expect(release).not.toHaveBeenCalled()
  expect(await redis.exists('lock:queued')).toBe(0)
})

test('a request whose client left before the middleware ran takes no lock', async () => {
  const release = jest.spyOn(locker, 'release')
  const reachedLock = deferred()
  const untilClientLeft = (req, res, next) => res.once('close', () => setImmediate(() => {
    next()
    reachedLock.resolve()
  }))
  const handler = jest.fn((req, res) => res.end())
  const path = route(untilClientLeft, lock(() => 'lock:late', { locker }), handler)

  const request = startRequest(path)
  await sleep(50)
  request.destroy()
  await reachedLock.promise
  await sleep(100)
  expect(handler).not.toHaveBeenCalled()
  expect(release).not.toHaveBeenCalled()
  expect(await redis.exists('lock:late')).toBe(0)
})

test('with a wait, a request queues until the holder releases', async () => {
  const path = route(lock(() => 'lock:wait', { locker, wait: 5000 }), (req, res) => res.json({ fence: req.lock.fence }))
  const holder = await otherProcess.acquire('lock:wait', { ttl: LOCK_TTL_MS })
  const pending = send('POST', path)
  await sleep(100)
  await holder.release()
  const response = await pending
  expect(response.status).toBe(200)
  expect(JSON.parse(response.body).fence).toBeGreaterThan(holder.fence)
})

test('onBusy replaces the 409; a throwing onBusy goes to next(err)', async () => {
  const onBusy = jest.fn((req, res, err) => res.status(423).json({ retryAfter: err.retryAfter }))
  const answersLocked = route(lock(() => 'lock:busy', { locker, onBusy }), (req, res) => res.end())
  const throws = route(lock(() => 'lock:busy', { locker, onBusy: async () => { throw new Error('boom') } }), (req, res) => res.end())
  await otherProcess.acquire('lock:busy', { ttl: LOCK_TTL_MS })

  const locked = await send('POST', answersLocked)
  expect(locked.status).toBe(423)
  expect(locked.headers['retry-after']).toBeUndefined()
  expect(JSON.parse(locked.body).retryAfter).toBeGreaterThan(0)
  expect(onBusy.mock.calls[0][2]).toBeInstanceOf(LockBusyError)

  expect((await send('POST', throws)).status).toBe(500)
})

test('Retry-After comes from the hold times seen: 2 s before any, then 1 s for handlers of ~50 ms, never the 30 s TTL', async () => {
  // Default TTL (30 s): before any hold was seen, Retry-After is 2 s (the first burst after a
  // start retries soon); once this route's handlers were seen to hold the lock ~50 ms, it is 1 s,
  // for that key and for a key this process has not seen held yet.
  const holderIn = deferred()
  const holderMayFinish = deferred()
  const path = route(lock((req) => `lock:hold:${req.body.id}`, { locker }), async (req, res) => {
    if (req.body.hold) {
      holderIn.resolve()
      await holderMayFinish.promise
    } else {
      await sleep(50)
    }
    res.end()
  })

  const foreign = await otherProcess.acquire('lock:hold:fresh')
  const beforeAnyHold = await send('POST', path, { id: 'fresh' })
  expect(beforeAnyHold.status).toBe(409)
  expect(beforeAnyHold.headers['retry-after']).toBe('2')
  expect(JSON.parse(beforeAnyHold.body).message).toMatch(/retry in 2 s/)

  for (let round = 0; round < 3; round += 1) expect((await send('POST', path, { id: 'a' })).status).toBe(200)
  const holding = send('POST', path, { id: 'a', hold: true })
  await holderIn.promise
  const busy = await send('POST', path, { id: 'a' })
  expect(busy.status).toBe(409)
  expect(busy.headers['retry-after']).toBe('1')
  expect(JSON.parse(busy.body).message).toMatch(/retry in 1 s/)
  const busyUnseenKey = await send('POST', path, { id: 'fresh' })
  expect(busyUnseenKey.headers['retry-after']).toBe('1')

  holderMayFinish.resolve()
  expect((await holding).status).toBe(200)
  await foreign.release()
})

test('Retry-After never exceeds the holder\'s remaining TTL', async () => {
  const path = route(lock(() => 'lock:short-ttl', { locker }), (req, res) => res.end())
  const holder = await otherProcess.acquire('lock:short-ttl', { ttl: 900 })
  const busy = await send('POST', path)
  expect(busy.status).toBe(409)
  expect(busy.headers['retry-after']).toBe('1') // under 0.9 s left, rounded up; not the 2 s guess
  await holder.release()
})

test('options.retryAfter sets Retry-After: seconds, or a function of the request and the error', async () => {
  const fixed = route(lock(() => 'lock:retry', { locker, retryAfter: 7.2 }), (req, res) => res.end())
  const perRequest = jest.fn((req, err) => (req.headers['x-plan'] === 'pro' ? 0 : Math.ceil(err.retryAfter / 1000) + 1))
  const computed = route(lock(() => 'lock:retry', { locker, retryAfter: perRequest }), (req, res) => res.end())
  const returnsText = route(lock(() => 'lock:retry', { locker, retryAfter: () => '5' }), (req, res) => res.end())
  const throws = route(lock(() => 'lock:retry', { locker, retryAfter: () => { throw new Error('no plan') } }), (req, res) => res.end())
  const holder = await otherProcess.acquire('lock:retry', { ttl: 3000 })

  const fixedAnswer = await send('POST', fixed)
  expect(fixedAnswer.status).toBe(409)
  expect(fixedAnswer.headers['retry-after']).toBe('8')
  expect(JSON.parse(fixedAnswer.body).message).toMatch(/retry in 8 s/)
  expect((await send('POST', computed)).headers['retry-after']).toBe('4') // 3 s left, + 1
  expect(perRequest.mock.calls[0][1]).toBeInstanceOf(LockBusyError)
  const badValue = await send('POST', returnsText)
  expect(badValue.status).toBe(500)
  expect(JSON.parse(badValue.body)).toEqual({ code: 'ERR_INVALID_RETURN_VALUE', name: 'TypeError' })
  expect((await send('POST', throws)).status).toBe(500)
  await holder.release()
})

test('withLock(handler) runs the handler when lock() ran before it, else hands next() an error', async () => {
  const locked = route(lock(() => 'lock:with', { locker }), withLock((req, res) => res.json({ fence: req.lock.fence, signal: req.lockSignal.aborted })))
  const unlocked = route(withLock((req, res) => res.end()))
  const answer = await send('POST', locked)
  expect(answer.status).toBe(200)
  expect(JSON.parse(answer.body)).toEqual({ fence: expect.any(Number), signal: false })
  const forgotten = await send('POST', unlocked)
  expect(forgotten.status).toBe(500)
  expect(JSON.parse(forgotten.body)).toEqual({ code: 'ERR_INVALID_STATE', name: 'Error' })
  expect(() => withLock('handler')).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }))
})

test('the hold-time record keeps at most its cap of keys, forgetting the least recently recorded', () => {
  const { HoldTimes, MAX_KEYS } = require('../../lib/hold-times')
  expect(MAX_KEYS).toBeLessThanOrEqual(5000)
  const holdTimes = new HoldTimes(3)
  holdTimes.record('a', 4000)
  holdTimes.record('b', 100)
  holdTimes.record(['c', 'd'], 100)
  holdTimes.record('a', 4000) // a is now the most recent
  holdTimes.record('e', 100) // b goes
  expect(holdTimes.size).toBe(3)
  expect(holdTimes.expected('a')).toBe(4000)
  expect(holdTimes.expected(['c', 'd'])).toBe(100)
  // A forgotten or unseen key gets the mean over every hold, which moves a quarter of the way per hold.
  expect(holdTimes.expected('b')).toBe(holdTimes.expected('never seen'))
  expect(holdTimes.expected('b')).toBeLessThan(4000)
  expect(new HoldTimes().expected('x')).toBeUndefined()
  for (let key = 0; key < 3 * MAX_KEYS; key += 1) holdTimes.record(`k${key}`, 1)
  expect(holdTimes.size).toBe(3)
})

test('connection errors and a throwing key function go to next(err)', async () => {
  const unreachable = new Locker(`redis://127.0.0.1:${await closedPort()}`, { connectTimeout: 200 })
  try {
    const viaDeadRedis = route(lock(() => 'lock:dead', { locker: unreachable }), (req, res) => res.end())
    const badKey = route(lock(() => { throw new Error('no key') }, { locker }), (req, res) => res.end())
    const notAKey = route(lock(() => 42, { locker }), (req, res) => res.end())

    expect(JSON.parse((await send('POST', viaDeadRedis)).body)).toEqual({ code: 'ECONNECTION', name: 'LockConnectionError' })
    expect((await send('POST', badKey)).status).toBe(500)
    expect(JSON.parse((await send('POST', notAKey)).body).code).toBe('ERR_INVALID_ARG_TYPE')
  } finally {
    await unreachable.close()
  }
})

test('without a locker option, the default locker is looked up per request (configure() after setup works)', async () => {
  const path = route(lock((req) => `lock:default:${req.body.id}`), (req, res) => {
    res.json({ key: req.lock.key, token: req.lock.token, signal: req.lockSignal instanceof AbortSignal })
  })
  ironlock.configure(server.url)
  const response = await send('POST', path, { id: 7 })
  expect(response.status).toBe(200)
  const body = JSON.parse(response.body)
  expect(body).toEqual({ key: 'lock:default:7', token: expect.any(String), signal: true })
  await eventually(async () => (await redis.exists('lock:default:7')) === 0)
})

test('bad arguments throw at setup, with Node-style codes', () => {
  expect(() => lock('sku')).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }))
  expect(() => lock(() => 'k', { ttl: -1 })).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }))
  expect(() => lock(() => 'k', { onBusy: 409 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
  expect(() => lock(() => 'k', { locker: {} })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }))
  expect(() => lock(() => 'k', { signal: new AbortController().signal }))
    .toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }))
  expect(() => lock(() => 'k', { retryAfter: '5' })).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }))
  for (const seconds of [-1, NaN, Infinity]) {
    const error = thrownBy(() => lock(() => 'k', { retryAfter: seconds }))
    expect(error).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
    expect(error.message).toContain('"options.retryAfter"')
  }
})

test('an option name the middleware does not know throws at setup, naming it and the one meant', () => {
  const unknown = (options, name, meant) => {
    const error = thrownBy(() => lock(() => 'k', options))
    expect(error).toBeInstanceOf(RangeError)
    expect(error.code).toBe('ERR_INVALID_ARG_VALUE')
    expect(error.message).toContain(`'${name}'`)
    if (meant === undefined) expect(error.message).not.toContain('Did you mean')
    else expect(error.message).toContain(`Did you mean '${meant}'?`)
  }
  unknown({ tll: 1000 }, 'options.tll', 'ttl')
  unknown({ onbusy: () => {} }, 'options.onbusy', 'onBusy')
  unknown({ lockr: {} }, 'options.lockr', 'locker')
  unknown({ status: 423 }, 'options.status', undefined)
})

test('is exported as ironlock/express', () => {
  expect(require('ironlock/express').lock).toBe(lock)
})
