'use strict'

// `replicas: n`: a lock is granted only once n replicas acknowledged it and its fence (WAIT),
// else it is given back and the call rejects with ReplicationError. Real servers: a master and
// its replicas, started here; faults are SIGSTOP and SIGKILL on them.

const { startRedis, startReplica, startRedisSet, stopAll } = require('../helpers/redis-server')
const { Locker, LockError, ReplicationError, QuorumError } = require('../..')

const WIRE_NAME = 'ironlock-wire'
// Short, so that a shortfall fails fast; far above what a replica on loopback needs.
const REPLICAS_TIMEOUT = 300

afterAll(() => stopAll())

/** Waits up to 1 s for `key` to be gone from the server of `client`. */
async function eventuallyNull(client, key) {
  for (let attempt = 0; attempt < 50 && (await client.get(key)) !== null; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  expect(await client.get(key)).toBeNull()
}

/** Every fencing counter on the server of `client` (one per hash slot used), name → value. */
async function fenceCounters(client) {
  const names = (await client.keys('ironlock:fence:*')).sort()
  const values = names.length === 0 ? [] : await client.mget(...names)
  return Object.fromEntries(names.map((name, index) => [name, Number(values[index])]))
}

/** The highest fence a server's counters would have given: the newest lock's, nothing running. */
async function highestFence(client) {
  return Math.max(0, ...Object.values(await fenceCounters(client)))
}

/** Cycles locks until the wire of `locker` is up (it opens on the first request); its address. */
async function wireUp(locker, client) {
  const giveUpAt = Date.now() + 5000
  while (Date.now() < giveUpAt) {
    await (await locker.acquire('replicated:warm-up')).release()
    const wire = (await client.client('LIST')).split('\n').find((line) => line.includes(`name=${WIRE_NAME}`))
    if (wire) return / addr=(\S+)/.exec(wire)[1]
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error('the wire did not come up within 5 s')
}

/** The address of each connection that ran `command` (lower case) while `run` ran. */
async function sourcesOf(server, command, run) {
  const monitor = await server.client().monitor()
  const sources = []
  monitor.on('monitor', (time, args, source) => {
    if (args[0].toLowerCase() === command) sources.push(source)
  })
  try {
    await run()
    // MONITOR's last lines may trail the replies by a moment.
    await new Promise((resolve) => setTimeout(resolve, 50))
  } finally {
    monitor.disconnect()
  }
  return sources
}

describe('one Redis with one replica', () => {
  let master
  let replica
  let onMaster
  let onReplica
  let locker

  beforeAll(async () => {
    master = await startRedis()
    replica = await startReplica(master)
    onMaster = master.client()
    onReplica = replica.client()
  })

  beforeEach(() => {
    locker = new Locker(master.url, { replicasTimeout: REPLICAS_TIMEOUT })
  })

  afterEach(() => locker.close())

  test('replicas: 1 grants a lock the replica already has, fence included', async () => {
    const lock = await locker.acquire('replicated:one', { replicas: 1 })
    expect(await onReplica.get('replicated:one')).toBe(lock.token)
    expect(await fenceCounters(onReplica)).toEqual(await fenceCounters(onMaster))
    expect(await highestFence(onReplica)).toBeGreaterThanOrEqual(lock.fence)
    expect(await lock.release()).toBe(true)
  })

  test('replicas: 2 rejects ReplicationError after the timeout, and the key is free again', async () => {
    const started = Date.now()
    const error = await locker.acquire('replicated:two', { replicas: 2 }).catch((e) => e)
    expect(Date.now() - started).toBeGreaterThanOrEqual(REPLICAS_TIMEOUT - 5)
    expect(error).toBeInstanceOf(ReplicationError)
    expect(error).toBeInstanceOf(LockError)
    expect(error).toMatchObject({ name: 'ReplicationError', code: 'EREPLICAS', key: 'replicated:two', acknowledged: 1, wanted: 2 })
    expect(error.message).toMatch(/^lock "replicated:two" was given back, not granted: 1 of the 2 replicas/)
    expect(await onMaster.get('replicated:two')).toBeNull()
    const next = await locker.tryAcquire('replicated:two')
    expect(next).not.toBeNull()
    await next.release()
  })

  test('a multi-key lock and using() wait for the replica too', async () => {
    const lock = await locker.acquire(['replicated:a', 'replicated:b'], { replicas: 1 })
    expect(await onReplica.mget('replicated:a', 'replicated:b')).toEqual([lock.token, lock.token])
    await lock.release()
    const error = await locker.using(['replicated:a', 'replicated:b'], { replicas: 2 }, () => 'ran').catch((e) => e)
    expect(error).toMatchObject({ code: 'EREPLICAS', acknowledged: 1, wanted: 2 })
    expect(await onMaster.exists('replicated:a', 'replicated:b')).toBe(0)
    expect(await locker.using('replicated:a', { replicas: 1 }, () => 'ran')).toBe('ran')
  })

  test('a frozen replica (SIGSTOP) makes the acquire reject ReplicationError', async () => {
    await (await locker.acquire('replicated:warm', { replicas: 1 })).release()
    replica.pause()
    let error
    try {
      error = await locker.acquire('replicated:frozen', { replicas: 1 }).catch((e) => e)
    } finally {
      replica.resume()
    }
    expect(error).toMatchObject({ code: 'EREPLICAS', key: 'replicated:frozen', acknowledged: 0, wanted: 1 })
    expect(await onMaster.get('replicated:frozen')).toBeNull()
  })

  test('the locker default applies to every call, and a call may ask for none', async () => {
    const strict = new Locker(master.url, { replicas: 2, replicasTimeout: REPLICAS_TIMEOUT })
    try {
      await expect(strict.acquire('replicated:default')).rejects.toMatchObject({ code: 'EREPLICAS', wanted: 2 })
      await expect(strict.acquire('replicated:default', { replicas: 1 })).resolves.toMatchObject({ key: 'replicated:default' })
      await expect(strict.tryAcquire('replicated:other', { replicas: 0 })).resolves.toMatchObject({ key: 'replicated:other' })
    } finally {
      await strict.close()
    }
  })

  test('a waiter that asked for replicas is handed the lock only once the replica has it', async () => {
    const held = await locker.acquire('replicated:handed')
    const waiting = locker.acquire('replicated:handed', { replicas: 1, wait: 5000 })
    await new Promise((resolve) => setTimeout(resolve, 100))
    await held.release()
    const handed = await waiting
    expect(handed.fence).toBeGreaterThan(held.fence)
    expect(await onReplica.get('replicated:handed')).toBe(handed.token)
    await handed.release()
  })

  test('replicas: 0 (the default) stays on the wire; a replicated acquire has a connection of its own, with WAIT behind its script', async () => {
    const wireAddress = await wireUp(locker, onMaster)
    const plain = await sourcesOf(master, 'evalsha', async () => {
      for (let cycle = 0; cycle < 5; cycle++) await (await locker.acquire('replicated:plain')).release()
    })
    expect(new Set(plain)).toEqual(new Set([wireAddress]))
    const scripts = []
    const waits = await sourcesOf(master, 'wait', async () => {
      scripts.push(...await sourcesOf(master, 'evalsha', () => locker.acquire('replicated:own', { replicas: 1 }).then((lock) => lock.release())))
    })
    expect(waits).toHaveLength(1)
    expect(waits[0]).not.toBe(wireAddress)
    // The acquire's script and its WAIT came from one connection; the release went elsewhere.
    expect(scripts).toContain(waits[0])
  })

  test('the lock granted with replicas: 1 survives SIGKILL of the master and the promotion of the replica, fence included', async () => {
    // Its own master and replica: this one kills them.
    const doomed = await startRedis()
    const heir = await startReplica(doomed)
    const onDoomed = new Locker(doomed.url, { replicasTimeout: 1000 })
    const lock = await onDoomed.acquire('replicated:seat', { replicas: 1, ttl: 60000 })
    await doomed.kill('SIGKILL')
    await onDoomed.close()
    const onHeir = heir.client()
    await onHeir.replicaof('NO', 'ONE')
    expect(await onHeir.get('replicated:seat')).toBe(lock.token)
    expect(await highestFence(onHeir)).toBeGreaterThanOrEqual(lock.fence)
    const promoted = new Locker(heir.url)
    try {
      expect(await promoted.tryAcquire('replicated:seat')).toBeNull()
      // Once it is gone (its holder's locker died with the master), the next fence is above.
      await onHeir.del('replicated:seat')
      const next = await promoted.acquire('replicated:seat')
      expect(next.fence).toBeGreaterThan(lock.fence)
    } finally {
      await promoted.close()
    }
  })
})

test('memory:// has no replicas to wait for: replicas asks nothing there', async () => {
  const locker = new Locker('memory://', { replicas: 3 })
  const lock = await locker.acquire('replicated:memory')
  expect(await lock.release()).toBe(true)
  await locker.close()
})

test('on Redlock each node counts only once its own replicas acknowledged: without them, a QuorumError that says so', async () => {
  const nodes = await startRedisSet(3)
  const locker = new Locker(nodes.map((node) => node.url), { replicasTimeout: 100 })
  try {
    const error = await locker.acquire('replicated:redlock', { replicas: 1, wait: 0 }).catch((e) => e)
    expect(error).toBeInstanceOf(QuorumError)
    expect(error.votes.errors).toHaveLength(3)
    // Two shortfalls decide the round; the third node may not have answered by then.
    const messages = error.votes.errors.map(({ message }) => message)
    expect(messages.filter((message) => /0 of the 1 replicas asked for/.test(message)).length).toBeGreaterThanOrEqual(2)
    for (const message of messages) expect(message).toMatch(/0 of the 1 replicas asked for|no answer before the round was decided/)
    // Given back by token on every node, in the background as after any failed round.
    for (const node of nodes) await eventuallyNull(node.client(), 'replicated:redlock')
    const lock = await locker.acquire('replicated:redlock', { wait: 0 })
    expect(await lock.release()).toBe(true)
  } finally {
    await locker.close()
  }
})
