'use strict'

// How ironlock finds its native addon (lib/native.js in front of the generated binding.js): from a
// platform package laid out as npm installs it, and, where no binary fits, one clear error. Also
// that the platform packages in npm/ are the ones package.json's napi.targets names. No Redis.

const { execFile } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { promisify } = require('node:util')

const ROOT = path.join(__dirname, '..', '..')
const pkg = require('../../package.json')
const { platformArchAbi, ERROR_CODE } = require('../../lib/native')

const run = promisify(execFile)
const LOAD = path.join(__dirname, '..', 'fixtures', 'load-ironlock.js')
const OTHER_PLATFORM = path.join(__dirname, '..', 'fixtures', 'other-platform.js')
const TARGETS = pkg.napi.targets.map(platformArchAbi)
const PACKAGES = TARGETS.map((t) => `${pkg.name}-${t}`)

let layout // a temporary project: node_modules/ironlock as npm installs it from the registry

/** Copies the main package as the registry has it (package.json's `files`, no Cargo.toml, no .node). */
function makeLayout() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ironlock-layout-'))
  const main = path.join(dir, 'node_modules', pkg.name)
  fs.mkdirSync(main, { recursive: true })
  for (const entry of [...pkg.files.filter((f) => !f.includes('*')), 'package.json']) {
    fs.cpSync(path.join(ROOT, entry), path.join(main, entry), { recursive: true })
  }
  return { dir, main }
}

beforeAll(() => {
  layout = makeLayout()
})

afterAll(() => {
  if (layout) fs.rmSync(layout.dir, { recursive: true, force: true })
})

/** Runs load-ironlock.js (in a process that may claim another platform) and returns its JSON. */
async function load({ platform, from, env = {} } = {}) {
  const args = platform ? ['-r', OTHER_PLATFORM, LOAD] : [LOAD]
  if (from) args.push(from)
  const childEnv = { ...process.env, ...env }
  delete childEnv.NAPI_RS_NATIVE_LIBRARY_PATH
  if (platform) childEnv.IRONLOCK_TEST_PLATFORM = platform
  const { stdout } = await run(process.execPath, args, { env: childEnv, timeout: 20000 })
  return JSON.parse(stdout)
}

describe('when no binary fits, require("ironlock") throws one clear error', () => {
  test('on a platform with no prebuilt package: what it looked for, what exists, how to build', async () => {
    const { threw } = await load({ platform: 'freebsd-x64', from: layout.main })
    expect(threw).toBeDefined()
    expect(threw.code).toBe(ERROR_CODE)
    expect(threw.code).toBe('ERR_IRONLOCK_NATIVE_BINDING')
    expect(threw.platform).toBe('freebsd-x64')
    expect(threw.packages).toEqual([])
    expect(threw.cause).toBe(true)
    const message = threw.message
    expect(message).toContain(`${pkg.name} has no prebuilt native addon for freebsd-x64`)
    for (const name of PACKAGES) expect(message).toContain(name)
    expect(message).toContain('https://rustup.rs')
    expect(message).toContain(`#v${pkg.version}`)
    expect(message).toContain(`npm rebuild ${pkg.name}\` cannot`)
    // not the generated loader's message, which blames an npm bug
    expect(message).not.toMatch(/npm has a bug/)
  })

  test('on Linux it names the C library it detected', async () => {
    const { threw } = await load({ platform: 'linux-riscv64', from: layout.main })
    expect(threw.code).toBe(ERROR_CODE)
    expect(threw.message).toMatch(/no prebuilt native addon for linux-riscv64 (with glibc \d+\.\d+|with musl libc|\(C library not detected; assuming glibc\))/)
    expect(threw.message).toMatch(/it would be ironlock-linux-riscv64-(gnu|musl)\)/)
  })

  test('on a supported platform whose package is missing: names the package and version that fit', async () => {
    const { threw } = await load({ platform: 'darwin-arm64', from: layout.main })
    expect(threw.code).toBe(ERROR_CODE)
    expect(threw.platform).toBe('darwin-arm64')
    expect(threw.packages).toEqual([`${pkg.name}-darwin-arm64`])
    expect(threw.message).toContain(`${pkg.name}-darwin-arm64@${pkg.version}, is not installed`)
    expect(threw.message).toContain('--omit=optional')
    expect(threw.message).toContain('https://rustup.rs')
  })

  test('Windows on arm64 looks for the msvc package', async () => {
    const { threw } = await load({ platform: 'win32-arm64', from: layout.main })
    expect(threw.packages).toEqual([`${pkg.name}-win32-arm64-msvc`])
  })

  test('the git install it advises names the repository over https, at the version\'s tag', () => {
    const { gitInstallSpec } = require('../../lib/native')
    const spec = (repository) => gitInstallSpec({ repository, version: '1.2.3' })
    expect(spec('git+ssh://git@github.com/acme/ironlock.git')).toBe('git+https://github.com/acme/ironlock.git#v1.2.3')
    expect(spec({ type: 'git', url: 'git+https://github.com/acme/ironlock.git' })).toBe('git+https://github.com/acme/ironlock.git#v1.2.3')
    expect(spec('https://github.com/acme/ironlock')).toBe('git+https://github.com/acme/ironlock#v1.2.3')
    expect(spec('acme/ironlock')).toBe('github:acme/ironlock#v1.2.3')
    expect(spec(undefined)).toBeNull()
  })

  test('in a source checkout it says to run npm run build', async () => {
    const { threw } = await load({ platform: 'freebsd-x64' })
    expect(threw.code).toBe(ERROR_CODE)
    expect(threw.message).toContain(`This is a source checkout of ${pkg.name}`)
    expect(threw.message).toContain('`npm run build`')
    expect(threw.message).toContain('https://rustup.rs')
  })

  test('a NAPI_RS_NATIVE_LIBRARY_PATH that does not load is named', async () => {
    const missing = path.join(os.tmpdir(), 'ironlock-no-such-addon.node')
    const args = [LOAD]
    const env = { ...process.env, NAPI_RS_NATIVE_LIBRARY_PATH: missing }
    const { stdout } = await run(process.execPath, args, { env, timeout: 20000 })
    const { threw } = JSON.parse(stdout)
    expect(threw.code).toBe(ERROR_CODE)
    expect(threw.message).toContain(`NAPI_RS_NATIVE_LIBRARY_PATH names ${missing}, and it did not load`)
  })
})

