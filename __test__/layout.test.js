'use strict'

// The batch layout between lib/dispatch.js and the binding is declared once, in
// src/binding/layout.rs, and exported by the binding: the JS layer uses those exports, not copies.

const { binding } = require('../lib/native')
const { Dispatcher, Status, Kind, Flags } = require('../lib/dispatch')
const { fromNative, LockBusyError, LockLostError } = require('../lib/errors')

test('the dispatcher uses the enums the binding exports', () => {
  expect(Status).toBe(binding.CompletionStatus)
  expect(Kind).toBe(binding.RequestKind)
  expect(Flags).toBe(binding.AcquireFlag)
  expect(Number.isInteger(binding.REQUEST_FIELDS)).toBe(true)
  expect(Number.isInteger(binding.COMPLETION_FIELDS)).toBe(true)
})

test('failures arrive as structured values, beside the tokens of acquired locks, in completion order', () => {
  const dispatch = new Dispatcher()
  const settled = []
  const record = (name) => ({
    resolve: (status, id, fence, expiresAt, token) => settled.push([name, token]),
    reject: (failure) => settled.push([name, fromNative(failure)]),
  })
  const acquired = dispatch.start(record('acquired'))
  const busy = dispatch.start(record('busy'))
  const lost = []
  dispatch.watch(7, (error) => lost.push(error))
  const F = binding.COMPLETION_FIELDS
  const numbers = new Float64Array(3 * F)
  numbers.set([0, Status.Lost, 7, 0, 0], 0)
  numbers.set([busy, Status.Failed, 0, 0, 0], F)
  numbers.set([acquired, Status.Acquired, 1, 2, 3], 2 * F)
  dispatch.onComplete(numbers, ['token'], [
    { code: 'ELOCKLOST', key: 'k', message: 'lost' },
    { code: 'ELOCKBUSY', key: 'b', message: 'busy', retryAfter: 5 },
  ])
  expect(lost).toHaveLength(1)
  expect(lost[0]).toBeInstanceOf(LockLostError)
  expect(settled[0][0]).toBe('busy')
  expect(settled[0][1]).toBeInstanceOf(LockBusyError)
  expect(settled[0][1].retryAfter).toBe(5)
  expect(settled[1]).toEqual(['acquired', 'token'])
  dispatch.close({ code: 'ECONNECTION' })
})
