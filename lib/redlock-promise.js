'use strict'

// redlock 4 returned bluebird promises, and its users call bluebird's methods on them (`.done`,
// `.nodeify`, `.disposer`). This native Promise has those few methods, so bluebird is needed only
// by code that asks for a bluebird disposer, and is then loaded from wherever the application
// installed it.

const { createRequire } = require('node:module')
const path = require('node:path')

let bluebird = null
/** bluebird: from ironlock's location, else from the application's. */
function loadBluebird() {
  if (bluebird !== null) return bluebird
  const places = [
    () => require('bluebird'),
    () => createRequire(path.join(process.cwd(), 'noop.js'))('bluebird'),
    () => require.main.require('bluebird'),
  ]
  for (const place of places) {
    try {
      bluebird = place()
      return bluebird
    } catch {
      // try the next place
    }
  }
  throw new Error('disposer() returns a bluebird disposer and needs the bluebird package: npm install bluebird')
}

class RedlockPromise extends Promise {
  /**
   * bluebird's `done`: like `then`, but ends the chain. A rejection nobody handles is left
   * unhandled, so Node reports it as it reports any other (bluebird would throw it).
   */
  done(onFulfilled, onRejected) {
    void this.then(onFulfilled, onRejected)
  }

  /**
   * Calls a Node-style `callback` when settled (a value of `undefined` as `callback(null)`) and
   * returns this promise, which the callback counts as handling. A throw in the callback is not
   * swallowed: like bluebird, it is thrown again outside the promise chain.
   */
  nodeify(callback) {
    if (typeof callback !== 'function') return this
    const call = (...args) => {
      try {
        callback(...args)
      } catch (error) {
        process.nextTick(() => {
          throw error
        })
      }
    }
    super.then((value) => (value === undefined ? call(null) : call(null, value)), (error) => call(error))
    return this
  }

  asCallback(callback) {
    return this.nodeify(callback)
  }

  /** bluebird's `disposer`, for `Promise.using` (needs the bluebird package). */
  disposer(dispose) {
    return loadBluebird().resolve(this).disposer(dispose)
  }
}

/** `promise` as a RedlockPromise, with `callback` called when it settles (if one is given). */
function legacy(promise, callback) {
  return RedlockPromise.resolve(promise).nodeify(callback)
}

module.exports = { RedlockPromise, legacy }
