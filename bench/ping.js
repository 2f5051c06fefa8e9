'use strict'

// PINGs on connections of the bench's own, one round trip at a time (to every
// server in parallel), for as long as a run lasts: the physical floor of a
// hand-off, measured under the same load. The contended cases print it beside
// the hand-off times.

const { setTimeout: sleep } = require('node:timers/promises')
const Redis = require('ioredis')
const { nowMs } = require('./clock')

const PING_INTERVAL_MS = 5

/** Opens one connection per server and answers once each has answered a first PING. */
async function openPingers (servers) {
  const pingers = servers.map((server) => new Redis(server.url))
  await Promise.all(pingers.map((client) => client.ping()))
  return pingers
}

function closePingers (pingers) {
  for (const client of pingers) client.disconnect()
}

/** Starts pinging; `stop()` resolves the round trips, in ms. */
function startPinging (pingers) {
  let stopped = false
  const roundTrips = []
  const loop = (async () => {
    while (!stopped) {
      const startedAt = nowMs()
      await Promise.all(pingers.map((client) => client.ping()))
      roundTrips.push(nowMs() - startedAt)
      if (!stopped) await sleep(PING_INTERVAL_MS)
    }
  })()
  return {
    async stop () {
      stopped = true
      await loop
      return roundTrips
    }
  }
}

module.exports = { openPingers, closePingers, startPinging }
