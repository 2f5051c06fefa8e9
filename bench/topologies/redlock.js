'use strict'

// Independent masters, each lock on all of them (Redlock): only implementations with a
// multi-node mode run here.

const { startRedisSet } = require('../../__test__/helpers/redis-server')
const { BenchServer } = require('../redis')

const NODES = 3

async function start () {
  const nodes = await startRedisSet(NODES)
  const servers = nodes.map((node) => new BenchServer(node))
  return {
    servers,
    urls: nodes.map((node) => node.url),
    cluster: false,
    // A Redlock hand-off waits for a majority of them; the floor PINGs all and waits as long.
    serversOf: async () => servers,
    stop: () => Promise.all(nodes.map((node) => node.stop()))
  }
}

module.exports = { key: 'redlock', name: `redlock (${NODES} masters)`, admits: (adapter) => adapter.multiNode, start }
