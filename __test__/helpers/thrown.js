'use strict'

/** The error `construct()` throws; fails the test when it throws nothing. */
function thrownBy(construct) {
  try {
    construct()
  } catch (error) {
    return error
  }
  throw new Error('did not throw')
}

module.exports = { thrownBy }
