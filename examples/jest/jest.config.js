'use strict'

// This folder's own jest setup, as in a service of your own.
module.exports = { testEnvironment: 'node' }
