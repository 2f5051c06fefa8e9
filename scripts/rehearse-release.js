#!/usr/bin/env node
'use strict'

// `npm run release:rehearse`: the release's publish steps for this machine's target, against a
// throwaway registry, then `npm install ironlock` by name from it into a fresh app, as a user would.
//
// - A copy of the checkout (its files but the gitignored ones) in a temp dir, with `napi.targets` narrowed to the
//   host's target, and the host's built binary laid out as the workflow downloads its artifacts.
// - A local registry (scripts/local-registry.js: verdaccio on a free loopback port).
// - scripts/publish-release.js in the copy, the publish job's own steps, to that registry.
// - A fresh app: `npm install ironlock`; checks that the platform package resolved and its binary
//   loads, that no installed package has an install script, and runs the README's quick start
//   (against a redis-server on a free loopback port) and `npx ironlock demo` there.
//
// Everything runs in the temp dir, which is removed with the registry and redis-server at the end;
// the checkout is only read. docs/RELEASING.md says where this differs from the workflow.

const { execFileSync, spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')
const { startRedis, stopAll } = require('../__test__/helpers/redis-server')
const { codeBlocks } = require('../__test__/fixtures/readme-snippets')

const ROOT = path.join(__dirname, '..')
const HOST_TARGET = 'x86_64-unknown-linux-gnu'
const HOST_PLATFORM = 'linux-x64-gnu'
const STEP_TIMEOUT_MS = 5 * 60 * 1000
const REGISTRY_START_TIMEOUT_MS = 60000
const REGISTRY_STOP_GRACE_MS = 5000
const INSTALL_TIME_SCRIPTS = ['preinstall', 'install', 'postinstall', 'prepare']
const STOP_SIGNALS = ['SIGINT', 'SIGTERM']

/** The registry's process while it runs, for a signal's cleanup, which cannot wait. */
let registryProcess = null

const readManifest = (file) => JSON.parse(fs.readFileSync(file, 'utf8'))

/** Prints `ok: <what>`, or throws with what was found instead. */
function check(what, holds, found) {
  if (!holds) throw new Error(`expected ${what}; found ${found}`)
  process.stdout.write(`ok: ${what}\n`)
}

/** Runs a command to completion (output shown, or returned with `capture`); throws unless it exits with 0. */
function run(command, args, { cwd, env, capture = false }) {
  try {
    return execFileSync(command, args, {
      cwd, env, encoding: 'utf8', timeout: STEP_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024,
      stdio: capture ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    })
  } catch (error) {
    throw new Error(`${command} ${args.join(' ')} (in ${cwd}) failed: ${error.message}\n${error.stdout ?? ''}${error.stderr ?? ''}`)
  }
}

/** The host's own binary, built from this checkout; the rehearsal publishes it. */
function hostBinary() {
  const glibc = process.report?.getReport().header.glibcVersionRuntime
  if (`${process.platform}-${process.arch}` !== 'linux-x64' || !glibc) {
    throw new Error(`the rehearsal publishes the ${HOST_PLATFORM} package; this is ${process.platform}-${process.arch}`)
  }
  const binary = path.join(ROOT, `ironlock.${HOST_PLATFORM}.node`)
  if (!fs.existsSync(binary)) throw new Error(`no ${path.basename(binary)}: run \`npm run build\` first`)
  return binary
}

/** The checkout's files as they are in the working tree, without the ignored ones (builds, node_modules). */
function copyCheckout(destination) {
  const listed = run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, capture: true })
  for (const file of listed.split('\0').filter(Boolean)) {
    const source = path.join(ROOT, file)
    if (!fs.existsSync(source)) continue // deleted in the working tree
    fs.mkdirSync(path.dirname(path.join(destination, file)), { recursive: true })
    fs.copyFileSync(source, path.join(destination, file))
  }
}

