'use strict'

// The storage a lock protects, kept on an "observer" redis-server that no test ever faults, so it
// can judge the locks on the faulted ones:
//
// - a critical section register per key (who is inside right now): entering returns who else
//   is, so an overlap is caught the moment it happens and names both holders;
// - a fenced resource per key: a write carries `lock.fence` and is refused unless its fence is
//   above the last accepted one, which is what storage does to stop a holder that lost its lock
//   without knowing (a paused process, a lost Redis) from overwriting a newer holder's work.

const Redis = require('ioredis')

// Atomically: the members already inside, then add this one.
const ENTER = `
local others = redis.call('SMEMBERS', KEYS[1])
redis.call('SADD', KEYS[1], ARGV[1])
return others`

// KEYS: last accepted fence, log of accepted writes, log of refused writes. ARGV: fence, who.
// Fences are compared as numbers (doubles: exact below 2^53, like a JS number).
const WRITE = `
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
local fence = tonumber(ARGV[1])
if fence > last then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('RPUSH', KEYS[2], ARGV[1] .. ' ' .. ARGV[2])
  return {1, tostring(last)}
end
redis.call('RPUSH', KEYS[3], ARGV[1] .. ' ' .. ARGV[2] .. ' last=' .. tostring(last))
return {0, tostring(last)}`

class FencedResource {
  /** @param {string} url the observer's redis:// URL */
  constructor(url) {
    this.redis = new Redis(url, { maxRetriesPerRequest: 3 })
    this.redis.on('error', () => {})
    this.redis.defineCommand('criticalEnter', { numberOfKeys: 1, lua: ENTER })
    this.redis.defineCommand('fencedWrite', { numberOfKeys: 3, lua: WRITE })
  }

  /** Marks `who` inside `key`'s critical section; resolves who else was inside. */
  enter(key, who) {
    return this.redis.criticalEnter(`inside:${key}`, who)
  }

  leave(key, who) {
    return this.redis.srem(`inside:${key}`, who)
  }

  /** Writes under `fence`; resolves `{ accepted, last }` (last: the fence it had to beat). */
  async write(key, fence, who) {
    const [accepted, last] = await this.redis.fencedWrite(
      `fence:last:${key}`, `fence:accepted:${key}`, `fence:refused:${key}`, String(fence), who)
    return { accepted: accepted === 1, last: Number(last) }
  }

  /** Accepted writes in order, as `{ fence, who }`. */
  async accepted(key) {
    const entries = await this.redis.lrange(`fence:accepted:${key}`, 0, -1)
    return entries.map((entry) => {
      const [fence, who] = entry.split(' ')
      return { fence: Number(fence), who }
    })
  }

  /** Refused writes as logged: `'<fence> <who> last=<fence>'`. */
  refused(key) {
    return this.redis.lrange(`fence:refused:${key}`, 0, -1)
  }

  close() {
    this.redis.disconnect()
  }
}

module.exports = { FencedResource }
