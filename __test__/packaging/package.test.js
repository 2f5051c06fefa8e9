'use strict'

// The package as a user downloads it: `npm pack` of this directory, then `npm install <tarball>`
// into a fresh app, offline and with install scripts allowed (there must be none to run), where
// the README's quick start runs against a redis-server the harness started.

const { execFile } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { startRedis, stopAll } = require('../helpers/redis-server')
const { codeBlocks } = require('../fixtures/readme-snippets')

const ROOT = path.join(__dirname, '..', '..')
const REPOSITORY = 'https://github.com/ironlock/ironlock'
/** Scripts npm may run when a package is installed. */
const INSTALL_TIME_SCRIPTS = ['preinstall', 'install', 'postinstall', 'prepare']
const STEP_TIMEOUT_MS = 60000

/** Runs a command; resolves `{ code, stdout, stderr }` whatever the exit code. */
function run(command, args, options = {}) {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: STEP_TIMEOUT_MS, ...options }, (error, stdout, stderr) => {
      resolve({ code: error ? error.code ?? error.signal : 0, stdout, stderr })
    })
  })
}

/** Fails with the command's output unless it exited with 0. */
function succeeded(what, { code, stdout, stderr }) {
  if (code !== 0) throw new Error(`${what} exited with ${code}:\n${stdout}\n${stderr}`)
  return stdout
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function anchorOf(heading) {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')
}

/** The targets of the markdown links of `text`, outside code. */
function linkTargets(text) {
  const prose = text.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '')
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1])
}

let server
let redis
let work
let manifestBefore
let packOutput
let tarball
let packed
let app

beforeAll(async () => {
  server = await startRedis()
  redis = server.client()
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ironlock-package-'))
  manifestBefore = fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')

  const pack = await run('npm', ['pack', '--pack-destination', work], { cwd: ROOT })
  packOutput = `${succeeded('npm pack', pack)}\n${pack.stderr}`
  tarball = path.join(work, fs.readdirSync(work).find((name) => name.endsWith('.tgz')))
  packed = path.join(work, 'unpacked')
  fs.mkdirSync(packed)
  succeeded('tar', await run('tar', ['-xzf', tarball, '-C', packed]))
  packed = path.join(packed, 'package')

  app = path.join(work, 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
  // --offline: with no dependencies the install needs no registry. Scripts are not ignored.
  const install = await run('npm', ['install', tarball, '--offline', '--no-audit', '--no-fund',
    '--cache', path.join(work, 'npm-cache')], { cwd: app })
  succeeded('npm install <tarball>', install)
}, 3 * STEP_TIMEOUT_MS)

afterAll(async () => {
  await stopAll()
  if (work) fs.rmSync(work, { recursive: true, force: true })
})

test('npm pack runs no build (no prepare) and leaves package.json as it was', () => {
  expect(packOutput).not.toMatch(/\bprepare\b|napi build/)
  expect(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).toBe(manifestBefore)
  expect(fs.existsSync(path.join(ROOT, '.package.json.prepack'))).toBe(false)
  // The clone keeps building the addon on `npm install`.
  expect(JSON.parse(manifestBefore).scripts.prepare).toBe('npm run build')
})

test('the package holds the API, the addon, the README and the LICENSE, and nothing of the repository\'s own', () => {
  const files = []
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name)
      if (entry.isDirectory()) walk(file)
      else files.push(path.relative(packed, file))
    }
  }
  walk(packed)
  expect(files).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json', 'index.js', 'index.d.ts',
    'index.mjs', 'binding.js', 'lib/express.d.ts', 'lib/nest.d.ts', 'lib/redlock.d.ts', 'lib/cli.js']))
  expect(files.some((file) => /^ironlock\..+\.node$/.test(file))).toBe(true)
  expect(files.filter((file) => !/^(LICENSE|README\.md|package\.json|index\.(js|d\.ts|mjs)|binding\.(js|d\.ts)|ironlock\..+\.node|lib\/.+)$/.test(file))).toEqual([])

  const license = fs.readFileSync(path.join(packed, 'LICENSE'), 'utf8')
  expect(license).toMatch(/^MIT License/)
  expect(license).toMatch(/Copyright \(c\) \d{4} ironlock contributors/)
})

