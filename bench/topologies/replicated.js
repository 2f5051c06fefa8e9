'use strict'

// One master with one replica, reached by its URL: the Sentinel topology's servers without the
// sentinels. On a machine whose cores the replica shares, the replica's copy of every write costs
// the one-Redis cases throughput that Sentinel itself does not; ironlock here is what its rows
// behind Sentinel are set against to show Sentinel's own cost (`comparedWith` in sentinel.js).
// A reference for that comparison, not a deployment of its own: only ironlock runs here.

const { startRedis, startReplica } = require('../../__test__/helpers/redis-server')
const { BenchServer } = require('../redis')

async function start () {
  const server = await startRedis()
  let replica
  try {
    replica = await startReplica(server)
  } catch (err) {
    await server.stop()
    throw err
  }
  const servers = [new BenchServer(server)]
  return {
    servers,
    urls: [server.url],
    cluster: false,
    serversOf: async () => servers,
    stop: () => Promise.all([replica.stop(), server.stop()])
  }
}

module.exports = {
  key: 'replicated',
  name: 'one master + 1 replica, by URL',
  admits: (adapter) => adapter.name === 'ironlock',
  start
}
