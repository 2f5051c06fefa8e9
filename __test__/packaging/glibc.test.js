'use strict'

// The Linux x64 glibc binary loads on every maintained distribution: it needs no glibc symbol
// version newer than 2.17 (the baseline napi-rs's own packages use), read from the ELF itself, and
// glibc 2.17's own dynamic loader resolves everything it needs. `npm run build` links it so
// (scripts/build.js); a binary built against this machine's glibc fails here.
//
// By hand: node scripts/glibc-needs.js ironlock.linux-x64-gnu.node
//      or: objdump -T ironlock.linux-x64-gnu.node | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1

const { execFileSync, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const { compareVersions, versionNeeds, glibcVersions } = require('../../scripts/glibc-needs')

const BINARY = path.join(__dirname, '..', '..', 'ironlock.linux-x64-gnu.node')
const BASELINE = '2.17'

// Where this runs: a Linux x64 glibc process, the one kind of host that builds and loads this
// binary. Anywhere else the tests are reported as skipped, never as passed.
const glibcHost =
  process.platform === 'linux' && process.arch === 'x64' && Boolean(process.report.getReport().header.glibcVersionRuntime)
const onGlibcHost = glibcHost ? describe : describe.skip

onGlibcHost(`ironlock.linux-x64-gnu.node needs glibc ${BASELINE} at most`, () => {
  test('it is the binary require("ironlock") loads here', () => {
    require('../..')
    const loaded = Object.keys(require.cache).filter((file) => file.endsWith('.node'))
    expect(loaded).toEqual([fs.realpathSync(BINARY)])
  })

  test(`the newest GLIBC symbol version it needs is ${BASELINE} or older`, () => {
    const needs = versionNeeds(BINARY)
    const versions = glibcVersions(needs)
    // a real reading: the binary needs libc at all, with versioned symbols
    expect(Object.keys(needs)).toContain('libc.so.6')
    expect(versions.length).toBeGreaterThan(3)
    const newest = versions[versions.length - 1]
    expect({ newest, atMost: compareVersions(newest, BASELINE) <= 0 }).toEqual({ newest, atMost: true })
  })

  test('the reading finds newer versions where they are: node itself needs more than glibc 2.17', () => {
    const versions = glibcVersions(versionNeeds(process.execPath))
    expect(versions.length).toBeGreaterThan(3)
    expect(compareVersions(versions[versions.length - 1], BASELINE)).toBeGreaterThan(0)
  })

  test('the reading agrees with objdump, where objdump is installed', () => {
    const which = spawnSync('objdump', ['--version'])
    if (which.error) return // the ELF reading above stands alone
    const dump = execFileSync('objdump', ['-T', BINARY], { encoding: 'utf8', maxBuffer: 64 << 20 })
    const fromObjdump = [...new Set(dump.match(/GLIBC_\d[\d.]*/g).map((v) => v.slice(6)))].sort(compareVersions)
    expect(fromObjdump).toEqual(glibcVersions(versionNeeds(BINARY)))
  })

  test('glibc 2.17\'s own dynamic loader finds every library and symbol version it needs', () => {
    // The sysroot of the toolchain scripts/build.js links with: glibc 2.17's ld.so, libc, libpthread…
    // (fetched here if this binary came from elsewhere, a CI artifact say).
    const { glibcToolchain, GLIBC_TARGET } = require('../../scripts/build')
    const sysroot = path.join(glibcToolchain({ quiet: true }), GLIBC_TARGET, 'sysroot')
    const ldso = path.join(sysroot, 'lib64', `ld-${BASELINE}.so`)
    const libraryPath = [path.join(sysroot, 'lib64'), path.join(sysroot, 'usr', 'lib64')].join(':')
    const listed = spawnSync(ldso, ['--library-path', libraryPath, '--list', BINARY], { encoding: 'utf8' })
    const output = `${listed.stdout}${listed.stderr}`
    expect(output).not.toMatch(/not found/)
    expect(listed.status).toBe(0)
    for (const library of ['libc.so.6', 'libpthread.so.0', 'libgcc_s.so.1']) {
      expect(output).toContain(`${library} => ${path.join(sysroot, 'lib64', library)}`)
    }
  }, 120000)
})
