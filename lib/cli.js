#!/usr/bin/env node
'use strict'

// `npx ironlock <command>`. Exit codes: 0 done (and --help, --version), 1 the command failed,
// 2 bad usage.

const { parseArgs } = require('node:util')

const USAGE = `Usage: ironlock <command> [options]

Commands:
  demo [--redis URL]  100 concurrent orders for 10 pairs of sneakers, three ways: without a lock,
                      with a hand-rolled SET NX EX lock, and with ironlock. Runs in this process
                      (memory://) unless --redis URL is given; --redis needs the ioredis package.

Options:
  -h, --help          show this text
  -v, --version       show ironlock's version
`

const EXIT_FAILED = 1
const EXIT_USAGE = 2

/** The usage text on stderr after `problem`, and exit code 2. */
function usage(problem) {
  process.stderr.write(`ironlock: ${problem}\n\n${USAGE}`)
  process.exitCode = EXIT_USAGE
}

async function main(argv) {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        redis: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
      allowPositionals: true,
    })
  } catch (error) {
    return usage(error.message)
  }
  const { values, positionals } = parsed
  const [command, ...extra] = positionals
  if (values.help) return process.stdout.write(USAGE)
  if (values.version) return process.stdout.write(`${require('../package.json').version}\n`)
  if (command !== 'demo') return usage(command === undefined ? 'no command given' : `unknown command '${command}'`)
  if (extra.length > 0) return usage(`unexpected argument '${extra[0]}'`)

  const { runDemo } = require('./demo')
  try {
    const lines = await runDemo({ redisUrl: values.redis })
    process.stdout.write(`${lines.join('\n')}\n`)
  } catch (error) {
    process.stderr.write(`ironlock demo: ${error.message}\n`)
    process.exitCode = EXIT_FAILED
  }
}

main(process.argv.slice(2))
