'use strict'

// How long one Express middleware's locks are held, for the `Retry-After` of its busy answers
// (lib/express.js). Internal: not part of the public API.

/** Weight of the newest hold in a running mean: recent holds count most, one outlier fades. */
const SMOOTHING = 0.25
/** Keys remembered per middleware; the least recently recorded one is forgotten first. */
const MAX_KEYS = 2000

/** Exponentially weighted mean: `previous` moved `SMOOTHING` of the way towards `sample`. */
function mix(previous, sample) {
  return previous === undefined ? sample : previous + SMOOTHING * (sample - previous)
}

/** The map key of a lock key or an array of keys. */
function keyId(key) {
  return typeof key === 'string' ? key : `\u0000${key.join('\u0000')}`
}

/**
 * Running means of hold durations (ms): one per key for the `maxKeys` keys recorded most
 * recently, and one over every hold, so memory stays bounded whatever keys requests name.
 */
class HoldTimes {
  constructor(maxKeys = MAX_KEYS) {
    this.maxKeys = maxKeys
    this.byKey = new Map() // insertion order = least recently recorded first
    this.overall = undefined
  }

  record(key, ms) {
    const id = keyId(key)
    const mean = mix(this.byKey.get(id), ms)
    this.byKey.delete(id)
    this.byKey.set(id, mean)
    if (this.byKey.size > this.maxKeys) this.byKey.delete(this.byKey.keys().next().value)
    this.overall = mix(this.overall, ms)
  }

  /** The expected hold of `key` in ms: its own mean, else the mean over all keys, else undefined. */
  expected(key) {
    return this.byKey.get(keyId(key)) ?? this.overall
  }

  get size() {
    return this.byKey.size
  }
}

module.exports = { HoldTimes, MAX_KEYS }
