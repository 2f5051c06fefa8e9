#!/usr/bin/env node
'use strict'

// Builds the addon with the napi CLI: `npm run build` (release) and `npm run build:debug`.
//
//   node scripts/build.js [--debug] [napi build options, e.g. --target aarch64-apple-darwin]
//
// On a Linux x64 glibc host building for x86_64-unknown-linux-gnu (the default target there),
// the binary is linked against glibc 2.17, not against this machine's glibc, so that it loads on
// every maintained distribution (the baseline napi-rs's own packages use):
//
// - the linker is the gcc of a manylinux2014 cross toolchain (glibc 2.17 sysroot), the npm
//   package @napi-rs/cross-toolchain-x64-target-x86_64, fetched on first use with `npm pack`,
//   checked against the integrity pinned below and unpacked under node_modules/.cache;
// - C code (mimalloc, ring) is compiled by this machine's C compiler with `--sysroot` pointing at
//   that glibc 2.17 sysroot: the toolchain's own gcc is 4.8, which has no <stdatomic.h> and so
//   cannot compile mimalloc.
//
// Every other host or target is a plain `napi build`. IRONLOCK_BUILD_HOST_GLIBC=1 builds against
// this machine's glibc instead (offline, say); __test__/packaging/native.test.js then fails on the
// result, as it should: that binary does not load on older distributions.
//
// docs/RELEASING.md has the whole picture.

const { spawnSync } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')

const ROOT = path.resolve(__dirname, '..')
const NAPI_CLI = '@napi-rs/cli@3.10.12'
const GLIBC_TARGET = 'x86_64-unknown-linux-gnu'
const TOOLCHAIN = {
  spec: '@napi-rs/cross-toolchain-x64-target-x86_64@1.0.0',
  integrity:
    'sha512-lecoghCfoTAX9MLFcIx9/nL9M8xdkZ9n8Pki8qjKUNzjiq1zbECdEbzIZAMMHRtrXxifK9dAyYuh8gSxNbr2og==',
  archive: 'package/x86_64-unknown-linux-gnu.tar.xz',
  // What the toolchain links against; __test__/packaging/native.test.js holds the binary to it.
  glibc: '2.17',
}
const WINDOWS = process.platform === 'win32'

class BuildError extends Error {}

function fail(message) {
  throw new BuildError(message)
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: 'inherit', shell: WINDOWS, ...options })
  if (result.error) fail(`could not run ${command}: ${result.error.message}`)
  return result
}

function runOrFail(command, args, options = {}) {
  const result = run(command, args, options)
  if (result.status !== 0) fail(`\`${command} ${args.join(' ')}\` failed (exit ${result.status ?? result.signal})`)
  return result
}

/** The value of `--target`/`-t` among napi's options, or null. */
function explicitTarget(args) {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]
    if (arg === '--target' || arg === '-t') return args[i + 1] ?? null
    if (arg.startsWith('--target=')) return arg.slice('--target='.length)
  }
  return null
}

/** Rust's host triple: what cargo builds for when no target is given. */
function rustHost() {
  const result = spawnSync('rustc', ['-vV'], { encoding: 'utf8', shell: WINDOWS })
  if (result.error || result.status !== 0) {
    fail('rustc not found: building ironlock from source needs a Rust toolchain (https://rustup.rs).')
  }
  const line = result.stdout.split('\n').find((l) => l.startsWith('host: '))
  return line ? line.slice('host: '.length).trim() : null
}

function sri(file) {
  return 'sha512-' + crypto.createHash('sha512').update(fs.readFileSync(file)).digest('base64')
}

