'use strict'

// ironlock itself, loaded from the repository root. It may not be built yet;
// the bench then skips it and says why.

let Locker = null
let unavailable = null
try {
  ({ Locker } = require('../..'))
} catch (err) {
  unavailable = err.message.split('\n')[0]
}

function create ({ urls, cluster, sentinel, maxWaitMs }) {
  const locker = new Locker(sentinel ?? (cluster ? { cluster: urls } : urls.length === 1 ? urls[0] : urls))
  return {
    name: 'ironlock',
    acquire: (key, ttlMs) => locker.acquire(key, { ttl: ttlMs, wait: maxWaitMs }),
    release: (lock) => lock.release(),
    close: () => locker.close()
  }
}

module.exports = { name: 'ironlock', multiNode: true, cluster: true, sentinel: true, unavailable, create }
