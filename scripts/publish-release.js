#!/usr/bin/env node
'use strict'

// The release's publish steps, run by the workflow's publish job (.github/workflows/release.yml)
// and by the rehearsal (scripts/rehearse-release.js), so that the two cannot drift apart:
//
//   1. `napi create-npm-dirs`, which must leave the committed npm/ as it is
//   2. `napi artifacts`: each napi target's binary into its npm/<platform> package; fails if one is missing
//   3. the linux gnu binaries need no glibc newer than 2.17
//   4. `napi pre-publish -t npm --no-gh-release`: publishes the platform packages, then writes them
//      into package.json's optionalDependencies
//   5. the main package as `npm publish` packs it: no .node file (scripts/pack-manifest.js also
//      checks that it declares one platform package per target, at this version)
//   6. `npm publish` of the main package
//
//   node scripts/publish-release.js --artifacts <dir> --registry <url> [--provenance]
//
// Every npm command publishes to `--registry`: it is set in their environment, and the script
// refuses to start unless npm resolves that registry here and no manifest's publishConfig names
// another. Credentials come from npm's own configuration, as for any `npm publish`. A prerelease
// version (`1.2.0-rc.1`) is published under the `next` dist-tag.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { parseArgs } = require('node:util')
const { napiArgs } = require('./napi-cli')

const ROOT = path.join(__dirname, '..')
const NPM_DIR = path.join(ROOT, 'npm')
const STEP_TIMEOUT_MS = 10 * 60 * 1000
const GLIBC_BASELINE = '2.17'

const readManifest = (file) => JSON.parse(fs.readFileSync(file, 'utf8'))
const withSlash = (url) => url.replace(/\/?$/, '/')

/** Runs a step's command with the release's environment; throws unless it exits with 0. */
function run(env, command, args, { capture = false } = {}) {
  const result = spawnSync(command, args, {
    cwd: ROOT,
    env,
    stdio: capture ? ['ignore', 'pipe', 'inherit'] : 'inherit',
    encoding: 'utf8',
    timeout: STEP_TIMEOUT_MS,
    maxBuffer: 64 * 1024 * 1024,
  })
  if (result.error) throw new Error(`${command} ${args.join(' ')}: ${result.error.message}`)
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${result.status ?? result.signal}`)
  return result.stdout
}

function step(title) {
  process.stdout.write(`\n== ${title}\n`)
}

/** Every file under npm/ with its content, to tell whether a step rewrote one. */
function snapshotNpmDir() {
  return Object.fromEntries(fs.readdirSync(NPM_DIR, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath ?? entry.path, entry.name))
    .map((file) => [path.relative(ROOT, file), fs.readFileSync(file, 'utf8')]))
}

/** Throws unless npm, with this environment, publishes every ironlock package to `registry`. */
function checkRegistry(env, registry) {
  const resolved = run(env, 'npm', ['config', 'get', 'registry'], { capture: true }).trim()
  if (withSlash(resolved) !== registry) throw new Error(`npm resolves the registry ${resolved}, not ${registry}`)
  const manifests = [path.join(ROOT, 'package.json'),
    ...fs.readdirSync(NPM_DIR).map((dir) => path.join(NPM_DIR, dir, 'package.json'))]
  for (const file of manifests) {
    const named = readManifest(file).publishConfig?.registry
    if (named !== undefined && withSlash(named) !== registry) {
      throw new Error(`${path.relative(ROOT, file)} has publishConfig.registry ${named}, not ${registry}`)
    }
  }
}

function publishRelease({ artifacts, registry, provenance }) {
  const manifest = readManifest(path.join(ROOT, 'package.json'))
  if (provenance && !(manifest.repository?.url || typeof manifest.repository === 'string')) {
    throw new Error('package.json has no repository: npm publish --provenance needs one')
  }
  const prerelease = manifest.version.includes('-')
  const env = {
    ...process.env,
    npm_config_registry: registry,
    npm_config_provenance: String(provenance),
    ...(prerelease ? { npm_config_tag: 'next' } : {}),
  }
  checkRegistry(env, registry)
  process.stdout.write(`publishing ${manifest.name}@${manifest.version} and its platform packages to ${registry}` +
    `${prerelease ? ' under the dist-tag next' : ''}${provenance ? ', with provenance' : ''}\n`)

  step('1. platform package directories (napi create-npm-dirs), as committed')
  const committed = snapshotNpmDir()
  run(env, 'npx', napiArgs(['create-npm-dirs']))
  const rewritten = Object.keys(committed).filter((file) => snapshotNpmDir()[file] !== committed[file])
  if (rewritten.length > 0) {
    throw new Error(`napi create-npm-dirs rewrote ${rewritten.join(', ')}: commit what it writes (docs/RELEASING.md)`)
  }
  checkRegistry(env, registry)

  step('2. the binaries into their packages (napi artifacts)')
  run(env, 'npx', napiArgs(['artifacts', '--output-dir', path.resolve(artifacts)]))

  step(`3. the linux gnu binaries need no glibc newer than ${GLIBC_BASELINE}`)
  const gnuBinaries = fs.readdirSync(NPM_DIR).filter((dir) => /^linux-.+-gnu$/.test(dir))
    .flatMap((dir) => fs.readdirSync(path.join(NPM_DIR, dir)).filter((file) => file.endsWith('.node'))
      .map((file) => path.join('npm', dir, file)))
  if (gnuBinaries.length > 0) run(env, process.execPath, ['scripts/glibc-needs.js', '--max', GLIBC_BASELINE, ...gnuBinaries])

  step('4. the platform packages (napi pre-publish)')
  run(env, 'npx', napiArgs(['pre-publish', '-t', 'npm', '--no-gh-release']))

  step('5. the main package carries no binary')
  const [packed] = JSON.parse(run(env, 'npm', ['pack', '--dry-run', '--json'], { capture: true }))
  const files = packed.files.map((file) => file.path)
  process.stdout.write(`${files.join('\n')}\n`)
  const binaries = files.filter((file) => file.endsWith('.node'))
  if (binaries.length > 0) throw new Error(`the main package would carry ${binaries.join(', ')}`)

  step(`6. ${manifest.name} (npm publish)`)
  run(env, 'npm', ['publish', '--access', 'public'])
}

function main() {
  const { values } = parseArgs({
    options: {
      artifacts: { type: 'string' },
      registry: { type: 'string' },
      provenance: { type: 'boolean', default: false },
    },
  })
  if (!values.artifacts || !values.registry) {
    throw new Error('usage: node scripts/publish-release.js --artifacts <dir> --registry <url> [--provenance]')
  }
  publishRelease({ ...values, registry: withSlash(values.registry) })
}

try {
  main()
} catch (error) {
  process.stderr.write(`publish-release: ${error.message}\n`)
  process.exitCode = 1
}
