'use strict'

// Hand-rolled baseline: SET NX PX, sleep 20 ms on failure, compare-and-delete on release.

const { randomUUID } = require('node:crypto')
const { setTimeout: sleep } = require('node:timers/promises')
const { redisClients } = require('./clients')

const SPIN_DELAY_MS = 20
const COMPARE_AND_DELETE = `if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end`

function create ({ urls, cluster, sentinel, maxWaitMs }) {
  // One node, one Cluster client or one Sentinel client: a single SET NX either way.
  const [client] = redisClients({ urls: cluster ? urls : urls.slice(0, 1), cluster, sentinel })
  client.defineCommand('compareAndDelete', { numberOfKeys: 1, lua: COMPARE_AND_DELETE })
  return {
    name: 'nx-spin',
    // `signal` (optional) calls the wait off, as the rolling-migration case does at its window's end.
    async acquire (key, ttlMs, signal) {
      const token = randomUUID()
      const giveUpAt = Date.now() + maxWaitMs
      while (await client.set(key, token, 'PX', ttlMs, 'NX') !== 'OK') {
        if (Date.now() >= giveUpAt) throw new Error(`nx-spin: gave up waiting for ${key}`)
        signal?.throwIfAborted()
        await sleep(SPIN_DELAY_MS, undefined, { signal })
      }
      return { key, token }
    },
    release: ({ key, token }) => client.compareAndDelete(key, token),
    close: () => client.quit()
  }
}

// No Redlock: a quorum is out of scope for the baseline.
module.exports = { name: 'nx-spin', multiNode: false, cluster: true, sentinel: true, create }