test('the installed package.json has no install-time script, and says where the project lives', () => {
  const installed = JSON.parse(fs.readFileSync(path.join(app, 'node_modules', 'ironlock', 'package.json'), 'utf8'))
  for (const name of INSTALL_TIME_SCRIPTS) expect({ name, script: installed.scripts?.[name] }).toEqual({ name, script: undefined })
  expect(installed.license).toBe('MIT')
  expect(installed.repository).toEqual({ type: 'git', url: `git+${REPOSITORY}.git` })
  expect(installed.homepage).toBe(`${REPOSITORY}#readme`)
  expect(installed.bugs).toEqual({ url: `${REPOSITORY}/issues` })
  expect(installed.dependencies ?? {}).toEqual({})
  expect(fs.existsSync(path.join(app, 'node_modules', 'ironlock', 'LICENSE'))).toBe(true)
  // npm records an install script in the lock file; there is none.
  const lock = JSON.parse(fs.readFileSync(path.join(app, 'package-lock.json'), 'utf8'))
  expect(lock.packages['node_modules/ironlock'].hasInstallScript).toBeUndefined()
})

test('every link of the packed README resolves: relative ones inside the package, the repository\'s to files it has', () => {
  const readme = fs.readFileSync(path.join(packed, 'README.md'), 'utf8')
  const anchors = new Set(readme.replace(/```[\s\S]*?```/g, '').split('\n')
    .filter((line) => /^#{1,6} /.test(line)).map((line) => anchorOf(line.replace(/^#+ /, ''))))
  const targets = linkTargets(readme)
  expect(targets.length).toBeGreaterThan(0)
  const broken = targets.filter((target) => {
    if (target.startsWith('#')) return !anchors.has(target.slice(1))
    const inRepository = new RegExp(`^${REPOSITORY}/(?:blob|tree)/main/([^#?]+)`).exec(target)
    if (inRepository) return !fs.existsSync(path.join(ROOT, decodeURIComponent(inRepository[1])))
    if (/^[a-z]+:/i.test(target)) return false // elsewhere on the web
    const file = path.normalize(decodeURIComponent(target.split('#')[0]))
    return file.startsWith('..') || !fs.existsSync(path.join(packed, file))
  })
  expect(broken).toEqual([])
})

test('the README\'s quick start runs as written in the app, against REDIS_URL, and leaves no lock behind', async () => {
  const readme = path.join(app, 'node_modules', 'ironlock', 'README.md')
  const quickStart = codeBlocks(readme).find(({ lang }) => lang === 'js')
  expect(quickStart.code).toMatch(/require\('ironlock'\)/)
  fs.writeFileSync(path.join(app, 'quick-start.js'), quickStart.code)

  const result = await run(process.execPath, ['quick-start.js'], { cwd: app, env: { ...process.env, REDIS_URL: server.url } })
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' })
  expect(result.stdout).not.toBe('')
  // Only ironlock's fencing counters stay.
  expect((await redis.keys('*')).filter((key) => !key.startsWith('ironlock:fence:'))).toEqual([])
  expect(await redis.keys('ironlock:fence:*')).not.toEqual([]) // it did lock, on this Redis
}, STEP_TIMEOUT_MS)

test('the installed entry points load: CommonJS, ESM, the subpaths and the CLI', async () => {
  const script = `
    const ironlock = require('ironlock')
    const checks = [typeof ironlock.Locker, typeof require('ironlock/express').lock,
      typeof require('ironlock/nest').Locked, typeof require('ironlock/redlock')]
    import('ironlock').then((esm) => console.log([...checks, typeof esm.using].join(' ')))
  `
  const loaded = await run(process.execPath, ['-e', script], { cwd: app })
  expect(succeeded('node -e', loaded).trim()).toBe('function function function function function')

  const version = await run(path.join(app, 'node_modules', '.bin', 'ironlock'), ['--version'], { cwd: app })
  expect(succeeded('ironlock --version', version)).toBe(`${JSON.parse(manifestBefore).version}\n`)
})