describe('installed as npm installs it: the main package, and beside it the platform package', () => {
  let host // this machine's platform-arch-abi, from the binary the repository loads
  let binary
  let dir

  beforeAll(async () => {
    const { loaded } = await load()
    expect(loaded).toHaveLength(1)
    binary = loaded[0]
    host = path.basename(binary).replace(/^ironlock\.|\.node$/g, '')
    expect(TARGETS).toContain(host)
    dir = makeLayout().dir
    fs.cpSync(path.join(ROOT, 'npm', host), path.join(dir, 'node_modules', `${pkg.name}-${host}`), { recursive: true })
  })

  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  const mainDir = () => path.join(dir, 'node_modules', pkg.name)
  const platformBinary = () => path.join(dir, 'node_modules', `${pkg.name}-${host}`, `ironlock.${host}.node`)

  test('the main package carries no binary and loads the one in the platform package', async () => {
    fs.copyFileSync(binary, platformBinary())
    expect(fs.readdirSync(mainDir()).filter((f) => f.endsWith('.node'))).toEqual([])
    const outcome = await load({ from: mainDir() })
    expect(outcome.threw).toBeUndefined()
    expect(outcome.result).toBe('held')
    expect(outcome.loaded).toEqual([fs.realpathSync(platformBinary())])
  })

  test('a platform package whose binary does not load: the error says so, with the reason', async () => {
    fs.writeFileSync(platformBinary(), 'not a shared library\n')
    const { threw } = await load({ from: mainDir() })
    expect(threw.code).toBe(ERROR_CODE)
    expect(threw.message).toContain(`(${pkg.name}-${host}@${pkg.version}) is there but did not load: `)
  })
})

describe('the platform packages', () => {
  const OS = { linux: 'linux', darwin: 'darwin', win32: 'win32' }
  const LIBC = { gnu: 'glibc', musl: 'musl' }

  test('napi.targets covers Linux x64/arm64 (glibc and musl), macOS x64/arm64 and Windows x64/arm64', () => {
    expect([...TARGETS].sort()).toEqual([
      'darwin-arm64', 'darwin-x64',
      'linux-arm64-gnu', 'linux-arm64-musl', 'linux-x64-gnu', 'linux-x64-musl',
      'win32-arm64-msvc', 'win32-x64-msvc',
    ])
  })

  test('npm/ holds one package per target, named and constrained so npm installs only the one that fits', () => {
    const dirs = fs.readdirSync(path.join(ROOT, 'npm')).sort()
    expect(dirs).toEqual([...TARGETS].sort())
    for (const target of TARGETS) {
      const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'npm', target, 'package.json'), 'utf8'))
      const [platform, arch, abi] = target.split('-')
      expect(manifest.name).toBe(`${pkg.name}-${target}`)
      expect(manifest.version).toBe(pkg.version)
      expect(manifest.os).toEqual([OS[platform]])
      expect(manifest.cpu).toEqual([arch])
      if (LIBC[abi]) expect(manifest.libc).toEqual([LIBC[abi]])
      else expect(manifest.libc).toBeUndefined()
      expect(manifest.main).toBe(`ironlock.${target}.node`)
      expect(manifest.files).toEqual([`ironlock.${target}.node`])
      expect(manifest.engines).toEqual(pkg.engines)
      expect(manifest.license).toBe(pkg.license)
      // npm publish --provenance checks each package's repository against the workflow's.
      expect({ repository: manifest.repository, homepage: manifest.homepage, bugs: manifest.bugs })
        .toEqual({ repository: pkg.repository, homepage: pkg.homepage, bugs: pkg.bugs })
      expect(manifest.scripts).toBeUndefined()
    }
  })

  test('the generated loader knows every platform package, at this version', () => {
    const loader = fs.readFileSync(path.join(ROOT, 'binding.js'), 'utf8')
    for (const name of PACKAGES) expect(loader).toContain(`require('${name}')`)
    const versions = new Set([...loader.matchAll(/mismatch, expected ([^ ]+) but got/g)].map((m) => m[1]))
    expect([...versions]).toEqual([pkg.version])
  })

  test('the main package runs nothing at install: no install scripts, no binding.gyp', () => {
    for (const script of ['preinstall', 'install', 'postinstall']) expect(pkg.scripts[script]).toBeUndefined()
    expect(fs.existsSync(path.join(ROOT, 'binding.gyp'))).toBe(false)
  })
})
