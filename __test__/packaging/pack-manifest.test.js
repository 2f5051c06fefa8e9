'use strict'

// What `npm pack` and `npm publish` pack (scripts/pack-manifest.js around them): a release's main
// package carries no binary and declares its platform packages, a clone's `npm pack` carries the
// built addon. Each case runs npm in a copy of the package, as a clean clone has it, with a
// registry on a loopback port where nothing listens, so nothing can reach a real registry.

const { execFile } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const ROOT = path.join(__dirname, '..', '..')
const pkg = require('../../package.json')
const STEP_TIMEOUT_MS = 60000
const BUILT_ADDON = `${pkg.napi.binaryName}.linux-x64-gnu.node`
const INSTALL_TIME_SCRIPTS = ['preinstall', 'install', 'postinstall', 'prepare']

let work
let deadRegistry

/** A loopback URL on a port that was free a moment ago: npm's requests there are refused. */
function unusedLoopbackUrl() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(`http://127.0.0.1:${port}/`))
    })
  })
}

/** The environment minus what an enclosing `npm run` exported, so only our flags configure npm. */
function npmEnvironment() {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)))
  return { ...env, npm_config_registry: deadRegistry, npm_config_cache: path.join(work, 'npm-cache'),
    npm_config_userconfig: path.join(work, 'no-user-npmrc'), npm_config_update_notifier: 'false' }
}

function npm(args, cwd) {
  return new Promise((resolve) => {
    execFile('npm', args, { cwd, env: npmEnvironment(), timeout: STEP_TIMEOUT_MS }, (error, stdout, stderr) => {
      resolve({ code: error ? error.code ?? error.signal : 0, stdout, stderr })
    })
  })
}

/** A copy of the package as a clone has it (no node_modules), with `changes` applied to package.json. */
function copyPackage(name, { changes = {}, builtAddon = false } = {}) {
  const dir = path.join(work, name)
  for (const entry of [...pkg.files.filter((f) => !f.includes('*')), 'README.md', 'LICENSE', 'scripts/pack-manifest.js']) {
    fs.cpSync(path.join(ROOT, entry), path.join(dir, entry), { recursive: true })
  }
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify({ ...pkg, ...changes }, null, 2)}\n`)
  if (builtAddon) fs.writeFileSync(path.join(dir, BUILT_ADDON), 'stands in for the built addon\n')
  return dir
}

/** optionalDependencies as `napi pre-publish` writes them: one platform package per target. */
function platformPackages(version = pkg.version) {
  const suffixes = fs.readdirSync(path.join(ROOT, 'npm'))
  return Object.fromEntries(suffixes.map((suffix) => [`${pkg.name}-${suffix}`, version]))
}

/** The packed files of `npm pack --dry-run --json` or `npm publish --dry-run --json`. */
function packedFiles(stdout) {
  const report = JSON.parse(stdout)
  const entry = Array.isArray(report) ? report[0] : Object.values(report)[0]
  return entry.files.map((file) => file.path)
}

/** Asserts the copy's package.json is back as it was, with nothing left aside. */
function expectRestored(dir) {
  expect(JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).scripts.prepare).toBe('npm run build')
  expect(fs.existsSync(path.join(dir, '.package.json.prepack'))).toBe(false)
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ironlock-pack-manifest-'))
  deadRegistry = await unusedLoopbackUrl()
})

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true })
})

test('npm publish --dry-run from a clean clone lists the release\'s main package: no binary, and says a real publish needs the platform packages', async () => {
  const dir = copyPackage('clean-clone')
  const result = await npm(['publish', '--dry-run', '--json', '--offline'], dir)
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: expect.stringContaining('a real publish would be refused') })
  const files = packedFiles(result.stdout)
  expect(files).toEqual(expect.arrayContaining(['package.json', 'index.js', 'binding.js', 'lib/cli.js']))
  expect(files.filter((file) => file.endsWith('.node'))).toEqual([])
  expectRestored(dir)
}, STEP_TIMEOUT_MS)

test('a real npm publish whose package.json declares no platform packages is refused before it packs, even beside a built addon', async () => {
  const dir = copyPackage('unreleased', { builtAddon: true })
  const before = fs.readFileSync(path.join(dir, 'package.json'), 'utf8')
  const result = await npm(['publish'], dir)
  expect(result.code).not.toBe(0)
  expect(result.stderr).toContain('refusing to publish: package.json declares no platform packages')
  expect(result.stderr).not.toMatch(/npm notice Publishing to/)
  expect(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).toBe(before)
  expect(fs.existsSync(path.join(dir, '.package.json.prepack'))).toBe(false)
}, STEP_TIMEOUT_MS)

test('once package.json declares every platform package at its version, the main package packs no binary, even with one in the checkout', async () => {
  const dir = copyPackage('released', { changes: { optionalDependencies: platformPackages() }, builtAddon: true })
  const dryRun = await npm(['pack', '--dry-run', '--json'], dir)
  expect(dryRun.code).toBe(0)
  expect(packedFiles(dryRun.stdout).filter((file) => file.endsWith('.node'))).toEqual([])

  const pack = await npm(['pack', '--pack-destination', work], dir)
  expect(pack.code).toBe(0)
  const tarball = path.join(work, pack.stdout.trim().split('\n').pop())
  const unpacked = path.join(work, 'released-unpacked')
  fs.mkdirSync(unpacked)
  await new Promise((resolve, reject) => execFile('tar', ['-xzf', tarball, '-C', unpacked], (error) => (error ? reject(error) : resolve())))
  const packedManifest = JSON.parse(fs.readFileSync(path.join(unpacked, 'package', 'package.json'), 'utf8'))
  expect(packedManifest.optionalDependencies).toEqual(platformPackages())
  expect(packedManifest.files.filter((entry) => entry.endsWith('.node'))).toEqual([])
  for (const name of INSTALL_TIME_SCRIPTS) expect({ name, script: packedManifest.scripts[name] }).toEqual({ name, script: undefined })
  expectRestored(dir)
  expect(JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).files).toEqual(pkg.files)
}, STEP_TIMEOUT_MS)

test('platform packages that miss a target, or are at another version, are refused', async () => {
  const all = platformPackages()
  const oneMissing = Object.fromEntries(Object.entries(all).slice(1))
  const otherVersion = platformPackages('0.0.1')
  for (const [name, optionalDependencies] of [['one-missing', oneMissing], ['other-version', otherVersion]]) {
    const dir = copyPackage(name, { changes: { optionalDependencies }, builtAddon: true })
    const result = await npm(['pack', '--dry-run', '--json'], dir)
    expect({ name, refused: result.code !== 0 }).toEqual({ name, refused: true })
    expect(result.stderr).toContain(`declares one platform package per napi target (${pkg.napi.targets.length}) at ${pkg.version}`)
    expectRestored(dir)
  }
}, 2 * STEP_TIMEOUT_MS)

test('npm pack in a clone without a built addon is refused, and says to build', async () => {
  const dir = copyPackage('unbuilt')
  const result = await npm(['pack', '--dry-run', '--json'], dir)
  expect(result.code).not.toBe(0)
  expect(result.stderr).toContain('no built addon (ironlock.<platform>.node) to pack: run `npm run build` first')
  expectRestored(dir)
}, STEP_TIMEOUT_MS)
