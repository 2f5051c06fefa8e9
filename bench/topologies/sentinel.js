'use strict'

// One master behind Redis Sentinel (one replica, three sentinels), as a deployment that wants
// failover has it: every lock on the master the sentinels name, found through them (ironlock as
// `{ sentinels, name }`, the peers through one ioredis client with `sentinels`). Its cases are one
// Redis's, and so should its figures be: `comparedWith` has the runner print ironlock here against
// ironlock on one Redis, and on the same servers without the sentinels (replicated.js), when
// those run too (topology-comparison.js). Counted on the master only: its commands and Redis CPU,
// as on one Redis (the replica's copy and the sentinels are left out).

const { startSentinel } = require('../../__test__/helpers/redis-sentinel')
const { BenchServer } = require('../redis')

const REPLICAS = 1
// The harness has the sentinels poll the master fast (INFO every 100 ms, hellos every 200 ms) so
// that tests see a failover at once. Nothing fails over here: Redis's default periods take the
// sentinels' commands on the master from about 50 a second to about 5 (mostly their PINGs).
const QUIET_SENTINEL_PERIODS = ['info-period', '10000', 'publish-period', '2000']

async function start () {
  const setup = await startSentinel({ replicas: REPLICAS })
  try {
    await Promise.all(setup.sentinelServers.map((sentinel) =>
      setup.admin(sentinel).call('SENTINEL', 'DEBUG', ...QUIET_SENTINEL_PERIODS)))
    const master = new BenchServer(await setup.master())
    return {
      servers: [master],
      urls: [master.url],
      cluster: false,
      sentinel: { sentinels: setup.sentinels, name: setup.name },
      // The bench fails nothing over: the master stays the one found here.
      serversOf: async () => [master],
      stop: () => setup.stop()
    }
  } catch (err) {
    await setup.stop()
    throw err
  }
}

module.exports = {
  key: 'sentinel',
  name: `sentinel (1 master + ${REPLICAS} replica, 3 sentinels)`,
  admits: (adapter) => adapter.sentinel,
  comparedWith: ['single', 'replicated'],
  start
}
