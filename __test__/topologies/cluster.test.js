'use strict'

// Redis Cluster, 3 masters with a replica each, from every target form: locks on every master,
// locks that wait for the replicas of their masters (replicas: n), exclusion between processes,
// ironlock/redlock on an ioredis Cluster next to redlock 5, a waiter in one process woken by a
// release in another, a master killed while locks are held and waited on, and a slot migrated
// under them. The API's behaviour on a Cluster is behaviour.test.js's.

const { execFile, spawn } = require('node:child_process')
const path = require('node:path')
const { once } = require('node:events')
const { inspect, promisify } = require('node:util')
const Redis = require('ioredis')
const { startCluster } = require('../helpers/redis-cluster')
const { stopAll } = require('../helpers/redis-server')
const { Locker, LockLostError, ReplicationError } = require('../..')

const run = promisify(execFile)
const fixture = (name) => path.join(__dirname, '..', 'fixtures', name)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Enough for a call to ride out a failover (about two seconds with the harness's node timeout). */
const TIMEOUTS = { connectTimeout: 5000, commandTimeout: 5000 }
/** How long WAIT may wait for replicas: short, so that a shortfall fails fast. */
const REPLICAS_TIMEOUT = 300

afterAll(() => stopAll())

/** Resolves once someone subscribed to the release channel of `key` on its master. */
async function untilSubscribed(cluster, key) {
  // The core's channel: the key's own hash tag, else the key as one.
  const channel = /\{[^}]+\}/.test(key) ? `${key}:released` : `{${key}}:released`
  for (const deadline = Date.now() + 5000; ;) {
    const [, count] = await cluster.admin(await cluster.masterOf(key)).pubsub('SHARDNUMSUB', channel)
    if (count > 0) return
    if (Date.now() > deadline) throw new Error(`nobody subscribed ${channel}`)
    await sleep(10)
  }
}

/** Resolves once `signal` aborted (at once if it has). */
function aborted(signal) {
  return signal.aborted ? Promise.resolve() : once(signal, 'abort')
}

async function tokenOn(cluster, key) {
  return cluster.admin(await cluster.masterOf(key)).get(key)
}

/** What the replica of the master of `key` holds there (a cluster replica reads after READONLY). */
async function tokenOnReplica(cluster, key) {
  const replica = cluster.admin(await cluster.replicaOf(await cluster.masterOf(key)))
  await replica.readonly()
  return replica.get(key)
}

describe('Cluster targets', () => {
  const { resolveTarget } = require('../../lib/target')
  const seeds = (target) => resolveTarget(target).native.nodes.map(({ host, port, password }) => ({ host, port, password }))

  test('every form gives the native side mode cluster and its seeds, with the shared credentials', () => {
    const expected = [{ host: 'h1', port: 7000, password: 'pw' }, { host: 'h2', port: 7001, password: 'pw' }]
    expect(seeds({ cluster: ['redis://h1:7000', { host: 'h2', port: 7001 }], password: 'pw' })).toEqual(expected)
    expect(seeds('redis+cluster://:pw@h1:7000,h2:7001')).toEqual(expected)
    const client = new Redis.Cluster([{ host: 'h1', port: 7000 }, 'redis://h2:7001'], {
      lazyConnect: true, keyPrefix: 'app:', redisOptions: { password: 'pw', connectTimeout: 700, commandTimeout: 800 },
    })
    expect(seeds(client)).toEqual(expected)
    expect(resolveTarget(client).native).toMatchObject({ mode: 'cluster', keyPrefix: 'app:', connectTimeout: 700, commandTimeout: 800 })
    expect(resolveTarget('rediss+cluster://h1:7000').native.nodes[0].tls).toEqual({ rejectUnauthorized: true })
    expect(resolveTarget('redis+cluster://:pw@h1:7000,h2:7001').description).toBe('cluster[redis://:***@h1:7000, redis://:***@h2:7001]')
  })

  test.each([
    ['no seed', { cluster: [] }, 'must list at least one seed'],
    ['a database other than 0', 'redis+cluster://:secret@h1:7000/2', 'has only database 0'],
    ['seeds with different passwords', { cluster: ['redis://:secret@h1:7000', 'redis://h2:7001'] }, 'the same username, password and TLS'],
    ['an empty seed in a URL', 'redis+cluster://:secret@h1:7000,,h2:7001', 'an empty seed'],
    ['a cluster as a Redlock node', [{ cluster: ['redis://h1:7000'] }, 'redis://h2:7001'], 'not a node of Redlock'],
    ['an option a cluster does not take', { cluster: ['redis://h1:7000'], db: 1 }, "'target.db' is not a known option"],
  ])('%s is ERR_INVALID_ARG_VALUE, without the password', (_, target, message) => {
    let error
    try {
      resolveTarget(target)
    } catch (thrown) {
      error = thrown
    }
    expect(error.code).toBe('ERR_INVALID_ARG_VALUE')
    expect(error.message).toContain(message)
    expect(error.message).not.toContain('secret')
  })
})

