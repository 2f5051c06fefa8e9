#!/usr/bin/env node
'use strict'

// Runs ironlock's behaviour suite (__test__/packaging/runtimes/behaviour.cjs) under every runtime
// pinned in scripts/runtimes.js: `npm run test:runtimes`, or `node scripts/test-runtimes.js
// [name…]` for some of them (e.g. `bun deno`).
//
// - Each runtime's binary is fetched from the npm registry with `npm pack`, checked against its
//   pinned integrity and unpacked once into node_modules/.cache/ironlock-runtimes/ (kept between
//   runs, fetched again on a fresh clone); `--version` must then name the pinned version.
// - The suite runs against the package as npm installs it: the files `npm pack` would ship
//   (package.json's `files`) are copied into node_modules/.cache/ironlock-runtimes/app/
//   node_modules/ironlock, and the suite runs with that app as its working directory. (Deno, for
//   one, loads an imported CommonJS `.js` outside node_modules as an ES module: index.mjs fails
//   there when it is imported from the checkout, and works from node_modules, as users have it.)
// - Each run is its own process group, killed whole when it ends, so a suite that crashed or hung
//   leaves no redis-server behind. A suite that printed its last line but did not exit fails: on
//   that runtime something kept the event loop alive after close().
//
// Prints each suite's output, then one summary line per runtime; exits 1 if any failed.

const { spawn, spawnSync } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')
const { runtimes } = require('./runtimes')

const ROOT = path.resolve(__dirname, '..')
const CACHE = path.join(ROOT, 'node_modules', '.cache', 'ironlock-runtimes')
const SUITE = path.join(ROOT, '__test__', 'packaging', 'runtimes', 'behaviour.cjs')
const SUITE_TIMEOUT_MS = 180000
// How long a suite may take to exit after printing its summary line.
const EXIT_GRACE_MS = 10000
const SUMMARY_LINE = /^(\d+) passed, (\d+) failed$/

class RuntimeError extends Error {}

// The suite's process while one runs: its group is not the terminal's, so an interrupt of this
// script must end it explicitly.
let running = null

function npm(args, options) {
  const result = spawnSync('npm', args, { encoding: 'utf8', ...options })
  if (result.error || result.status !== 0) {
    throw new RuntimeError(`\`npm ${args.join(' ')}\` failed: ${result.error?.message ?? result.stderr.trim()}`)
  }
  return result.stdout
}

function sri(file) {
  return 'sha512-' + crypto.createHash('sha512').update(fs.readFileSync(file)).digest('base64')
}

/** The runtime's executable, fetched into the cache unless it is there already. */
function fetchRuntime(runtime) {
  const platform = `${process.platform}-${process.arch}`
  const binary = runtime.binaries[platform]
  if (binary === undefined) {
    throw new RuntimeError(`no ${runtime.package} binary is pinned for ${platform}: add one to scripts/runtimes.js`)
  }
  const spec = `${binary.package}@${runtime.version}`
  const dir = path.join(CACHE, spec.replace('/', '+'))
  const stamp = path.join(dir, '.ironlock-runtime')
  if (!fs.existsSync(stamp) || fs.readFileSync(stamp, 'utf8').trim() !== binary.integrity) {
    process.stdout.write(`fetching ${spec} from the npm registry (${runtime.package}@${runtime.version})\n`)
    fs.mkdirSync(CACHE, { recursive: true })
    const work = fs.mkdtempSync(path.join(CACHE, '.fetch-'))
    try {
      const packed = JSON.parse(npm(['pack', spec, '--json', '--pack-destination', work], { cwd: work }))
      const tarball = path.join(work, packed[0].filename)
      const integrity = sri(tarball)
      if (integrity !== binary.integrity) {
        throw new RuntimeError(`${spec} does not match its pinned integrity:\n  expected ${binary.integrity}\n  got      ${integrity}`)
      }
      const untar = spawnSync('tar', ['-xzf', tarball, '-C', work, `package/${binary.path}`], { encoding: 'utf8' })
      if (untar.error || untar.status !== 0) {
        throw new RuntimeError(`could not unpack ${spec}: ${untar.error?.message ?? untar.stderr.trim()}`)
      }
      fs.writeFileSync(path.join(work, 'package', '.ironlock-runtime'), binary.integrity + '\n')
      fs.rmSync(dir, { recursive: true, force: true })
      fs.renameSync(path.join(work, 'package'), dir)
    } finally {
      fs.rmSync(work, { recursive: true, force: true })
    }
  }
  const executable = path.join(dir, binary.path)
  const version = spawnSync(executable, ['--version'], { encoding: 'utf8', timeout: 30000 })
  if (version.error || version.status !== 0 || !version.stdout.includes(runtime.version)) {
    throw new RuntimeError(
      `${executable} --version did not name ${runtime.version}: ` +
        `${version.error?.message ?? (version.stdout + version.stderr).trim()}`,
    )
  }
  return executable
}