/** Starts scripts/local-registry.js; resolves its URL and a `stop()` once it listens. */
function startRegistry(dir, uplink) {
  const log = fs.openSync(path.join(dir, 'registry.log'), 'a')
  const child = spawn(process.execPath, [path.join(__dirname, 'local-registry.js'), dir, uplink], {
    cwd: ROOT, stdio: ['ignore', 'pipe', log],
  })
  fs.closeSync(log)
  registryProcess = child
  const exited = new Promise((resolve) => child.once('exit', resolve)).finally(() => {
    registryProcess = null
  })
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), REGISTRY_STOP_GRACE_MS)
    await exited
    clearTimeout(timer)
  }
  const logText = () => fs.readFileSync(path.join(dir, 'registry.log'), 'utf8')
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop().then(() => reject(new Error(`the local registry did not start in ${REGISTRY_START_TIMEOUT_MS} ms:\n${logText()}`)))
    }, REGISTRY_START_TIMEOUT_MS)
    exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`the local registry exited with ${code}:\n${logText()}`))
    })
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer)
      resolve({ url: JSON.parse(line).url, stop })
    })
  })
}

/** npm's environment for the rehearsal: the local registry, and none of the machine's npm settings or tokens. */
function npmEnvironment(work, registry) {
  const { host } = new URL(registry)
  const userconfig = path.join(work, 'npmrc')
  // verdaccio lets anyone publish ironlock*, but npm publishes only with some credential.
  fs.writeFileSync(userconfig, `registry=${registry}\n//${host}/:_authToken=rehearsal-only\n`)
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)))
  return { ...inherited, npm_config_userconfig: userconfig, npm_config_registry: registry, npm_config_update_notifier: 'false' }
}

