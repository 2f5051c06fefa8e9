'use strict'

// Integration tests against a real Redis, e.g. the one your CI starts:
//   REDIS_URL=redis://127.0.0.1:6379 npx jest
// Without REDIS_URL they are skipped (and say so), so `npx jest` still passes on a laptop.

const { configure, close, Locker } = require('ironlock')
const { createOrders } = require('./orders')

const { REDIS_URL } = process.env
const describeWithRedis = REDIS_URL ? describe : describe.skip

if (!REDIS_URL) {
  console.warn('orders.redis.test.js: skipped, because REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379).')
}

describeWithRedis('orders against a real Redis', () => {
  // A second app instance: its own Locker, its own connection, the same Redis.
  let otherInstance

  beforeAll(() => {
    configure(REDIS_URL)
    otherInstance = new Locker(REDIS_URL)
  })

  afterAll(() => Promise.all([close(), otherInstance.close()]))

  test('two app instances selling 50 orders for 10 pairs sell exactly 10', async () => {
    const sku = `sneakers-${process.pid}-${Date.now()}` // a fresh key, even on a shared Redis
    const stock = new Map([[sku, 10]]) // the shared database
    const here = createOrders(stock)
    const there = createOrders(stock, { locker: otherInstance })

    const sold = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? here : there).place(sku)))

    expect(sold.filter(Boolean)).toHaveLength(10)
    expect(stock.get(sku)).toBe(0)
  })
})
