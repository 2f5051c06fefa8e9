'use strict'

// `ironlock demo`: the oversold sneakers. 100 concurrent orders for 10 pairs; each order reads the
// stock, pays, and writes stock - 1. One payment is slow (longer than the 1 s lock TTL), which is
// what breaks the classic fixed-value `SET lock 1 NX EX 1` … `DEL lock` pattern.

const { randomUUID } = require('node:crypto')
const { performance } = require('node:perf_hooks')
const { setTimeout: sleep } = require('node:timers/promises')
const { Locker } = require('../locker')
const { SimulatedRedis } = require('./simulated-redis')
const { RedisStore } = require('./redis-store')

const STOCK = 10
const ORDERS = 100
const PAYMENT_MS = 5
const SLOW_PAYMENT_MS = 1200
const LOCK_TTL_SECONDS = 1
const SPIN_MS = 10

/** Counts the orders that entered the read-pay-write section while another was inside. */
class OverlapMeter {
  inside = 0
  overlaps = 0

  async measure(section) {
    this.inside += 1
    if (this.inside > 1) this.overlaps += 1
    try {
      return await section()
    } finally {
      this.inside -= 1
    }
  }
}

/** The payment provider: its first payment of a run is the slow one. */
function paymentProvider() {
  let payments = 0
  return () => sleep((payments += 1) === 1 ? SLOW_PAYMENT_MS : PAYMENT_MS)
}

/** One order: true when it sold a pair. */
async function placeOrder(store, stockKey, pay) {
  const stock = Number(await store.get(stockKey))
  if (stock <= 0) return false
  await pay()
  await store.set(stockKey, stock - 1)
  return true
}

function withoutLock() {
  return {
    label: 'no lock',
    run: (order) => order(),
    explain: ({ overlaps }) => `${overlaps} of ${ORDERS} orders read the stock while another order was still between its read and its write.`,
  }
}

/** The classic broken pattern: one fixed value for every holder, so any holder's DEL frees the lock. */
function fixedValueLock(store, lockKey) {
  let holder = null // the order that took the lock last, as the orders themselves know it
  let foreignDeletes = 0
  return {
    label: `SET NX EX ${LOCK_TTL_SECONDS} + DEL`,
    async run(order, orderId) {
      while (!(await store.setNxEx(lockKey, '1', LOCK_TTL_SECONDS))) await sleep(SPIN_MS)
      holder = orderId
      try {
        return await order()
      } finally {
        if (holder !== orderId && holder !== null) foreignDeletes += 1
        holder = null
        await store.del(lockKey)
      }
    },
    explain: ({ overlaps, sold }) => {
      const deletes = foreignDeletes > 0 ? `, ${foreignDeletes} DEL(s) removed a lock another order held` : ''
      const outcome = sold > STOCK ? `it oversold by ${sold - STOCK}` : 'it did not oversell this time'
      return `the first holder's ${SLOW_PAYMENT_MS} ms payment outlived the ${LOCK_TTL_SECONDS} s TTL: ${overlaps} orders ` +
        `entered while another order was still inside${deletes}; ${outcome}. Waiting meant polling SET NX every ${SPIN_MS} ms.`
    },
  }
}

/** `uncountedCommandsPerOrder`: the locker's commands that the store's counter does not see. */
function ironlockUsing(locker, lockKey, uncountedCommandsPerOrder) {
  return {
    label: 'ironlock using()',
    uncountedCommandsPerOrder,
    run: (order) => locker.using(lockKey, { ttl: LOCK_TTL_SECONDS * 1000, wait: Infinity }, order),
    explain: ({ overlaps }) => `${overlaps === 0 ? 'one order at a time' : `${overlaps} orders overlapped`}, with the same ` +
      `${LOCK_TTL_SECONDS} s TTL: the lock is extended while its holder runs, released only by its token, and a ` +
      'release wakes the next waiter instead of polling.',
  }
}

async function runOneWay(store, way, stockKey) {
  const uncountedCommandsPerOrder = way.uncountedCommandsPerOrder ?? 0
  await store.set(stockKey, STOCK)
  const meter = new OverlapMeter()
  const pay = paymentProvider()
  const commandsBefore = await store.commandsProcessed()
  const started = performance.now()
  const outcomes = await Promise.all(Array.from({ length: ORDERS }, (_, orderId) =>
    way.run(() => meter.measure(() => placeOrder(store, stockKey, pay)), orderId)))
  const wallMs = performance.now() - started
  const commands = (await store.commandsProcessed()) - commandsBefore + uncountedCommandsPerOrder * ORDERS
  const sold = outcomes.filter(Boolean).length
  const result = { label: way.label, sold, oversold: Math.max(0, sold - STOCK), wallMs, commands, overlaps: meter.overlaps }
  return { ...result, estimatedCommands: uncountedCommandsPerOrder > 0, note: way.explain(result) }
}

/**
 * Runs the three ways against `redisUrl`, or in this process when it is undefined, and resolves
 * the report's lines.
 */
async function runDemo({ redisUrl } = {}) {
  const store = redisUrl === undefined ? new SimulatedRedis() : await RedisStore.connect(redisUrl)
  const namespace = `ironlock-demo:${randomUUID()}:`
  const keys = { stock: `${namespace}stock`, handRolledLock: `${namespace}nx-lock` }
  let locker
  try {
    // Under the demo's namespace too, ironlock's fencing counter included, so the demo cleans up
    // every key it made.
    locker = new Locker(store.lockerTarget, { keyPrefix: namespace })
    const ways = [
      withoutLock(),
      fixedValueLock(store, keys.handRolledLock),
      ironlockUsing(locker, 'ironlock', store.uncountedLockerCommandsPerOrder),
    ]
    const results = []
    for (const way of ways) results.push(await runOneWay(store, way, keys.stock))
    return report(store.description, results)
  } finally {
    await locker?.close()
    await store.deleteNamespace(namespace)
    await store.close()
  }
}

function report(description, results) {
  const columns = ['', 'sold', 'oversold', 'wall time', 'Redis commands']
  const rows = results.map((result) => [
    result.label,
    String(result.sold),
    String(result.oversold),
    `${(result.wallMs / 1000).toFixed(2)} s`,
    `${result.commands}${result.estimatedCommands ? '*' : ''}`,
  ])
  const widths = columns.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i].length)))
  const line = (cells) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ')
  const lines = [
    `${ORDERS} concurrent orders for ${STOCK} pairs of sneakers, against ${description}.`,
    `Each order reads the stock, pays (${PAYMENT_MS} ms; the first payment takes ${SLOW_PAYMENT_MS} ms), and writes stock - 1.`,
    '',
    line(columns),
    ...rows.map(line),
    '',
    ...results.map((result) => `${result.label}: ${result.note}`),
  ]
  if (results.some((result) => result.estimatedCommands)) {
    lines.push('* the stock commands, plus ironlock\'s memory:// lock counted as 2 operations per order ' +
      '(acquire and release); run with --redis URL to measure real Redis commands.')
  }
  return lines
}

module.exports = { runDemo }
