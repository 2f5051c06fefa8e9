'use strict'

// What the project says about runtimes is what `npm run test:runtimes` tests: package.json's
// `engines`, the README's Platforms section and the release workflow's Node matrices all name the
// runtimes pinned in scripts/runtimes.js, and CI runs the script.

const fs = require('node:fs')
const path = require('node:path')
const { runtimes } = require('../../../scripts/runtimes')

const ROOT = path.join(__dirname, '..', '..', '..')
const read = (file) => fs.readFileSync(path.join(ROOT, file), 'utf8')

const nodeMajors = runtimes
  .filter((runtime) => runtime.package === 'node')
  .map((runtime) => Number(runtime.version.split('.')[0]))
  .sort((a, b) => a - b)
const others = runtimes.filter((runtime) => runtime.package !== 'node')

/** "20, 22, 24 and 26" */
function spoken(list) {
  return list.length === 1 ? String(list[0]) : `${list.slice(0, -1).join(', ')} and ${list[list.length - 1]}`
}

test('every pinned Node major is tested, one runtime per major', () => {
  expect(nodeMajors.length).toBeGreaterThan(0)
  expect(new Set(nodeMajors).size).toBe(nodeMajors.length)
})

test("package.json's engines starts at the oldest Node tested", () => {
  expect(JSON.parse(read('package.json')).engines).toEqual({ node: `>= ${nodeMajors[0]}` })
})

test('the README\'s Platforms section names the tested Node majors, Bun and Deno versions, and the command', () => {
  const readme = read('README.md')
  const start = readme.indexOf('\n## Platforms\n')
  expect(start).toBeGreaterThanOrEqual(0)
  const end = readme.indexOf('\n## ', start + 1)
  const section = readme.slice(start, end === -1 ? undefined : end)
  expect(section).toContain(`Node.js ${spoken(nodeMajors)}`)
  for (const runtime of others) {
    const name = runtime.package[0].toUpperCase() + runtime.package.slice(1)
    expect(section).toContain(`${name} ${runtime.version}`)
  }
  expect(section).toContain('npm run test:runtimes')
})

test("the release workflow's Node matrices and images name exactly the tested majors", () => {
  const workflow = read('.github/workflows/release.yml')
  const matrices = [...workflow.matchAll(/^\s*node: \[(.*)\]\s*$/gm)].map((match) =>
    match[1].split(',').map((entry) => Number(entry.trim().replace(/^'|'$/g, ''))))
  expect(matrices.length).toBeGreaterThan(0)
  for (const matrix of matrices) expect(matrix).toEqual(nodeMajors)
  const imageMajors = [...workflow.matchAll(/^\s*- node:(\d+)-/gm)].map((match) => Number(match[1]))
  for (const major of imageMajors) expect(nodeMajors).toContain(major)
  expect(workflow).toMatch(/^\s*run: npm run test:runtimes\s*$/m)
})

test('CI runs the runtimes script after the test suite', () => {
  const script = JSON.parse(read('package.json')).scripts['test:runtimes']
  expect(script).toBe('node scripts/test-runtimes.js')
  const ci = read('.ci/run')
  expect(ci).toMatch(/^npm run test:runtimes$/m)
  expect(ci.indexOf('npm run test:runtimes')).toBeGreaterThan(ci.indexOf('npm test'))
})
