#!/usr/bin/env node
'use strict'

// A throwaway npm registry for the release rehearsal: verdaccio on a free loopback port, its
// config and storage in `<dir>`. Anyone may publish `ironlock` and `ironlock-*`, which exist only
// here (no uplink: nothing about them is asked of, or sent to, another registry); every other
// package comes through from `<uplink>`. Prints one line, `{"url":"http://127.0.0.1:<port>/"}`,
// once it listens; runs until killed (SIGTERM).
//
//   node scripts/local-registry.js <dir> <uplink>

const fs = require('node:fs')
const path = require('node:path')
const { runServer } = require('verdaccio')

const HOST = '127.0.0.1'

/** verdaccio's config.yaml. JSON is YAML, so JSON.stringify quotes every value safely. */
function configText(dir, uplink) {
  const ours = { access: '$all', publish: '$anonymous', unpublish: '$anonymous' }
  const config = {
    storage: path.join(dir, 'storage'),
    auth: { htpasswd: { file: path.join(dir, 'htpasswd'), max_users: -1 } },
    web: { enable: false },
    uplinks: { upstream: { url: uplink, timeout: '30s' } },
    packages: {
      ironlock: ours,
      'ironlock-*': ours,
      '**': { access: '$all', proxy: 'upstream' },
    },
    log: { type: 'stdout', format: 'pretty', level: 'warn' },
  }
  return `${JSON.stringify(config, null, 2)}\n`
}

async function main() {
  const [dir, uplink] = process.argv.slice(2)
  if (!dir || !uplink) {
    process.stderr.write('usage: node scripts/local-registry.js <dir> <uplink registry URL>\n')
    process.exitCode = 2
    return
  }
  const configFile = path.join(dir, 'config.yaml')
  fs.writeFileSync(configFile, configText(dir, uplink))
  const server = await runServer(configFile)
  server.listen(0, HOST, () => {
    process.stdout.write(`${JSON.stringify({ url: `http://${HOST}:${server.address().port}/` })}\n`)
  })
}

main().catch((error) => {
  process.stderr.write(`local-registry: ${error.stack}\n`)
  process.exitCode = 1
})
