'use strict'

// Monotonic milliseconds (fractional, ns resolution) since the bench started.
// Subtracting the start keeps the BigInt small enough to convert to a Number exactly.
const start = process.hrtime.bigint()

function nowMs () {
  return Number(process.hrtime.bigint() - start) / 1e6
}

module.exports = { nowMs }
