'use strict'

// A test runner small enough to behave the same under Node, Bun and Deno (jest only runs on
// Node). Cases run one after another; each prints one line, `ok - name (ms)` or
// `FAIL - name (ms)` with the error under it. The last line is `N passed, N failed`, and the exit
// code is non-zero on any failure. The process is left to exit by itself: a runtime on which
// ironlock keeps the event loop alive hangs here, and scripts/test-runtimes.js reports that.

const CASE_TIMEOUT_MS = 20000

const cases = []
// Errors no case caught (a throw from a timer, an unhandled rejection), with the case that was
// running: each is a failure.
const escaped = []
let running = 'no case'

/** Registers a case; `fn` may be async. */
function test(name, fn) {
  cases.push({ name, fn })
}

/** `promise`, or a rejection once it has not settled within `ms`. */
function within(promise, ms, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

function indented(error) {
  const text = error instanceof Error ? error.stack || String(error) : `non-error thrown: ${String(error)}`
  return text.split('\n').map((line) => `    ${line}`).join('\n')
}

async function runCase(name, fn) {
  running = `"${name}"`
  const started = Date.now()
  try {
    await within(Promise.resolve().then(fn), CASE_TIMEOUT_MS, name)
    console.log(`ok - ${name} (${Date.now() - started} ms)`)
    return true
  } catch (error) {
    console.log(`FAIL - ${name} (${Date.now() - started} ms)\n${indented(error)}`)
    return false
  }
}

/**
 * Runs `setup`, then every case, then `teardown` (even when setup or a case failed); each counts
 * as a case. A failed setup fails every case without running it.
 */
async function run({ setup, teardown }) {
  const onRejection = (error) => escaped.push({ kind: 'unhandled rejection', during: running, error })
  const onException = (error) => escaped.push({ kind: 'uncaught exception', during: running, error })
  process.on('unhandledRejection', onRejection)
  process.on('uncaughtException', onException)

  const results = []
  const ready = await runCase('setup', setup)
  results.push(ready)
  for (const { name, fn } of cases) {
    if (ready) {
      results.push(await runCase(name, fn))
    } else {
      console.log(`FAIL - ${name} (not run: setup failed)`)
      results.push(false)
    }
  }
  results.push(await runCase('teardown', teardown))
  for (const { kind, during, error } of escaped) {
    console.log(`FAIL - ${kind} while ${during} ran\n${indented(error)}`)
    results.push(false)
  }
  const passed = results.filter(Boolean).length
  const failed = results.length - passed
  console.log(`${passed} passed, ${failed} failed`)
  process.exitCode = failed === 0 ? 0 : 1
  // From here on, an escaping error crashes the process as it would anywhere else.
  process.off('unhandledRejection', onRejection)
  process.off('uncaughtException', onException)
}

module.exports = { test, run }
