'use strict'

// Unit tests: the locks live in memory://, so they need no Redis and run anywhere.

const { configure, close, acquire, LockBusyError } = require('ironlock')
const { createOrders } = require('./orders')

beforeAll(() => configure('memory://'))
afterAll(() => close())

test('50 concurrent orders for 10 pairs sell exactly 10', async () => {
  const stock = new Map([['sneakers', 10]])
  const orders = createOrders(stock)

  const sold = await Promise.all(Array.from({ length: 50 }, () => orders.place('sneakers')))

  expect(sold.filter(Boolean)).toHaveLength(10)
  expect(stock.get('sneakers')).toBe(0)
})

test('an order gives up with LockBusyError when its SKU stays locked', async () => {
  const stock = new Map([['boots', 1]])
  const orders = createOrders(stock, { wait: 50 })
  const stocktaking = await acquire('sku:boots', { ttl: 5000 })

  await expect(orders.place('boots')).rejects.toBeInstanceOf(LockBusyError)
  expect(stock.get('boots')).toBe(1)

  await stocktaking.release()
  await expect(orders.place('boots')).resolves.toBe(true)
})