/** The checkout's copy with the host's target only, and the binary where the workflow's artifacts go. */
function prepareRelease(work, binary) {
  const repo = path.join(work, 'repo')
  copyCheckout(repo)
  const manifestFile = path.join(repo, 'package.json')
  const manifest = readManifest(manifestFile)
  manifest.napi.targets = [HOST_TARGET]
  fs.writeFileSync(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`)
  const artifacts = path.join(work, 'artifacts')
  fs.mkdirSync(path.join(artifacts, `bindings-${HOST_TARGET}`), { recursive: true })
  fs.copyFileSync(binary, path.join(artifacts, `bindings-${HOST_TARGET}`, path.basename(binary)))
  return { repo, artifacts, manifest }
}

/** `npm install ironlock` into a fresh app, with its own npm cache so every package comes from the registry. */
function installApp(work, env) {
  const app = path.join(work, 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), `${JSON.stringify({ name: 'rehearsal-app', version: '1.0.0', private: true }, null, 2)}\n`)
  run('npm', ['install', 'ironlock', '--no-audit', '--no-fund', '--cache', path.join(work, 'app-npm-cache')], { cwd: app, env })
  return app
}

function checkInstalled(app, manifest, env) {
  const modules = path.join(app, 'node_modules')
  const platformPackage = `${manifest.name}-${HOST_PLATFORM}`
  const installed = readManifest(path.join(modules, manifest.name, 'package.json'))
  check(`${manifest.name}@${manifest.version} installed from the registry`, installed.version === manifest.version, installed.version)
  check(`it declares ${platformPackage}@${manifest.version}`, installed.optionalDependencies?.[platformPackage] === manifest.version,
    JSON.stringify(installed.optionalDependencies))
  const platformManifest = path.join(modules, platformPackage, 'package.json')
  const platformVersion = fs.existsSync(platformManifest) ? readManifest(platformManifest).version : 'not installed'
  check(`${platformPackage}@${manifest.version} resolved beside it`, platformVersion === manifest.version, platformVersion)
  const mainBinaries = fs.readdirSync(path.join(modules, manifest.name), { recursive: true }).filter((file) => file.endsWith('.node'))
  check(`no .node file in ${manifest.name} itself`, mainBinaries.length === 0, mainBinaries.join(', '))

  const loaded = JSON.parse(run(process.execPath, ['-e', `
    const ironlock = require('ironlock')
    const binaries = Object.keys(require.cache).filter((file) => file.endsWith('.node'))
    console.log(JSON.stringify({ locker: typeof ironlock.Locker, binaries }))
  `], { cwd: app, env, capture: true }))
  const expected = fs.realpathSync(path.join(modules, platformPackage, `ironlock.${HOST_PLATFORM}.node`))
  check(`require('ironlock') loads ${path.relative(app, expected)}`,
    loaded.locker === 'function' && loaded.binaries.length === 1 && loaded.binaries[0] === expected, JSON.stringify(loaded))

  const lock = readManifest(path.join(app, 'package-lock.json'))
  const packages = Object.keys(lock.packages).filter((key) => key !== '')
  const withInstallScript = packages.filter((key) => {
    const scripts = readManifest(path.join(app, key, 'package.json')).scripts ?? {}
    return lock.packages[key].hasInstallScript || INSTALL_TIME_SCRIPTS.some((name) => name in scripts) ||
      fs.existsSync(path.join(app, key, 'binding.gyp'))
  })
  check(`no install script in the ${packages.length} installed packages`, withInstallScript.length === 0, withInstallScript.join(', '))
}

async function runQuickStart(app, env) {
  const quickStart = codeBlocks(path.join(app, 'node_modules', 'ironlock', 'README.md')).find(({ lang }) => lang === 'js')
  check("the README's quick start requires ironlock", /require\('ironlock'\)/.test(quickStart?.code ?? ''), quickStart?.code)
  fs.writeFileSync(path.join(app, 'quick-start.js'), quickStart.code)
  const server = await startRedis()
  const redis = server.client()
  try {
    const output = run(process.execPath, ['quick-start.js'], { cwd: app, env: { ...env, REDIS_URL: server.url }, capture: true })
    process.stdout.write(output)
    const fences = await redis.keys('ironlock:fence:*')
    check(`the quick start locked on the redis-server at ${server.url}`, fences.length > 0, 'no fencing counter there')
  } finally {
    redis.disconnect()
  }
}

function runCli(app, manifest, env) {
  // `--no`: run the app's own bin, install nothing; `--`: the rest is ironlock's, not npx's.
  const version = run('npx', ['--no', '--', 'ironlock', '--version'], { cwd: app, env, capture: true })
  check(`npx ironlock --version prints ${manifest.version}`, version === `${manifest.version}\n`, JSON.stringify(version))
  const demo = run('npx', ['--no', '--', 'ironlock', 'demo'], { cwd: app, env, capture: true })
  process.stdout.write(demo)
  check('npx ironlock demo: with ironlock, 10 pairs sold and none oversold', /^ironlock using\(\)\s+10\s+0\s/m.test(demo), 'another row')
}

async function rehearse(work) {
  const binary = hostBinary()
  const uplink = run('npm', ['config', 'get', 'registry'], { cwd: ROOT, capture: true }).trim()
  const { repo, artifacts, manifest } = prepareRelease(work, binary)
  const registry = await startRegistry(work, uplink)
  try {
    const { hostname } = new URL(registry.url)
    if (hostname !== '127.0.0.1') throw new Error(`refusing to rehearse against ${registry.url}: not a loopback registry`)
    process.stdout.write(`local registry ${registry.url} (uplink ${uplink}, not for ironlock*), in ${work}\n`)
    const env = npmEnvironment(work, registry.url)

    run(process.execPath, ['scripts/publish-release.js', '--artifacts', artifacts, '--registry', registry.url], { cwd: repo, env })

    process.stdout.write('\n== a fresh app: npm install ironlock\n')
    const app = installApp(work, env)
    checkInstalled(app, manifest, env)
    process.stdout.write("\n== the README's quick start, and the CLI\n")
    await runQuickStart(app, env)
    runCli(app, manifest, env)
  } finally {
    await registry.stop()
    await stopAll()
  }
}

async function main() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ironlock-rehearsal-'))
  const started = Date.now()
  // On a signal: stop the registry, and exit, which runs the redis-server helper's exit hook.
  const interrupted = (signal) => {
    registryProcess?.kill('SIGKILL')
    fs.rmSync(work, { recursive: true, force: true })
    process.exit(128 + os.constants.signals[signal])
  }
  for (const signal of STOP_SIGNALS) process.once(signal, interrupted)
  try {
    await rehearse(work)
    process.stdout.write(`\nrelease rehearsal passed in ${((Date.now() - started) / 1000).toFixed(0)} s\n`)
  } catch (error) {
    process.stderr.write(`\nrelease rehearsal failed: ${error.message}\n`)
    process.exitCode = 1
  } finally {
    for (const signal of STOP_SIGNALS) process.off(signal, interrupted)
    fs.rmSync(work, { recursive: true, force: true })
  }
}

main()