describe('one cluster', () => {
  let cluster

  beforeAll(async () => {
    cluster = await startCluster()
  })

  beforeEach(() => cluster.flushAll())

  const forms = [
    ['{ cluster: seeds }', () => ({ cluster: cluster.seeds })],
    ['a redis+cluster:// URL', () => cluster.url],
    ['an ioredis Cluster', () => new Redis.Cluster(cluster.seeds, { lazyConnect: true })],
  ]

  test.each(forms)('%s locks keys on every master', async (_, target) => {
    const locker = new Locker(target(), TIMEOUTS)
    try {
      expect(inspect(locker)).toMatch(/^Locker \{ target: 'cluster\[redis:\/\/127\.0\.0\.1:\d+, /)
      for (const key of await cluster.keyOnEachMaster('order')) {
        const lock = await locker.acquire(key)
        expect(await tokenOn(cluster, key)).toBe(lock.token)
        expect(await locker.tryAcquire(key)).toBeNull()
        expect(await lock.release()).toBe(true)
        expect(await tokenOn(cluster, key)).toBeNull()
      }
    } finally {
      await locker.close()
    }
  })

  test('replicas: a lock is granted once the replica of each master it was written to has it; too few reject ReplicationError with the key free again', async () => {
    const locker = new Locker(cluster.url, { ...TIMEOUTS, replicasTimeout: REPLICAS_TIMEOUT })
    const strict = new Locker(cluster.url, { ...TIMEOUTS, replicas: 2, replicasTimeout: REPLICAS_TIMEOUT })
    try {
      const keys = await cluster.keyOnEachMaster('replicated')
      for (const key of keys) {
        const lock = await locker.acquire(key, { replicas: 1 })
        // Read at once from the replica: WAIT answered only once it had the lock.
        expect(await tokenOnReplica(cluster, key)).toBe(lock.token)
        expect(await lock.release()).toBe(true)
      }
      const across = await locker.acquire(keys, { replicas: 1 })
      for (const key of keys) expect(await tokenOnReplica(cluster, key)).toBe(across.token)
      expect(await across.release()).toBe(true)

      for (const wanted of [keys[0], keys]) {
        const started = Date.now()
        const error = await strict.acquire(wanted).catch((e) => e)
        expect(Date.now() - started).toBeGreaterThanOrEqual(REPLICAS_TIMEOUT - 5)
        expect(error).toBeInstanceOf(ReplicationError)
        expect(error).toMatchObject({ code: 'EREPLICAS', key: keys[0], acknowledged: 1, wanted: 2 })
        for (const key of keys) expect(await tokenOn(cluster, key)).toBeNull()
      }
      const next = await strict.tryAcquire(keys, { replicas: 0 })
      expect(next).not.toBeNull()
      await next.release()
    } finally {
      await Promise.all([locker.close(), strict.close()])
    }
  })

  test('an ioredis Cluster\'s keyPrefix prefixes the lock keys', async () => {
    const client = new Redis.Cluster(cluster.seeds, { lazyConnect: true, keyPrefix: 'app:' })
    const locker = new Locker(client, TIMEOUTS)
    try {
      const lock = await locker.acquire('invoice:7')
      expect(await tokenOn(cluster, 'app:invoice:7')).toBe(lock.token)
      await lock.release()
    } finally {
      await locker.close()
    }
  })

  test('4 processes × 25 increments under one lock end with the exact count and no overlap', async () => {
    const outputs = await Promise.all(Array.from({ length: 4 }, () =>
      run(process.execPath, [fixture('counter-worker.js'), cluster.url, '25'], { timeout: 60000 })))
    const overlaps = outputs.map(({ stdout }) => JSON.parse(stdout).overlaps)
    expect(overlaps).toEqual([0, 0, 0, 0])
    const counter = cluster.admin(await cluster.masterOf('counter'))
    expect(await counter.get('counter')).toBe('100')
  }, 90000)

  test('ironlock/redlock from an ioredis Cluster client works as redlock 5 does there, and excludes it', async () => {
    const Redlock = require('ironlock/redlock')
    const Redlock5 = require('@sesamecare-oss/redlock').Redlock
    const client = new Redis.Cluster(cluster.seeds)
    const redlock = new Redlock([client], { retryCount: 0 })
    const redlock5 = new Redlock5([client], { retryCount: 0 })
    const waiter = new Locker(cluster.url, TIMEOUTS)
    try {
      for (const key of await cluster.keyOnEachMaster('sku')) {
        const lock = await redlock.acquire([key], 5000)
        expect(await tokenOn(cluster, key)).toBe(lock.value)
        await expect(redlock5.acquire([key], 5000)).rejects.toThrow()
        await (await lock.extend(5000)).release()
        const theirs = await redlock5.acquire([key], 5000)
        await expect(redlock.acquire([key], 5000)).rejects.toThrow(Redlock.ExecutionError)
        await theirs.release()
      }
      // Resources sharing a hash tag, as redlock 5 asks for on a cluster; ironlock also takes
      // resources across slots.
      await (await redlock.acquire(['{cart:1}:a', '{cart:1}:b'], 5000)).release()
      await (await redlock.acquire(['sku:0', 'sku:1', 'sku:2'], 5000)).release()

      // A lock rebuilt from stored values is released through the client, announced on its
      // shard to an ironlock waiter.
      const held = await redlock.acquire(['stored'], 30000)
      const waited = waiter.acquire('stored', { wait: 20000 })
      await untilSubscribed(cluster, 'stored')
      const releasedAt = Date.now()
      await new Redlock.Lock(redlock, ['stored'], held.value, [], Date.now() + 30000).release()
      await (await waited).release()
      expect(Date.now() - releasedAt).toBeLessThan(2000)
    } finally {
      await waiter.close()
      await redlock.quit()
    }
  })

  test('a waiter in one process is woken by a release in another', async () => {
    const locker = new Locker(cluster.url, TIMEOUTS)
    try {
      const held = await locker.acquire('held-elsewhere', { ttl: 30000 })
      const child = spawn(process.execPath, [fixture('awaits-lock.js'), cluster.url], { stdio: ['ignore', 'pipe', 'inherit'] })
      let output = ''
      child.stdout.on('data', (chunk) => { output += chunk })
      await untilSubscribed(cluster, 'held-elsewhere')
      const releasedAt = Date.now()
      await held.release()
      await once(child, 'exit')
      expect(output.trim()).toBe('acquired=true')
      expect(Date.now() - releasedAt).toBeLessThan(2000)
    } finally {
      await locker.close()
    }
  })
})

test('a master killed while locks are held and waited on: a replica takes over, no waiter is stranded, the holder of a lost lock hears it', async () => {
  const cluster = await startCluster()
  const holder = new Locker(cluster.url, TIMEOUTS)
  const waiter = new Locker(cluster.url, TIMEOUTS)
  try {
    const [lost, kept] = ['{shard}:lost', '{shard}:kept']
    const signals = {}
    const settled = {}
    const holds = {}
    const hold = (key) => new Promise((resolve) => {
      settled[key] = holder.using(key, { ttl: 6000 }, (signal) => {
        signals[key] = signal
        resolve()
        return new Promise((finish) => { holds[key] = finish })
      }).then(() => 'released', (error) => error)
    })
    await hold(lost)
    // The replica misses that write, as asynchronous replication may: it drops its copy of
    // everything (a cluster replica takes no keyed write), then replicates what comes after.
    const replica = cluster.admin(await cluster.replicaOf(await cluster.masterOf(lost)))
    await replica.config('SET', 'replica-read-only', 'no')
    await replica.flushall()
    await hold(kept)
    while (await replica.dbsize() < 2) await sleep(10)
    const waited = waiter.acquire(lost, { wait: 20000 })
    await untilSubscribed(cluster, lost)

    await cluster.failOver(lost)
    const lock = await waited
    expect(lock.key).toBe(lost)
    await aborted(signals[lost])
    expect(signals[lost].reason).toBeInstanceOf(LockLostError)
    holds[lost]()
    expect(await settled[lost]).toBeInstanceOf(LockLostError)

    const fresh = await holder.acquire('{shard}:fresh')
    expect(await fresh.release()).toBe(true)
    expect(signals[kept].aborted).toBe(false)
    holds[kept]()
    expect(await settled[kept]).toBe('released')
    await lock.release()
  } finally {
    await Promise.all([holder.close(), waiter.close()])
    await cluster.stop()
  }
}, 60000)

test('a slot migrated while its locks are held and waited on: ASK and MOVED followed, no overlap', async () => {
  const cluster = await startCluster()
  const [holder, waiter, other] = [1, 2, 3].map(() => new Locker(cluster.url, TIMEOUTS))
  try {
    const key = '{moving}:held'
    const held = await holder.acquire(key, { ttl: 30000 })
    let acquiredAt
    const waited = waiter.acquire(key, { wait: 30000 }).then((lock) => {
      acquiredAt = Date.now()
      return lock
    })
    await untilSubscribed(cluster, key)

    const migration = await cluster.beginMigration(key)
    expect(await other.tryAcquire(key)).toBeNull()
    // A lock of the same slot asked for mid-migration waits it out (TRYAGAIN), then lands.
    const sibling = other.acquire('{moving}:sibling', { wait: 20000 })
    await cluster.moveKeys(migration)
    expect(await other.tryAcquire(key)).toBeNull()
    expect(await held.release()).toBe(true)
    await cluster.finishMigration(migration)
    const finishedAt = Date.now()

    const lock = await waited
    expect(acquiredAt - finishedAt).toBeLessThan(3000)
    expect(lock.fence).toBeGreaterThan(held.fence)
    expect(await cluster.admin(migration.to).get(key)).toBe(lock.token)
    expect(await cluster.admin(migration.from).cluster('COUNTKEYSINSLOT', migration.slot)).toBe(0)
    await (await sibling).release()
    await lock.release()
  } finally {
    await Promise.all([holder.close(), waiter.close(), other.close()])
    await cluster.stop()
  }
}, 60000)
