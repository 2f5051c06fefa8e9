#!/usr/bin/env node
'use strict'

// Keeps install-time scripts out of the package npm packs, while a clone keeps them: in a clone
// `prepare` builds the addon on `npm install`, but in a published package npm would list it as an
// install script. package.json has npm run
//
//   prepack:     node scripts/pack-manifest.js strip     takes them out of package.json, saved aside
//   postpack:    node scripts/pack-manifest.js restore   puts them back
//   postpublish: node scripts/pack-manifest.js restore
//
// around `npm pack` and `npm publish`. `npm publish` reads package.json again after postpack to
// send it to the registry, so there the restore waits for postpublish. If a pack or publish
// stops in between, the next `strip` restores first; `node scripts/pack-manifest.js restore`
// does it by hand. `strip` also refuses to pack without a built addon, since packing no longer
// runs `prepare` (the build).

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

function strip() {
  restore() // an earlier pack or publish that stopped halfway
  if (!fs.readdirSync(ROOT).some((name) => /^ironlock\..+\.node$/.test(name))) {
    throw new Error('no built addon (ironlock.<platform>.node) to pack: run `npm run build` first')
  }
  const original = fs.readFileSync(MANIFEST, 'utf8')
  const manifest = JSON.parse(original)
  const scripts = manifest.scripts ?? {}
  const removed = Object.fromEntries(INSTALL_TIME.filter((name) => name in scripts).map((name) => [name, scripts[name]]))
  if (Object.keys(removed).length === 0) return
  const order = Object.keys(scripts)
  for (const name of Object.keys(removed)) delete scripts[name]
  const stripped = serialize(manifest)
  fs.writeFileSync(STASH, JSON.stringify({ original, stripped, order, removed }))
  writeAtomically(MANIFEST, stripped)
}

function restore() {
  if (!fs.existsSync(STASH)) return
  const { original, stripped, order, removed } = JSON.parse(fs.readFileSync(STASH, 'utf8'))
  const current = fs.readFileSync(MANIFEST, 'utf8')
  if (current === stripped) {
    writeAtomically(MANIFEST, original)
  } else {
    // package.json was edited meanwhile: put the scripts back into the edited one, in their places.
    const manifest = JSON.parse(current)
    const scripts = manifest.scripts ?? {}
    const merged = {}
    for (const name of order) {
      if (name in scripts) merged[name] = scripts[name]
      else if (name in removed) merged[name] = removed[name]
    }
    manifest.scripts = Object.assign(merged, scripts)
    writeAtomically(MANIFEST, serialize(manifest))
  }
  fs.unlinkSync(STASH)
}

const command = process.argv[2]
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
