'use strict'

// The child side of bench/children.js: how a child process of a bench case talks to its parent.
// serve(handlers) answers the parent's clock probes itself and hands every other message type to
// handlers[type]; a handler's failure is reported to the parent and ends the process.

const { sharedNowMs } = require('./clock')

let closing = false

function send (message) {
  return new Promise((resolve, reject) => process.send(message, (err) => (err ? reject(err) : resolve())))
}

function fail (err) {
  send({ type: 'error', error: err?.stack ?? String(err) }).catch(() => {}).finally(() => process.exit(1))
}

/** Says the child is closing by itself: from now on the parent going away does not end it. */
function closingByItself () {
  closing = true
}

function serve (handlers) {
  process.on('message', (message) => {
    if (message.type === 'clock') {
      send({ type: 'clock', t0: message.t0, childNow: sharedNowMs() }).catch(fail)
      return
    }
    const handler = handlers[message.type]
    if (handler) Promise.resolve().then(() => handler(message)).catch(fail)
  })
  // The parent went away before the child began to close: nothing left to report to. Once
  // closing, the process must exit by itself; the parent kills it and marks the row or run if it
  // does not (a connection or timer left open).
  process.once('disconnect', () => {
    if (!closing) process.exit(0)
  })
}

module.exports = { send, serve, closingByItself }
