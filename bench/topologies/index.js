'use strict'

// Where the bench's locks live, in the order the topologies run. Each one starts its own servers
// with the jest suites' harness and stops them when its cases are done, and gives the cases a
// deployment:
//
//   servers        BenchServer (redis.js) per master: flushed and reset before each case; the
//                  commands and Redis CPU of a case are summed over them
//   urls, cluster  what adapters get in create(): a URL per node, or (cluster: true) the seeds of
//                  one Redis Cluster
//   serversOf(key) the servers a lock on `key` is written to: the contended cases PING them as
//                  the floor of a hand-off
//   stop()
//
// `admits(adapter)` says which implementations run there.
module.exports = [
  require('./single'),
  require('./redlock'),
  require('./cluster')
]