/** The glibc 2.17 toolchain, unpacked once per node_modules; returns its directory. */
function glibcToolchain({ quiet = false } = {}) {
  const cache = path.join(ROOT, 'node_modules', '.cache', 'ironlock')
  const name = `${GLIBC_TARGET}-glibc${TOOLCHAIN.glibc}`
  const dir = path.join(cache, name)
  const stamp = path.join(dir, '.ironlock-toolchain')
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8').trim() === TOOLCHAIN.integrity) return dir

  if (!quiet) process.stderr.write(`scripts/build.js: fetching the glibc ${TOOLCHAIN.glibc} toolchain ${TOOLCHAIN.spec} (about 50 MB, once)\n`)
  fs.mkdirSync(cache, { recursive: true })
  const work = fs.mkdtempSync(path.join(cache, `${name}.tmp-`))
  try {
    const packed = spawnSync('npm', ['pack', TOOLCHAIN.spec, '--json', '--pack-destination', work], {
      cwd: work,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', quiet ? 'ignore' : 'inherit'],
    })
    if (packed.error || packed.status !== 0) {
      fail(
        `could not fetch ${TOOLCHAIN.spec} from the npm registry. ` +
          'Build against this machine\'s glibc instead with IRONLOCK_BUILD_HOST_GLIBC=1 ' +
          '(that binary needs this machine\'s glibc or newer).',
      )
    }
    const tarball = path.join(work, JSON.parse(packed.stdout)[0].filename)
    const integrity = sri(tarball)
    if (integrity !== TOOLCHAIN.integrity) {
      fail(`${TOOLCHAIN.spec} does not match its pinned integrity:\n  expected ${TOOLCHAIN.integrity}\n  got      ${integrity}`)
    }
    const unpacked = path.join(work, 'toolchain')
    fs.mkdirSync(unpacked)
    runOrFail('tar', ['-xzf', tarball, '-C', work, TOOLCHAIN.archive], { stdio: quiet ? 'ignore' : 'inherit' })
    const xz = run('tar', ['-xJf', path.join(work, TOOLCHAIN.archive), '-C', unpacked, '--exclude=./share'], { stdio: quiet ? 'ignore' : 'inherit' })
    if (xz.status !== 0) fail('could not unpack the toolchain: `tar -J` needs xz (Debian/Ubuntu: apt-get install xz-utils).')
    fs.writeFileSync(path.join(unpacked, '.ironlock-toolchain'), TOOLCHAIN.integrity + '\n')
    fs.rmSync(dir, { recursive: true, force: true })
    fs.renameSync(unpacked, dir)
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
  return dir
}

/** Cargo and cc-rs settings that link against the toolchain's glibc 2.17. */
function glibcEnv(toolchain) {
  const sysroot = path.join(toolchain, GLIBC_TARGET, 'sysroot')
  const gcc = path.join(toolchain, 'bin', `${GLIBC_TARGET}-gcc`)
  if (!fs.existsSync(gcc) || !fs.existsSync(sysroot)) fail(`the toolchain in ${toolchain} is incomplete; delete it and build again.`)
  const underscored = GLIBC_TARGET.replace(/-/g, '_')
  const cflags = [`--sysroot=${sysroot}`, process.env[`CFLAGS_${underscored}`] ?? process.env.CFLAGS ?? '']
  return {
    [`CARGO_TARGET_${underscored.toUpperCase()}_LINKER`]: gcc,
    [`CC_${underscored}`]: process.env[`CC_${underscored}`] ?? process.env.CC ?? 'cc',
    [`CFLAGS_${underscored}`]: cflags.join(' ').trim(),
  }
}

function main() {
  const args = process.argv.slice(2)
  const debug = args.includes('--debug')
  const napiArgs = args.filter((a) => a !== '--debug')
  const crossing = napiArgs.some((a) => ['-x', '--cross-compile', '--use-cross', '--use-napi-cross'].includes(a))

  let target = explicitTarget(napiArgs)
  const host = target === null && process.platform === 'linux' ? rustHost() : null
  const env = { ...process.env }
  const extra = []
  const wantsGlibcBaseline =
    process.platform === 'linux' && process.arch === 'x64' && !crossing && (target ?? host) === GLIBC_TARGET

  if (wantsGlibcBaseline && process.env.IRONLOCK_BUILD_HOST_GLIBC) {
    process.stderr.write(
      'scripts/build.js: IRONLOCK_BUILD_HOST_GLIBC is set: linking against this machine\'s glibc, ' +
        `not ${TOOLCHAIN.glibc}; the binary will not load on older distributions.\n`,
    )
  } else if (wantsGlibcBaseline) {
    Object.assign(env, glibcEnv(glibcToolchain()))
    // An explicit target keeps the toolchain's settings off build scripts' own compilations
    // (cargo's host/target split) and puts the output under target/<triple>/.
    if (target === null) {
      target = GLIBC_TARGET
      extra.push('--target', GLIBC_TARGET)
    }
    process.stderr.write(`scripts/build.js: ${GLIBC_TARGET} against glibc ${TOOLCHAIN.glibc} (toolchain in node_modules/.cache/ironlock)\n`)
  }

  const napi = [
    '--yes', '-p', NAPI_CLI, 'napi', 'build',
    '--platform', ...(debug ? [] : ['--release']),
    '--js', 'binding.js', '--dts', 'binding.d.ts',
    ...extra, ...napiArgs,
  ]
  const result = run(WINDOWS ? 'npx.cmd' : 'npx', napi, { cwd: ROOT, env })
  process.exit(result.status ?? 1)
}

if (require.main === module) {
  try {
    main()
  } catch (error) {
    if (!(error instanceof BuildError)) throw error
    process.stderr.write(`\nscripts/build.js: ${error.message}\n`)
    process.exit(1)
  }
}

module.exports = { TOOLCHAIN, GLIBC_TARGET, glibcToolchain }
