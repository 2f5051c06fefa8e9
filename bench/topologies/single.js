'use strict'

// One redis-server, as most deployments of a lock have.

const { startRedis } = require('../../__test__/helpers/redis-server')
const { BenchServer } = require('../redis')

async function start () {
  const server = await startRedis()
  const servers = [new BenchServer(server)]
  return {
    servers,
    urls: [server.url],
    cluster: false,
    serversOf: async () => servers,
    stop: () => server.stop()
  }
}

module.exports = { key: 'single', name: 'single node', admits: () => true, start }
