'use strict'

// The contended case's floor: a lock that costs nothing but the round trip no
// distributed lock can skip. Its waiters queue in this process and are woken
// in order, without polling; a release answers, and hands the lock on, once
// the lock's servers answered one PING each (on several masters, once a
// majority answered, as a Redlock release needs). Run in the same case, on the
// same servers, under the same load as the implementations, its wall is what
// the case's ideal (N × hold) cannot show: how long N holds of `sleep(hold)`
// plus one round trip per hand-off take on this machine today.

const Redis = require('ioredis')

const NAME = 'floor (1 RTT)'

/** Acquire/release with the adapters' shape (see adapters/index.js), on `urls`. */
function createFloor ({ urls }) {
  const clients = urls.map((url) => new Redis(url))
  const quorum = Math.floor(clients.length / 2) + 1
  // Per key: its waiters, in order; a key is held while it has an entry.
  const keys = new Map()

  const roundTrip = () => new Promise((resolve, reject) => {
    let answered = 0
    for (const client of clients) {
      client.ping().then(() => { if (++answered === quorum) resolve() }, reject)
    }
  })

  return {
    name: NAME,
    async acquire (key) {
      const waiters = keys.get(key)
      if (!waiters) {
        keys.set(key, [])
        return key
      }
      return new Promise((resolve) => waiters.push(resolve))
    },
    async release (key) {
      await roundTrip()
      const next = keys.get(key).shift()
      if (next) next(key)
      else keys.delete(key)
    },
    async close () {
      await Promise.all(clients.map((client) => client.quit()))
    }
  }
}

/** Runs in the contended case beside the adapters, as a reference rather than a peer. */
module.exports = { name: NAME, reference: true, create: createFloor }
