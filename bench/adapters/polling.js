'use strict'

// Retry settings shared by the peers that poll Redis while waiting, so no peer
// wins by sleeping less than another. 10 ms is redis-semaphore's default.
const RETRY_DELAY_MS = 10
// Only the two redlock packages support jitter; it must stay below the delay.
const RETRY_JITTER_MS = 5
// Libraries that count retries instead of time get this many per call...
const RETRIES_PER_CALL = 50

// ...and are called again until maxWaitMs has passed. A single huge retry count
// would not bound the wait: under load each retry takes far longer than
// RETRY_DELAY_MS, so waiters would outlive the bench's per-case timeout.
async function retryUntil (maxWaitMs, acquireWithRetries) {
  const giveUpAt = Date.now() + maxWaitMs
  for (;;) {
    try {
      return await acquireWithRetries()
    } catch (err) {
      if (Date.now() >= giveUpAt) throw err
    }
  }
}

module.exports = { RETRY_DELAY_MS, RETRY_JITTER_MS, RETRIES_PER_CALL, retryUntil }
