#!/usr/bin/env node
'use strict'

// The glibc symbol versions a Linux ELF64 shared object needs, read from the ELF itself (no
// objdump), and the check the release holds every gnu binary to.
//
//   node scripts/glibc-needs.js [--max 2.17] FILE.node…
//
// prints the newest GLIBC_ version each file needs, and exits 1 if one needs more than --max.

const fs = require('node:fs')

/** Compares dotted versions: negative, zero or positive. */
function compareVersions(a, b) {
  const x = a.split('.').map(Number)
  const y = b.split('.').map(Number)
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0)
    if (d !== 0) return d
  }
  return 0
}

/**
 * The symbol versions an ELF64 little-endian object needs, per library: its SHT_GNU_verneed
 * section (Elf64_Verneed entries, each with its Elf64_Vernaux list), whose names are in the string
 * table the section links to.
 */
function versionNeeds(file) {
  const elf = fs.readFileSync(file)
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file} is not an ELF file`)
  if (elf[4] !== 2 || elf[5] !== 1) throw new Error(`${file} is not ELF64 little-endian`)
  const shoff = Number(elf.readBigUInt64LE(0x28))
  const shentsize = elf.readUInt16LE(0x3a)
  const shnum = elf.readUInt16LE(0x3c)
  const section = (i) => {
    const at = shoff + i * shentsize
    return {
      type: elf.readUInt32LE(at + 4),
      offset: Number(elf.readBigUInt64LE(at + 0x18)),
      link: elf.readUInt32LE(at + 0x28),
      info: elf.readUInt32LE(at + 0x2c),
    }
  }
  const SHT_GNU_VERNEED = 0x6ffffffe
  const needs = {}
  for (let i = 0; i < shnum; i++) {
    const verneed = section(i)
    if (verneed.type !== SHT_GNU_VERNEED) continue
    const strtab = section(verneed.link).offset
    const string = (offset) => {
      const start = strtab + offset
      return elf.toString('latin1', start, elf.indexOf(0, start))
    }
    let entry = verneed.offset
    for (let n = 0; n < verneed.info; n++) {
      const count = elf.readUInt16LE(entry + 2)
      const library = string(elf.readUInt32LE(entry + 4))
      let aux = entry + elf.readUInt32LE(entry + 8)
      needs[library] ??= []
      for (let k = 0; k < count; k++) {
        needs[library].push(string(elf.readUInt32LE(aux + 8)))
        aux += elf.readUInt32LE(aux + 12)
      }
      entry += elf.readUInt32LE(entry + 12)
    }
  }
  return needs
}

/** The GLIBC_x.y versions in `needs`, oldest first. */
function glibcVersions(needs) {
  const versions = new Set()
  for (const names of Object.values(needs)) {
    for (const name of names) if (/^GLIBC_\d[\d.]*$/.test(name)) versions.add(name.slice('GLIBC_'.length))
  }
  return [...versions].sort(compareVersions)
}

function main(args) {
  let max = null
  const files = []
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--max') max = args[++i]
    else files.push(args[i])
  }
  if (files.length === 0) {
    process.stderr.write('usage: node scripts/glibc-needs.js [--max VERSION] FILE...\n')
    return 2
  }
  let status = 0
  for (const file of files) {
    const versions = glibcVersions(versionNeeds(file))
    const newest = versions[versions.length - 1]
    if (newest === undefined) {
      process.stdout.write(`${file}: needs no versioned glibc symbol\n`)
      status = 1
      continue
    }
    const over = max !== null && compareVersions(newest, max) > 0
    process.stdout.write(`${file}: GLIBC_${newest}${over ? ` (newer than ${max})` : ''}\n`)
    if (over) status = 1
  }
  return status
}

if (require.main === module) process.exitCode = main(process.argv.slice(2))

module.exports = { compareVersions, versionNeeds, glibcVersions }
