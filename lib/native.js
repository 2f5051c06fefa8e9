'use strict'

// The native addon. Everything in lib/ gets it from here, never from ../binding directly.
//
// ../binding.js is the loader `napi build` generates: it tries ./ironlock.<platform>.node (a
// build from source) and then the platform package, `ironlock-<platform>` (an optional
// dependency of the published package, only the one that fits installed). When neither loads,
// its own error blames an npm bug; this module replaces it with one that says what was looked
// for and what to do, with a stable code: ERR_IRONLOCK_NATIVE_BINDING.

const fs = require('node:fs')
const path = require('node:path')

const ERROR_CODE = 'ERR_IRONLOCK_NATIVE_BINDING'
const ROOT = path.join(__dirname, '..')

const ARCHES = {
  x86_64: 'x64',
  aarch64: 'arm64',
  i686: 'ia32',
  armv7: 'arm',
  riscv64gc: 'riscv64',
  powerpc64le: 'ppc64',
  s390x: 's390x',
  loongarch64: 'loong64',
}
const SYSTEMS = { linux: 'linux', darwin: 'darwin', windows: 'win32', freebsd: 'freebsd', android: 'android' }

/**
 * The napi CLI's name for a Rust target, as in the platform package names:
 * x86_64-unknown-linux-gnu → linux-x64-gnu, aarch64-apple-darwin → darwin-arm64,
 * x86_64-pc-windows-msvc → win32-x64-msvc.
 */
function platformArchAbi(triple) {
  const [cpu, , system, abi] = triple.split('-')
  const name = `${SYSTEMS[system] ?? system}-${ARCHES[cpu] ?? cpu}`
  return abi ? `${name}-${abi}` : name
}

