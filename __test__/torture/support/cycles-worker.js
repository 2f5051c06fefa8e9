'use strict'

// Acquire/release cycles on one locker in a plain Node process (leaks.test.js): under jest's
// --detectOpenHandles every promise is tracked and the loop runs 3-4 times slower, and here
// `--expose-gc` gives a real `gc()` before each sample. argv[2]: JSON config. Prints one JSON
// line: the cycles done, the seconds, and the samples.

const Redis = require('ioredis')
const { Locker } = require('../../..')
const { rssMB, heapMB, openFds, threads, connections } = require('./measure')
const { now } = require('./torture')

const { url, cycles, ms, concurrency, sampleEvery } = JSON.parse(process.argv[2])

async function main() {
  const admin = new Redis(url)
  const locker = new Locker(url)
  const samples = []
  let done = 0
  let nextSample = sampleEvery
  let sampling = Promise.resolve()
  const sample = (label) => {
    sampling = sampling.then(async () => {
      const list = await connections(admin)
      global.gc()
      samples.push({
        label,
        cycles: done,
        rssMB: rssMB(),
        heapMB: heapMB(),
        fds: openFds(),
        threads: threads(),
        connections: list.length,
        ids: list.map((client) => `${client.id}:${client.name || '-'}:${client.cmd}`).join(' '),
      })
    })
    return sampling
  }
  await sample('start')
  const started = now()
  const deadline = started + ms
  await Promise.all(Array.from({ length: concurrency }, async (_, i) => {
    const key = `cycles:${i}`
    while (done < cycles && now() < deadline) {
      done += 1
      const lock = await locker.acquire(key, { ttl: 10000 })
      await locker.release(lock)
      // The other loops keep going while one measures.
      if (done >= nextSample) {
        nextSample += sampleEvery
        await sample(String(done))
      }
    }
  }))
  const seconds = (now() - started) / 1000
  await sample('end')
  await locker.close()
  admin.disconnect()
  process.stdout.write(`${JSON.stringify({ done, seconds, samples })}\n`)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