/** An app directory with ironlock installed as npm would install it; returns the app's path. */
function installPackage() {
  const app = path.join(CACHE, 'app')
  const installed = path.join(app, 'node_modules', 'ironlock')
  fs.rmSync(app, { recursive: true, force: true })
  fs.mkdirSync(app, { recursive: true })
  // A package of its own: without it, Bun and Deno would take the checkout's package.json above
  // as the app's, and resolve `ironlock` to the checkout (a package may require itself by name).
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'ironlock-runtimes-app', private: true }) + '\n')
  // --ignore-scripts: prepack would rewrite package.json in the checkout.
  const [{ files }] = JSON.parse(npm(['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT }))
  for (const { path: file } of files) {
    fs.mkdirSync(path.dirname(path.join(installed, file)), { recursive: true })
    fs.copyFileSync(path.join(ROOT, file), path.join(installed, file))
  }
  return app
}

/** Kills the run's process group: the runtime and any redis-server it left. */
function killGroup(child) {
  try {
    process.kill(-child.pid, 'SIGKILL')
  } catch {
    // The group is gone already.
  }
}

/** Runs the suite under `executable`; resolves `{ passed, failed, problem }`. */
function runSuite(runtime, executable, app) {
  return new Promise((resolve) => {
    const child = spawn(executable, [...runtime.args, SUITE], {
      cwd: app,
      // DENO_DIR: Deno keeps its own cache (transpiled code) beside ours, not in ~/.cache.
      env: { ...process.env, DENO_DIR: path.join(CACHE, 'deno-dir'), ...runtime.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    running = child
    let summary = null
    let problem = null
    let pending = ''
    let exitTimer = null
    const timeout = setTimeout(() => {
      problem = `no result within ${SUITE_TIMEOUT_MS / 1000} s`
      killGroup(child)
    }, SUITE_TIMEOUT_MS)

    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk)
      const lines = (pending + chunk).split('\n')
      pending = lines.pop()
      for (const line of lines) {
        const match = SUMMARY_LINE.exec(line.trim())
        if (match === null) continue
        summary = { passed: Number(match[1]), failed: Number(match[2]) }
        exitTimer = setTimeout(() => {
          problem = `did not exit within ${EXIT_GRACE_MS / 1000} s of its last line: something kept the event loop alive`
          killGroup(child)
        }, EXIT_GRACE_MS)
      }
    })
    child.stderr.pipe(process.stderr, { end: false })
    child.on('error', (error) => {
      problem = `could not start: ${error.message}`
    })
    child.on('close', (code, signal) => {
      running = null
      clearTimeout(timeout)
      clearTimeout(exitTimer)
      killGroup(child)
      if (problem === null && summary === null) problem = `exited (${signal ?? `code ${code}`}) without a summary line`
      if (problem === null && summary.failed === 0 && code !== 0) problem = `exited with code ${code}`
      resolve({ passed: summary?.passed ?? 0, failed: summary?.failed ?? 0, problem })
    })
  })
}

async function main() {
  for (const interrupt of ['SIGINT', 'SIGTERM']) {
    process.once(interrupt, () => {
      if (running !== null) killGroup(running)
      process.exit(1)
    })
  }
  const wanted = process.argv.slice(2)
  const unknown = wanted.filter((name) => !runtimes.some((runtime) => runtime.name === name))
  if (unknown.length > 0) {
    throw new RuntimeError(`unknown runtime ${unknown.join(', ')}; known: ${runtimes.map((r) => r.name).join(', ')}`)
  }
  const chosen = wanted.length === 0 ? runtimes : runtimes.filter((runtime) => wanted.includes(runtime.name))
  const app = installPackage()
  const results = []
  for (const runtime of chosen) {
    const label = `${runtime.name} (${runtime.package} ${runtime.version})`
    process.stdout.write(`\n== ${label}\n`)
    let executable
    try {
      executable = fetchRuntime(runtime)
    } catch (error) {
      if (!(error instanceof RuntimeError)) throw error
      results.push({ label, passed: 0, failed: 0, problem: error.message, seconds: 0 })
      continue
    }
    const started = Date.now()
    const result = await runSuite(runtime, executable, app)
    results.push({ label, ...result, seconds: (Date.now() - started) / 1000 })
  }

  process.stdout.write('\nruntimes:\n')
  for (const { label, seconds, passed, failed, problem } of results) {
    const verdict = problem === null && failed === 0 ? 'ok  ' : 'FAIL'
    const detail = problem === null ? '' : `; ${problem}`
    process.stdout.write(`  ${verdict} ${label.padEnd(26)} ${passed} passed, ${failed} failed${detail} (${seconds.toFixed(1)} s)\n`)
  }
  const failures = results.filter(({ failed, problem }) => failed > 0 || problem !== null)
  if (failures.length > 0) {
    process.stdout.write(`${failures.length} of ${results.length} runtimes failed\n`)
    process.exitCode = 1
  }
}

main().catch((error) => {
  if (!(error instanceof RuntimeError)) throw error
  process.stderr.write(`scripts/test-runtimes.js: ${error.message}\n`)
  process.exitCode = 1
})
