'use strict'

// A tiny order service: one order at a time per SKU, so the stock never goes below zero, however
// many requests (or app instances) sell the same SKU at once.

const ironlock = require('ironlock')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * @param stock a Map of SKU → pairs left (your database, in this example)
 * @param options.locker a Locker, or ironlock itself to use its default locker (the default)
 * @param options.wait ms an order waits while another order of the same SKU runs
 */
function createOrders(stock, { locker = ironlock, wait = 2000 } = {}) {
  return {
    /** Resolves true when a pair was sold, false when the SKU is sold out. */
    place(sku) {
      return locker.using(`sku:${sku}`, { ttl: 5000, wait }, async () => {
        const left = stock.get(sku) ?? 0
        if (left <= 0) return false
        await sleep(5) // the payment: without the lock, every order would read the same stock here
        stock.set(sku, left - 1)
        return true
      })
    },
  }
}

module.exports = { createOrders }
