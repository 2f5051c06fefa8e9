'use strict'

// The committed platform packages (npm/) are byte for byte what `napi create-npm-dirs` writes from
// package.json, so the release's create-npm-dirs leaves the checkout as it was and a change to
// package.json that reaches them fails here until they are regenerated. The CLI runs in a copy.

const { execFile } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { promisify } = require('node:util')
const { NAPI_CLI, napiArgs } = require('../../scripts/napi-cli')

const ROOT = path.join(__dirname, '..', '..')
const run = promisify(execFile)
const CLI_TIMEOUT_MS = 120000

let work

/** Every file under `dir`, relative to it, sorted. */
function filesUnder(dir) {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath ?? entry.path, entry.name)))
    .sort()
}

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ironlock-npm-dirs-'))
})

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true })
})

test(`npm/ is what ${NAPI_CLI} create-npm-dirs writes, byte for byte`, async () => {
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(work, 'package.json'))
  await run('npx', napiArgs(['create-npm-dirs']), { cwd: work, timeout: CLI_TIMEOUT_MS })

  const generated = filesUnder(path.join(work, 'npm'))
  const { stdout } = await run('git', ['ls-files', '--', 'npm'], { cwd: ROOT })
  const committed = stdout.split('\n').filter(Boolean).map((file) => path.relative('npm', file)).sort()
  expect(committed).toEqual(generated)
  const differing = generated.filter((file) =>
    !fs.readFileSync(path.join(work, 'npm', file)).equals(fs.readFileSync(path.join(ROOT, 'npm', file))))
  expect(differing).toEqual([])
}, CLI_TIMEOUT_MS)
