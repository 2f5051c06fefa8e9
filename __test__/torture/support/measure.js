'use strict'

// What a leak looks like from outside: this process's memory, file descriptors and threads, and
// the connections a Redis sees.

const fs = require('node:fs')
const { sleep } = require('./torture')

const MB = 1024 * 1024

function rssMB() {
  return Math.round((process.memoryUsage().rss / MB) * 10) / 10
}

function heapMB() {
  return Math.round((process.memoryUsage().heapUsed / MB) * 10) / 10
}

let gc = global.gc
/**
 * A full garbage collection, so that memory figures show what is kept rather than what merely
 * has not been collected yet. Jest gives no `global.gc`; V8's flag set at run time and a fresh
 * context hand one out (it affects this test process only).
 */
function collectGarbage() {
  if (gc === undefined) {
    require('node:v8').setFlagsFromString('--expose-gc')
    gc = require('node:vm').runInNewContext('gc')
  }
  gc()
}

function openFds() {
  return fs.readdirSync('/proc/self/fd').length
}

function threads() {
  return fs.readdirSync('/proc/self/task').length
}

/** One line per client connection `admin` sees on its server, without `admin`'s own. */
async function connections(admin) {
  admin.ownId ??= await admin.client('ID')
  const list = await admin.client('LIST')
  return list.trim().split('\n').filter(Boolean).map((line) => {
    const fields = Object.fromEntries(line.split(' ').map((field) => {
      const at = field.indexOf('=')
      return [field.slice(0, at), field.slice(at + 1)]
    }))
    return { id: Number(fields.id), name: fields.name, addr: fields.addr, cmd: fields.cmd, sub: Number(fields.sub) }
  }).filter((client) => client.id !== admin.ownId)
}

/** Calls `measure` until `done(value)` or `ms` passed; resolves the last value and the wait. */
async function settle(measure, done, ms, every = 50) {
  const started = Date.now()
  for (;;) {
    const value = await measure()
    if (done(value) || Date.now() - started >= ms) return { value, waitedMs: Date.now() - started }
    await sleep(every)
  }
}

module.exports = { rssMB, heapMB, collectGarbage, openFds, threads, connections, settle }
