#!/usr/bin/env node
'use strict'

// Decides what `npm pack` and `npm publish` pack, by rewriting package.json around them and putting
// it back afterwards. package.json has npm run
//
//   prepack:     node scripts/pack-manifest.js strip     rewrites package.json, the original saved aside
//   postpack:    node scripts/pack-manifest.js restore   puts the original back
//   postpublish: node scripts/pack-manifest.js restore
//
// `strip` always takes the install-time scripts out: in a clone `prepare` builds the addon on
// `npm install`, but in a published package npm would list it as an install script. What happens
// to the addon depends on which package is being packed:
//
// - A release's main package, under `npm publish` or once package.json declares platform packages
//   in `optionalDependencies` (`napi pre-publish` writes them): it ships no binary, since the
//   binaries are the platform packages, so `*.node` leaves `files` whatever lies in the checkout.
//   The declared packages must be one per napi target, at this version. A real publish without
//   them is refused, as it would publish a package that loads nowhere; `npm publish --dry-run`
//   goes on (with a note), so it lists from a clean clone the files a release publishes.
// - Otherwise (`npm pack` in a clone) a tarball for this machine: it ships the built addon, and
//   `strip` refuses without one, since packing does not run `prepare` (the build).
//
// `npm publish` reads package.json again after postpack to send it to the registry, so there the
// restore waits for postpublish. If a pack or publish stops in between, the next `strip` restores
// first; `node scripts/pack-manifest.js restore` does it by hand.

const fs = require('node:fs')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
const MANIFEST = path.join(ROOT, 'package.json')
/** What `strip` took out (gitignored, and outside package.json's `files`). */
const STASH = path.join(ROOT, '.package.json.prepack')
/** The scripts npm may run when the package is installed. */
const INSTALL_TIME = ['preinstall', 'install', 'postinstall', 'prepare']

/** Replaces `file` in one step, so a concurrent reader sees the old or the new text, never half. */
function writeAtomically(file, text) {
  const temporary = `${file}.${process.pid}.tmp`
  fs.writeFileSync(temporary, text)
  fs.renameSync(temporary, file)
}

const serialize = (manifest) => `${JSON.stringify(manifest, null, 2)}\n`
const isBinaryEntry = (entry) => entry.endsWith('.node')

/** The packages of `optionalDependencies` named `<name>-…`: the platform packages a release declares. */
function declaredPlatformPackages(manifest) {
  return Object.entries(manifest.optionalDependencies ?? {}).filter(([name]) => name.startsWith(`${manifest.name}-`))
}

/** Throws unless the declared platform packages are one per napi target, each at this version. */
function checkPlatformPackages(manifest, declared) {
  const targets = manifest.napi?.targets ?? []
  const wrongVersion = declared.filter(([, version]) => version !== manifest.version)
  if (declared.length !== targets.length || wrongVersion.length > 0) {
    const listed = declared.map(([name, version]) => `${name}@${version}`).join(', ')
    throw new Error(`a release's main package declares one platform package per napi target (${targets.length}) at ` +
      `${manifest.version}; optionalDependencies has ${declared.length}: ${listed}`)
  }
}

/** Whether this pack is a release's main package; throws when it cannot be packed as one. */
function packsRelease(manifest) {
  const publishing = process.env.npm_command === 'publish'
  const declared = declaredPlatformPackages(manifest)
  if (declared.length > 0) {
    checkPlatformPackages(manifest, declared)
    return true
  }
  if (!publishing) return false
  const missing = "package.json declares no platform packages in optionalDependencies (the release's " +
    '`napi pre-publish` writes them; see docs/RELEASING.md)'
  if (process.env.npm_config_dry_run !== 'true') throw new Error(`refusing to publish: ${missing}`)
  process.stderr.write(`pack-manifest: dry run: ${missing}; a real publish would be refused\n`)
  return true
}

function requireBuiltAddon(manifest) {
  const binary = new RegExp(`^${manifest.napi.binaryName}\\..+\\.node$`)
  if (!fs.readdirSync(ROOT).some((name) => binary.test(name))) {
    throw new Error(`no built addon (${manifest.napi.binaryName}.<platform>.node) to pack: run \`npm run build\` first`)
  }
}

function strip() {
  restore() // an earlier pack or publish that stopped halfway
  const original = fs.readFileSync(MANIFEST, 'utf8')
  const manifest = JSON.parse(original)
  const release = packsRelease(manifest)
  if (!release) requireBuiltAddon(manifest)

  const scripts = manifest.scripts ?? {}
  const order = Object.keys(scripts)
  const removed = Object.fromEntries(INSTALL_TIME.filter((name) => name in scripts).map((name) => [name, scripts[name]]))
  for (const name of Object.keys(removed)) delete scripts[name]
  const files = manifest.files
  if (release) manifest.files = files.filter((entry) => !isBinaryEntry(entry))
  const stripped = serialize(manifest)
  if (stripped === serialize(JSON.parse(original))) return
  fs.writeFileSync(STASH, JSON.stringify({ original, stripped, order, removed, files }))
  writeAtomically(MANIFEST, stripped)
}

function restore() {
  if (!fs.existsSync(STASH)) return
  const { original, stripped, order, removed, files } = JSON.parse(fs.readFileSync(STASH, 'utf8'))
  const current = fs.readFileSync(MANIFEST, 'utf8')
  if (current === stripped) {
    writeAtomically(MANIFEST, original)
  } else {
    // package.json was edited meanwhile: put back what strip took out, keeping the edits.
    const manifest = JSON.parse(current)
    const scripts = manifest.scripts ?? {}
    const merged = {}
    for (const name of order) {
      if (name in scripts) merged[name] = scripts[name]
      else if (name in removed) merged[name] = removed[name]
    }
    manifest.scripts = Object.assign(merged, scripts)
    if (JSON.stringify(manifest.files) === JSON.stringify(JSON.parse(stripped).files)) manifest.files = files
    writeAtomically(MANIFEST, serialize(manifest))
  }
  fs.unlinkSync(STASH)
}

const command = process.argv[2]
try {
  if (command === 'strip') {
    strip()
  } else if (command === 'restore') {
    // Under `npm publish`, npm has yet to read package.json for the registry: postpublish restores.
    const publishing = process.env.npm_command === 'publish' && process.env.npm_lifecycle_event === 'postpack'
    if (!publishing) restore()
  } else {
    process.stderr.write('usage: node scripts/pack-manifest.js strip|restore\n')
    process.exitCode = 2
  }
} catch (error) {
  process.stderr.write(`pack-manifest: ${error.message}\n`)
  process.exitCode = 1
}
