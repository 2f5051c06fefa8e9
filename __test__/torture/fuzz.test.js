'use strict'

// Runs the bad-input fuzzer (support/fuzzer.js) in a Node process of its own: jest gives a test file a
// `process` of its own, on which 'uncaughtException' and 'unhandledRejection' recorders would
// never fire, and a crash there would take jest's worker with it. IRONLOCK_FUZZ_SEED and
// IRONLOCK_FUZZ_CALLS pass through.

const { spawn } = require('node:child_process')
const path = require('node:path')

const FUZZER = path.join(__dirname, 'support', 'fuzzer.js')
// 10,000 calls take 25-45 s on two cores; the fuzzer's own bound for one call is 15 s.
const TIMEOUT_MS = 180000

function runFuzzer() {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FUZZER], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk) => { stdout += chunk })
    child.stderr.setEncoding('utf8').on('data', (chunk) => { stderr += chunk })
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

test('random bad input: every call settles with a value or a typed error, nothing is thrown where no caller can catch it, and no neighbour is stranded', async () => {
  const { code, signal, stdout, stderr } = await runFuzzer()
  const figures = stdout.replace(/^FUZZ-SUMMARY .*\n?/m, '')
  process.stdout.write(`\n${figures}${stderr ? `--- stderr ---\n${stderr}` : ''}\n`)
  const line = stdout.split('\n').find((each) => each.startsWith('FUZZ-SUMMARY '))
  expect({ code, signal, summary: line !== undefined }).toEqual({ code: 0, signal: null, summary: true })
  const summary = JSON.parse(line.slice('FUZZ-SUMMARY '.length))
  expect(summary).toMatchObject({ failures: 0, failureKinds: [], uncaught: [], unhandled: [], warnings: [] })
  expect(summary.calls).toBeGreaterThanOrEqual(Number(process.env.IRONLOCK_FUZZ_CALLS || 10000))
  expect(summary.canaries).toBeGreaterThan(0)
}, TIMEOUT_MS)
