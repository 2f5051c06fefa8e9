'use strict'

const { invalidArgType, outOfRange, invalidArgValue } = require('./errors')

// A lone surrogate becomes U+FFFD on its way to Rust, so distinct keys would share one lock.
// `String.prototype.isWellFormed` is Node 20+. Before it, a regular expression: in unicode mode a
// pair is one code point, so `\p{Surrogate}` matches only a lone surrogate.
const LONE_SURROGATE = /\p{Surrogate}/u
const isWellFormed = typeof String.prototype.isWellFormed === 'function'
  ? (text) => text.isWellFormed()
  : (text) => !LONE_SURROGATE.test(text)

/** `text` if it is valid UTF-16, so that the native side gets exactly the string given. */
function wellFormedString(text, name) {
  if (!isWellFormed(text)) throw invalidArgValue(name, 'must be a valid UTF-16 string (it contains a lone surrogate)')
  return text
}

function keyString(key, name) {
  if (key.length === 0) throw invalidArgValue(name, 'must be a non-empty string. Received \'\'')
  return wellFormedString(key, name)
}

/** A key or an array of keys, as a non-empty array of non-empty strings. */
function keysArgument(key, name = 'key') {
  if (typeof key === 'string') return [keyString(key, name)]
  if (!Array.isArray(key)) throw invalidArgType(name, 'of type string or an array of strings', key)
  const { length } = key
  if (length === 0) throw invalidArgValue(name, 'must not be an empty array')
  // Every index, holes included (forEach and map skip them), each read once: what was checked
  // is what goes to the native side.
  const keys = []
  for (let index = 0; index < length; index++) {
    const each = key[index]
    if (typeof each !== 'string') throw invalidArgType(`${name}[${index}]`, 'of type string', each)
    keys.push(keyString(each, `${name}[${index}]`))
  }
  return keys
}

/**
 * A duration in ms: finite and > 0, or also Infinity / 0 where allowed. The errors say the unit,
 * since '30s' or 30 (meant as seconds) are the usual mistakes.
 */
function durationArgument(value, name, { allowZero = false, allowInfinity = false } = {}) {
  if (typeof value !== 'number') throw invalidArgType(name, 'a number of milliseconds', value)
  if (value === Infinity && allowInfinity) return value
  const valid = Number.isFinite(value) && (allowZero ? value >= 0 : value > 0) && value <= Number.MAX_SAFE_INTEGER
  if (!valid) {
    const range = `a number of milliseconds ${allowZero ? '>= 0' : '> 0'}${allowInfinity ? ' or Infinity' : ' and finite'}`
    throw outOfRange(name, range, value)
  }
  return value
}

/**
 * `ms` as the whole milliseconds the native side takes: the one rounding rule of every duration
 * (ttl, wait, extend's ttl, the timeouts) is up, so a fraction never becomes 0 or a shorter wait.
 */
function wholeMilliseconds(ms) {
  return ms === Infinity ? ms : Math.ceil(ms)
}

function objectArgument(value, name) {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object' || Array.isArray(value)) throw invalidArgType(name, 'of type object', value)
  return value
}

function isAbortSignal(value) {
  return value !== null && typeof value === 'object' &&
    typeof value.aborted === 'boolean' && typeof value.addEventListener === 'function'
}

/** The options of `acquire`, `tryAcquire` and `using`. */
const ACQUIRE_OPTIONS = Object.freeze(['ttl', 'wait', 'signal', 'autoExtend', 'replicas', 'replicasTimeout'])

// The most replicas an acquire may wait for: what the request record's number holds (a u32).
const MAX_REPLICAS = 2 ** 32 - 1

/** A count of replicas: an integer from 0 (wait for none) up. */
function replicasArgument(value, name) {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value)
  if (!Number.isInteger(value) || value < 0 || value > MAX_REPLICAS) {
    throw outOfRange(name, `an integer >= 0 and <= ${MAX_REPLICAS}`, value)
  }
  return value
}

/**
 * `given`, if each of its own names is one of `known`: a typo such as `tll` must not silently
 * become the default. The error names the option and, when one is close, the one meant.
 */
function knownOptions(given, known, name = 'options') {
  for (const field of Object.keys(given)) {
    if (known.includes(field)) continue
    const meant = closest(field, known)
    throw invalidArgValue(`${name}.${field}`, meant === undefined
      ? `is not a known option (known: ${known.join(', ')})`
      : `is not a known option. Did you mean '${meant}'?`)
  }
  return given
}

/** The name of `known` nearest to `field`, if near enough to be a typo of it. */
function closest(field, known) {
  let best
  let bestDistance = Infinity
  for (const name of known) {
    const distance = editDistance(field.toLowerCase(), name.toLowerCase())
    if (distance < bestDistance && distance <= Math.max(1, Math.floor(name.length / 3))) {
      best = name
      bestDistance = distance
    }
  }
  return best
}

/** Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`. */
function editDistance(a, b) {
  if (Math.abs(a.length - b.length) > 3) return Infinity
  const rows = [Array.from({ length: b.length + 1 }, (_, j) => j)]
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      row[j] = Math.min(rows[i - 1][j] + 1, row[j - 1] + 1, rows[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j], rows[i - 2][j - 2] + 1)
    }
    rows.push(row)
  }
  return rows[a.length][b.length]
}

/** Merges `options` over the locker's defaults and checks every field. */
function acquireOptions(options, defaults, name = 'options') {
  const given = knownOptions(objectArgument(options, name), ACQUIRE_OPTIONS, name)
  const ttl = durationArgument(given.ttl ?? defaults.ttl, `${name}.ttl`)
  const wait = durationArgument(given.wait ?? defaults.wait, `${name}.wait`, { allowZero: true, allowInfinity: true })
  const signal = given.signal
  if (signal !== undefined && !isAbortSignal(signal)) throw invalidArgType(`${name}.signal`, 'an instance of AbortSignal', signal)
  const autoExtend = given.autoExtend ?? defaults.autoExtend
  if (typeof autoExtend !== 'boolean') throw invalidArgType(`${name}.autoExtend`, 'of type boolean', autoExtend)
  const replicas = replicasArgument(given.replicas ?? defaults.replicas, `${name}.replicas`)
  // Never 0 nor Infinity: Redis's WAIT with a timeout of 0 blocks until the replicas answer.
  const replicasTimeout = durationArgument(given.replicasTimeout ?? defaults.replicasTimeout, `${name}.replicasTimeout`)
  return {
    ttl: wholeMilliseconds(ttl),
    wait: wholeMilliseconds(wait),
    signal,
    autoExtend,
    replicas,
    replicasTimeout: wholeMilliseconds(replicasTimeout),
  }
}

function functionArgument(fn, name) {
  if (typeof fn !== 'function') throw invalidArgType(name, 'of type function', fn)
  return fn
}

module.exports = {
  keysArgument, wellFormedString, durationArgument, wholeMilliseconds, objectArgument, acquireOptions, functionArgument, knownOptions, ACQUIRE_OPTIONS,
}
