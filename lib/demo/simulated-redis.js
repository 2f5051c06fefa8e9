'use strict'

// The few Redis commands the demo needs, in this process: async, with a little latency so that
// concurrent orders interleave as they would over a network, and a count of every command.

const { setTimeout: sleep } = require('node:timers/promises')

const ROUND_TRIP_MS = 1

class SimulatedRedis {
  #entries = new Map() // key → { value, expiresAt }
  #commands = 0

  /** What the table calls this store. */
  get description() {
    return 'memory:// (the stock and the hand-rolled lock in a simulated Redis in this process)'
  }

  /** ironlock's target next to this store. */
  get lockerTarget() {
    return 'memory://'
  }

  /** memory:// has no command counter, so ironlock's operations are counted by hand: acquire and release. */
  get uncountedLockerCommandsPerOrder() {
    return 2
  }

  async get(key) {
    await this.#roundTrip()
    return this.#live(key)?.value ?? null
  }

  async set(key, value) {
    await this.#roundTrip()
    this.#entries.set(key, { value: String(value), expiresAt: Infinity })
  }

  /** `SET key value NX EX seconds`: true when it was set. */
  async setNxEx(key, value, seconds) {
    await this.#roundTrip()
    if (this.#live(key) !== undefined) return false
    this.#entries.set(key, { value: String(value), expiresAt: Date.now() + seconds * 1000 })
    return true
  }

  async del(key) {
    await this.#roundTrip()
    this.#entries.delete(key)
  }

  /** Deletes every key that starts with `prefix`: the demo's clean-up, not counted. */
  async deleteNamespace(prefix) {
    for (const key of this.#entries.keys()) if (key.startsWith(prefix)) this.#entries.delete(key)
  }

  /** Commands served so far; the demo reads it before and after each run. */
  async commandsProcessed() {
    return this.#commands
  }

  async close() {}

  async #roundTrip() {
    this.#commands += 1
    await sleep(ROUND_TRIP_MS)
  }

  #live(key) {
    const entry = this.#entries.get(key)
    if (entry !== undefined && entry.expiresAt <= Date.now()) {
      this.#entries.delete(key)
      return undefined
    }
    return entry
  }
}

module.exports = { SimulatedRedis }
