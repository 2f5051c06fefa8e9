'use strict'

// What the binding costs without Redis: 32 workers loop acquire + release on `memory://` (or on
// the target given as the first argument), and the script prints cycles/s and event-loop time
// per cycle for three 2 s windows after a warm-up.
//
//   node bench/binding-overhead.js [memory:// | redis://host:port]

const { Locker } = require('..')

const WORKERS = 32
const WINDOW_MS = 2000

async function measure(locker, windowMs) {
  let cycles = 0
  let running = true
  const utilization = performance.eventLoopUtilization()
  const started = performance.now()
  const timer = setTimeout(() => { running = false }, windowMs)
  await Promise.all(Array.from({ length: WORKERS }, async (_, worker) => {
    while (running) {
      const lock = await locker.acquire(`overhead:${worker}`)
      await lock.release()
      cycles++
    }
  }))
  clearTimeout(timer)
  const elu = performance.eventLoopUtilization(utilization)
  return { perSecond: cycles / ((performance.now() - started) / 1000), eluMicros: (elu.active * 1000) / cycles }
}

async function main() {
  const target = process.argv[2] || 'memory://'
  const locker = new Locker(target)
  await measure(locker, 500)
  for (let run = 0; run < 3; run++) {
    const { perSecond, eluMicros } = await measure(locker, WINDOW_MS)
    console.log(`${target}: ${Math.round(perSecond).toLocaleString('en')} cycles/s, ${eluMicros.toFixed(2)} µs event loop per cycle`)
  }
  await locker.close()
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
