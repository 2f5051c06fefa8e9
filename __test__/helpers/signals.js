'use strict'

/** Resolves once `signal` aborts, including when it already has. */
function whenAborted(signal) {
  if (signal.aborted) return Promise.resolve()
  return new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
}

module.exports = { whenAborted }
