'use strict'

// Every implementation in the comparison, in table order (ours first).
module.exports = [
  require('./ironlock'),
  require('./redlock'),
  require('./sesame-redlock'),
  require('./redis-semaphore'),
  require('./redlock-universal'),
  require('./nx-spin')
]
