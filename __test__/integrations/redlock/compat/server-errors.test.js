'use strict'

// A resource whose key holds another type of value (a set, a hash) is no lock anyone can hold: the
// server answers every attempt with an error. As redlock does, every attempt fails with it, each
// server's error is emitted as `clientError` (v4) and `error` (v5) once per attempt, and the
// retries run out; the cause is ironlock's typed error, naming the key and the type it found.

const { startRedisSet, stopAll } = require('../../../helpers/redis-server')
const Redlock = require('ironlock/redlock')
const { LockError, ExecutionError } = Redlock

const QUICK = { retryCount: 2, retryDelay: 50, retryJitter: 10 }
const opened = []

afterAll(async () => {
  for (const redlock of opened) await redlock.locker.close()
  await stopAll()
})

describe.each([1, 3])('on %i server(s)', (count) => {
  let clients
  let redlock
  let clientErrors
  let errors

  beforeAll(async () => {
    clients = (await startRedisSet(count)).map((server) => server.client())
  })

  beforeEach(async () => {
    await Promise.all(clients.map((client) => client.flushall()))
    await Promise.all(clients.map((client) => client.sadd('a-set', 'member')))
    redlock = new Redlock(clients, QUICK)
    opened.push(redlock)
    clientErrors = []
    errors = []
    redlock.on('clientError', (error) => clientErrors.push(error))
    redlock.on('error', (error) => errors.push(error))
  })

  const expectTypeError = (error) => expect(error).toMatchObject({
    code: 'EKEYTYPE',
    key: 'a-set',
    message: expect.stringMatching(/"a-set".*\bset\b/),
  })

  test('v4 lock(): LockError after every attempt, a clientError per attempt per server', async () => {
    const error = await redlock.lock('a-set', 1000).catch((e) => e)
    expect(error).toBeInstanceOf(LockError)
    expect(error.attempts).toBe(3)
    expectTypeError(error.cause)
    expect(clientErrors).toHaveLength(3 * count)
    for (const each of clientErrors) expectTypeError(each)
  })

  test('v5 acquire(): ExecutionError, every attempt with every server voting against with its error', async () => {
    const error = await redlock.acquire(['a-set', 'free'], 1000).catch((e) => e)
    expect(error).toBeInstanceOf(ExecutionError)
    expect(error.attempts).toHaveLength(3)
    for (const stats of await Promise.all(error.attempts)) {
      expect([...stats.votesAgainst.keys()]).toEqual(clients)
      for (const vote of stats.votesAgainst.values()) expectTypeError(vote)
    }
    expect(errors).toHaveLength(3 * count)
    expect(clientErrors).toHaveLength(3 * count)
    expect(await clients[0].exists('free')).toBe(0) // all or nothing
  })

  test('using(): the routine never runs', async () => {
    const routine = jest.fn()
    await expect(redlock.using(['a-set'], 1000, routine)).rejects.toThrow(ExecutionError)
    expect(routine).not.toHaveBeenCalled()
  })
})
