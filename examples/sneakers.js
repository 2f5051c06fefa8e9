'use strict'

// The oversold-sneakers scenario: 10 pairs in stock, 100 concurrent orders. Each order reads the
// stock, waits a few ms (a payment call, say), and writes stock − 1. Without a lock, orders read the
// same stock and sell more than there is; with `using`, exactly 10 are sold.
//
//   REDIS_URL=redis://127.0.0.1:6379 npm run example

const Redis = require('ioredis')
const { Locker } = require('..')

const STOCK = 10
const ORDERS = 100
const url = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const stockKey = 'example:sneakers:stock'
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** One order: true when a pair was sold to it. */
async function placeOrder(redis) {
  const stock = Number(await redis.get(stockKey))
  if (stock <= 0) return false
  await sleep(5)
  await redis.set(stockKey, stock - 1)
  return true
}

async function run(label, order) {
  const redis = new Redis(url)
  await redis.set(stockKey, STOCK)
  const results = await Promise.all(Array.from({ length: ORDERS }, () => order(redis)))
  const sold = results.filter(Boolean).length
  const left = Number(await redis.get(stockKey))
  console.log(`${label.padEnd(22)} sold ${String(sold).padStart(3)} of ${STOCK} in stock` +
    `${sold > STOCK ? `  (oversold by ${sold - STOCK})` : ''}; stock left: ${left}`)
  await redis.del(stockKey)
  redis.disconnect()
}

async function main() {
  console.log(`${ORDERS} concurrent orders for ${STOCK} pairs, against ${url.replace(/:[^:@/]*@/, ':***@')}`)
  await run('without a lock:', (redis) => placeOrder(redis))
  const locker = new Locker(url)
  await run('with ironlock using():', (redis) =>
    locker.using('example:sneakers:lock', { ttl: 5000, wait: Infinity }, () => placeOrder(redis)))
  await locker.close()
}

main().catch((error) => {
  console.error(error.message)
  process.exitCode = 1
})