/** The C library of this Linux process: `{ family: 'glibc', version }`, `{ family: 'musl' }`, or null. */
function detectLibc() {
  if (process.platform !== 'linux') return null
  let report = null
  try {
    if (process.report && typeof process.report.getReport === 'function') {
      const excludeNetwork = process.report.excludeNetwork
      process.report.excludeNetwork = true
      try {
        report = process.report.getReport()
      } finally {
        process.report.excludeNetwork = excludeNetwork
      }
    }
  } catch {
    report = null
  }
  if (report && report.header && report.header.glibcVersionRuntime) {
    return { family: 'glibc', version: report.header.glibcVersionRuntime }
  }
  const objects = report && Array.isArray(report.sharedObjects) ? report.sharedObjects : []
  if (objects.some((f) => f.includes('libc.musl-') || f.includes('ld-musl-'))) return { family: 'musl' }
  try {
    if (fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl')) return { family: 'musl' }
  } catch {
    // no ldd to read
  }
  return null
}

/** What this process would load: its platform-arch(-abi) name, and a description for people. */
function describeHost() {
  const { platform, arch } = process
  const libc = detectLibc()
  let abi = null
  if (platform === 'linux') abi = libc && libc.family === 'musl' ? 'musl' : 'gnu'
  else if (platform === 'win32') abi = 'msvc'
  const wanted = abi ? `${platform}-${arch}-${abi}` : `${platform}-${arch}`
  let libcText = ''
  if (libc && libc.family === 'glibc') libcText = ` with glibc ${libc.version}`
  else if (libc && libc.family === 'musl') libcText = ' with musl libc'
  else if (platform === 'linux') libcText = ' (C library not detected; assuming glibc)'
  return { wanted, text: `${platform}-${arch}${libcText}` }
}

/**
 * The messages of the generated loader's `cause` chain, in the order it tried them (the chain
 * nests the first attempt deepest).
 */
function loadAttempts(error) {
  const messages = []
  const seen = new Set()
  for (let e = error; e && !seen.has(e) && messages.length < 32; e = e.cause) {
    seen.add(e)
    if (typeof e.message === 'string') messages.push(e.message.split('\n')[0])
  }
  return messages.reverse()
}

function packageJson() {
  try {
    return require('../package.json')
  } catch {
    return {}
  }
}

/** `npm install` spec for the git repository the package names (over https), or null. */
function gitInstallSpec(pkg) {
  const repository = pkg.repository
  let url = typeof repository === 'string' ? repository : repository && repository.url
  if (typeof url !== 'string' || url === '') return null
  if (/^[\w-]+\/[\w.-]+$/.test(url)) url = `github:${url}`
  url = url
    .replace(/^git\+ssh:\/\/git@([^/:]+)[/:]/, 'git+https://$1/')
    .replace(/^git@([^:]+):/, 'git+https://$1/')
    .replace(/^https:\/\//, 'git+https://')
  return `${url}#v${pkg.version}`
}

/** The one error a failed load becomes. `loaderError` is what the generated loader threw. */
function bindingError(loaderError) {
  const pkg = packageJson()
  const name = pkg.name || 'ironlock'
  const version = pkg.version || '0.0.0'
  const targets = (pkg.napi && Array.isArray(pkg.napi.targets) ? pkg.napi.targets : []).map(platformArchAbi)
  const host = describeHost()
  const fitting = `${name}-${host.wanted}`
  const lines = []

  const override = process.env.NAPI_RS_NATIVE_LIBRARY_PATH
  if (override) {
    const failures = loadAttempts(loaderError.cause)
    lines.push(`${name} could not load its native addon on ${host.text}.`)
    lines.push(
      `NAPI_RS_NATIVE_LIBRARY_PATH names ${override}, and it did not load` +
        `${failures.length > 0 ? `: ${failures[0].replace(/\.?$/, '.')}` : '.'} Unset it to load the binary for this platform.`,
    )
  } else if (targets.includes(host.wanted)) {
    let installed = false
    try {
      require.resolve(`${fitting}/package.json`)
      installed = true
    } catch {
      installed = false
    }
    const local = fs.existsSync(path.join(ROOT, `${pkg.napi.binaryName || name}.${host.wanted}.node`))
    const failures = loadAttempts(loaderError.cause).filter((m) => !m.startsWith('Cannot find module'))
    lines.push(`${name} could not load its native addon on ${host.text}.`)
    if (installed || local) {
      lines.push(
        `The binary for this platform (${installed ? `${fitting}@${version}` : `${name}.${host.wanted}.node`}) ` +
          `is there but did not load${failures.length > 0 ? `: ${failures[0]}` : '.'}`,
      )
    } else {
      lines.push(
        `The package that fits this platform, ${fitting}@${version}, is not installed. ` +
          `npm installs it as an optional dependency of ${name}, so it is missing after an install ` +
          'with --omit=optional (or --no-optional), after a failed optional install, or when ' +
          'node_modules or the lockfile came from another platform: reinstall on this machine ' +
          `(rm -rf node_modules && npm install), or add it with \`npm install ${fitting}@${version}\`.`,
      )
    }
  } else {
    lines.push(`${name} has no prebuilt native addon for ${host.text} (it would be ${fitting}).`)
    lines.push(
      `Prebuilt packages of ${name}@${version}: ${targets.map((t) => `${name}-${t}`).join(', ') || 'none'}.`,
    )
  }

  if (fs.existsSync(path.join(ROOT, 'Cargo.toml'))) {
    lines.push(
      `This is a source checkout of ${name}: install a Rust toolchain (https://rustup.rs) and a C ` +
        `compiler, then build the addon for this machine with \`npm run build\` in ${ROOT}.`,
    )
  } else {
    const spec = gitInstallSpec(pkg)
    lines.push(
      'To build it from source: install a Rust toolchain (https://rustup.rs) and a C compiler, then ' +
        `install ${name} from its git repository, which compiles the addon during the install: ` +
        `\`npm install ${spec || `<${name}'s git repository URL>#v${version}`}\`. ` +
        `(\`npm rebuild ${name}\` cannot: the registry package carries no Rust sources.)`,
    )
  }

  const error = new Error(lines.join('\n'))
  error.code = ERROR_CODE
  error.platform = host.wanted
  error.packages = targets.includes(host.wanted) ? [fitting] : []
  error.cause = loaderError
  return error
}

function load() {
  try {
    return require('../binding')
  } catch (error) {
    throw bindingError(error)
  }
}

module.exports = { binding: load(), ERROR_CODE, platformArchAbi, gitInstallSpec }
