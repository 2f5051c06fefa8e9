'use strict'

// Where the bench's locks live, in the order the topologies run. Each one starts its own servers
// with the jest suites' harness and stops them when its cases are done, and gives the cases a
// deployment:
//
//   servers        BenchServer (redis.js) per master: flushed and reset before each case; the
//                  commands and Redis CPU of a case are summed over them
//   urls, cluster  what adapters get in create(): a URL per node, or (cluster: true) the seeds of
//                  one Redis Cluster
//   sentinel       behind Redis Sentinel only: { sentinels, name }, which adapters lock through
//                  instead of `urls` (the master's URL)
//   serversOf(key) the servers a lock on `key` is written to: the contended cases PING them as
//                  the floor of a hand-off
//   stop()
//
// `admits(adapter)` says which implementations run there. `comparedWith`, where set, lists the
// keys of topologies whose figures this one's should match: when one of them runs too, ironlock's
// rows on the two are printed side by side as ratios (topology-comparison.js).
module.exports = [
  require('./single'),
  require('./redlock'),
  require('./cluster'),
  require('./replicated'),
  require('./sentinel')
]
