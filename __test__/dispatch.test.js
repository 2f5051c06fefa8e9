'use strict'

// The dispatcher's operation ids (lib/dispatch.js): slots reused through a free list, with a count
// of reuses so a completion for an earlier use of a slot never settles the current one.

const { Dispatcher, Status } = require('../lib/dispatch')

const FIELDS = 5

/** A completion batch in the layout of `onComplete`: one `Done` per op, carrying `value`. */
function done(...ops) {
  const numbers = new Float64Array(ops.length * FIELDS)
  ops.forEach(([op, value], index) => numbers.set([op, Status.Done, value, 0, 0], index * FIELDS))
  return numbers
}

function recorder() {
  const settled = []
  return { settled, record: (name) => ({ resolve: (status, value) => settled.push([name, value]), reject: () => settled.push([name, 'rejected']) }) }
}

test('a finished slot is reused, and a late completion for its earlier use is ignored', () => {
  const dispatch = new Dispatcher()
  const { settled, record } = recorder()
  const first = dispatch.start(record('first'))
  dispatch.onComplete(done([first, 1]), [])
  const second = dispatch.start(record('second'))
  expect(second % 2 ** 20).toBe(first % 2 ** 20)
  expect(second).not.toBe(first)
  dispatch.onComplete(done([first, 2], [second, 3]), [])
  expect(settled).toEqual([['first', 1], ['second', 3]])
  dispatch.close({ code: 'ECONNECTION' })
})

test('op 0 (a release nobody waits for) never settles anything, and close() rejects what is pending', () => {
  const dispatch = new Dispatcher()
  const { settled, record } = recorder()
  const ops = [dispatch.start(record('a')), dispatch.start(record('b')), dispatch.start(record('c'))]
  expect(new Set(ops).size).toBe(3)
  expect(ops).not.toContain(0)
  dispatch.onComplete(done([0, 9], [ops[1], 1]), [])
  dispatch.close({ code: 'ECONNECTION' })
  expect(settled).toEqual([['b', 1], ['a', 'rejected'], ['c', 'rejected']])
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
