'use strict'

// A Redis Cluster of three masters, each lock on the master of its key's hash slot, reached
// through a cluster client (ioredis's Cluster for the peers). Without replicas: a lock does not
// wait for them (ironlock refuses `replicas` on a Cluster), so they would add only the
// replication stream to the masters' work, on the same cores.

const { startCluster } = require('../../__test__/helpers/redis-cluster')
const { BenchServer } = require('../redis')

const MASTERS = 3

async function start () {
  const cluster = await startCluster({ masters: MASTERS, replicasPerMaster: 0 })
  try {
    const masters = await cluster.masters()
    const servers = masters.map((master) => new BenchServer(master))
    return {
      servers,
      urls: masters.map((master) => master.url),
      cluster: true,
      // The bench migrates no slot and fails nothing over: a key's master stays where it was.
      async serversOf (key) {
        return [servers[masters.indexOf(await cluster.masterOf(key))]]
      },
      stop: () => cluster.stop()
    }
  } catch (err) {
    await cluster.stop()
    throw err
  }
}

module.exports = { key: 'cluster', name: `cluster (${MASTERS} masters)`, admits: (adapter) => adapter.cluster, start }
