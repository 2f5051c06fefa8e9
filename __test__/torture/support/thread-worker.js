'use strict'

// A worker_threads worker that locks on its own Locker until the test terminates it mid-operation
// (leaks.test.js). Several loops share two keys, so at any moment some acquire, some wait (on
// the release channel), some release. Bounded in cycles like every torture loop.

const { parentPort, workerData } = require('node:worker_threads')
const { Locker } = require('../../..')

const { url, prefix, loops, maxCycles } = workerData
const locker = new Locker(url, { connectTimeout: 1000, commandTimeout: 1000 })
let cycles = 0

async function loop(index) {
  while (cycles < maxCycles) {
    const key = `${prefix}:${index % 2}`
    if (index % 2 === 0) {
      await locker.using(key, { ttl: 2000, wait: 5000 }, () => new Promise((resolve) => setImmediate(resolve)))
    } else {
      const lock = await locker.acquire(key, { ttl: 2000, wait: 5000 })
      await locker.release(lock)
    }
    if (++cycles === loops) parentPort.postMessage('running')
  }
}

Promise.all(Array.from({ length: loops }, (_, index) => loop(index)))
  .then(() => locker.close())
  .then(() => parentPort.postMessage('finished'), (error) => parentPort.postMessage(`failed: ${error.message}`))
