'use strict'

// The dispatcher's operation ids (lib/dispatch.js): slots reused through a free list, with a count
// of reuses so a completion for an earlier use of a slot never settles the current one.

const { Dispatcher, Status, RequestAt, CompletionAt, REQUEST_FIELDS, COMPLETION_FIELDS } = require('../../lib/dispatch')
const { fromNative, LockError } = require('../../lib/errors')

/** A completion batch in the layout of `onComplete`: one `Done` per op, `released` 1 or 0. */
function done(...ops) {
  const numbers = new Float64Array(ops.length * COMPLETION_FIELDS)
  ops.forEach(([op, released], index) => {
    const at = index * COMPLETION_FIELDS
    numbers[at + CompletionAt.Op] = op
    numbers[at + CompletionAt.Status] = Status.Done
    numbers[at + CompletionAt.Released] = released
  })
  return numbers
}

function recorder() {
  const settled = []
  return {
    settled,
    record: (name) => ({
      resolve: (completion) => settled.push([name, completion.released]),
      reject: () => settled.push([name, 'rejected']),
    }),
  }
}

test('a finished slot is reused, and a late completion for its earlier use is ignored', () => {
  const dispatch = new Dispatcher()
  const { settled, record } = recorder()
  const first = dispatch.start(record('first'))
  dispatch.onComplete(done([first, 1]), [])
  const second = dispatch.start(record('second'))
  expect(second % 2 ** 20).toBe(first % 2 ** 20)
  expect(second).not.toBe(first)
  dispatch.onComplete(done([first, 0], [second, 0]), [])
  expect(settled).toEqual([['first', true], ['second', false]])
  dispatch.close({ code: 'ECONNECTION' })
})

test('op 0 (a release nobody waits for) never settles anything, and close() rejects what is pending', () => {
  const dispatch = new Dispatcher()
  const { settled, record } = recorder()
  const ops = [dispatch.start(record('a')), dispatch.start(record('b')), dispatch.start(record('c'))]
  expect(new Set(ops).size).toBe(3)
  expect(ops).not.toContain(0)
  dispatch.onComplete(done([0, 1], [ops[1], 1]), [])
  dispatch.close({ code: 'ECONNECTION' })
  expect(settled).toEqual([['b', true], ['a', 'rejected'], ['c', 'rejected']])
})

test('ids stay below 2^32 (the native side reads them as u32) through many reuses', () => {
  const dispatch = new Dispatcher()
  const { record } = recorder()
  let highest = 0
  for (let use = 0; use < 5000; use++) {
    const op = dispatch.start(record('x'))
    highest = Math.max(highest, op)
    dispatch.onComplete(done([op, 0]), [])
  }
  expect(highest).toBeLessThan(2 ** 32)
  expect(dispatch.pendingCount).toBe(0)
  dispatch.close({ code: 'ECONNECTION' })
})

// A request the native side cannot take (a key that is not a string: validation should have
// stopped it) must fail alone. `submit` converts its arguments before doing anything, so a refused
// batch was not started at all and may go again request by request.
describe('a batch the native side refuses', () => {
  /** A native stub that refuses any batch with a key that is not a string, like napi does. */
  function refusingNative() {
    const taken = []
    return {
      taken,
      submit(numbers, keys) {
        if (keys.some((key) => typeof key !== 'string')) {
          const error = new Error('Failed to convert JavaScript value `Undefined` into rust type `String`')
          error.code = 'StringExpected'
          throw error
        }
        for (let at = 0; at < numbers.length; at += REQUEST_FIELDS) taken.push(numbers[at + RequestAt.Op])
        return keys.length > 0 ? Buffer.from(keys.join(',')) : null
      },
    }
  }

  function recordOf(settled, name) {
    return { resolve: () => settled.push([name, 'resolved']), reject: (failure) => settled.push([name, failure]) }
  }

  test('goes again one request at a time: only the refused one fails, with a LockError', () => {
    const dispatch = new Dispatcher()
    const native = refusingNative()
    dispatch.native = native
    const settled = []
    const before = dispatch.start(recordOf(settled, 'before'))
    const bad = dispatch.start(recordOf(settled, 'bad'))
    const release = dispatch.start(recordOf(settled, 'release'))
    const after = dispatch.start(recordOf(settled, 'after'))
    dispatch.acquire(before, ['a', 'b'], 1000, 0, 0)
    dispatch.acquire(bad, ['x', undefined, 'y'], 1000, 0, 0)
    dispatch.release(release, 7)
    dispatch.acquire(after, ['c'], 1000, 0, 0)
    expect(() => dispatch.flush()).not.toThrow()
    expect(native.taken).toEqual([before, release, after])
    expect(settled.map(([name]) => name)).toEqual(['bad'])
    const error = fromNative(settled[0][1])
    expect(error).toBeInstanceOf(LockError)
    expect(error.key).toBe('x')
    expect(error.message).toMatch(/internal error/)
    expect(error.cause.message).toMatch(/rust type `String`/)
    expect(dispatch.pendingCount).toBe(3)
    dispatch.close({ code: 'ECONNECTION' })
  })

  test('the requests that went through still reach the wire, in order', () => {
    const dispatch = new Dispatcher()
    dispatch.native = refusingNative()
    const sent = []
    dispatch.wire = { ready: true, send: (bytes) => sent.push(bytes.toString()), open() {} }
    const settled = []
    const ops = ['one', 'bad', 'two'].map((name) => dispatch.start(recordOf(settled, name)))
    dispatch.acquire(ops[0], ['k1'], 1000, 0, 0)
    dispatch.acquire(ops[1], [undefined], 1000, 0, 0)
    dispatch.acquire(ops[2], ['k2'], 1000, 0, 0)
    dispatch.flush()
    expect(sent.join('|')).toBe('k1|k2')
    expect(settled.map(([name]) => name)).toEqual(['bad'])
    dispatch.close({ code: 'ECONNECTION' })
  })

  test('on a Redis Cluster, what each request that went through asks of the masters\' sockets reaches them, in order', () => {
    const dispatch = new Dispatcher()
    const native = refusingNative()
    // A Cluster's submit answers per master's socket: bytes, or whether to open it.
    dispatch.native = { submit: (numbers, keys) => [false, native.submit(numbers, keys), true] }
    const asked = []
    dispatch.wire = { ready: true, send: (writes) => asked.push(writes.map(String).join(',')), open() {} }
    const settled = []
    const ops = ['one', 'bad', 'two'].map((name) => dispatch.start(recordOf(settled, name)))
    dispatch.acquire(ops[0], ['k1'], 1000, 0, 0)
    dispatch.acquire(ops[1], [undefined], 1000, 0, 0)
    dispatch.acquire(ops[2], ['k2'], 1000, 0, 0)
    dispatch.flush()
    expect(asked).toEqual(['false,k1,true', 'false,k2,true'])
    expect(settled.map(([name]) => name)).toEqual(['bad'])
    dispatch.close({ code: 'ECONNECTION' })
  })

  test('in a tick that flushes early, the request that filled the batch does not throw', () => {
    const dispatch = new Dispatcher()
    const native = refusingNative()
    dispatch.native = native
    const settled = []
    const ops = Array.from({ length: 16 }, (_, i) => dispatch.start(recordOf(settled, i)))
    ops.forEach((op, i) => {
      expect(() => dispatch.acquire(op, [i === 3 ? 42 : `k${i}`], 1000, 0, 0)).not.toThrow()
    })
    expect(native.taken).toHaveLength(15)
    expect(settled.map(([name]) => name)).toEqual([3])
    dispatch.close({ code: 'ECONNECTION' })
  })
})
