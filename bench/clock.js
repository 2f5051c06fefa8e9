'use strict'

// Monotonic milliseconds (fractional, ns resolution) since the bench started.
// Subtracting the start keeps the BigInt small enough to convert to a Number exactly.
const start = process.hrtime.bigint()

function nowMs () {
  return Number(process.hrtime.bigint() - start) / 1e6
}

// Milliseconds on a clock that other processes on this machine share: the
// process's start on the wall clock plus monotonic time since. Only for
// comparing times taken in different processes; within one, use nowMs().
function sharedNowMs () {
  return performance.timeOrigin + performance.now()
}

module.exports = { nowMs, sharedNowMs }
