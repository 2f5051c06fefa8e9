'use strict'

// The TypeScript a user writes compiles as written, with `tsc --noEmit --strict`:
// - every ```ts snippet of README.md, each as a file of its own;
// - __test__/fixtures/types/entry-points.ts: every entry point (`ironlock`, `ironlock/express`,
//   `ironlock/nest`, `ironlock/redlock`) imported and used;
// - __test__/fixtures/types/refused.ts: what the types must refuse, as `@ts-expect-error` lines.
// They compile in a temporary project whose node_modules holds `ironlock` as a symlink to this
// package (resolved through its package.json, as an installed copy would be) next to this
// package's devDependencies, under the module settings TypeScript users have: CommonJS with the
// default (node10) resolution, node16, and bundler.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const ts = require('typescript')
const { codeBlocks } = require('../fixtures/readme-snippets')

const ROOT = path.join(__dirname, '..', '..')
const FIXTURES = path.join(__dirname, '..', 'fixtures', 'types')
const COMPILE_TIMEOUT_MS = 120000

// As in a tsconfig.json. `types: ['node']` keeps the devDependencies' other @types out.
const COMMON = { strict: true, noEmit: true, target: 'es2022', types: ['node'], skipLibCheck: false }
const SETTINGS = {
  // `tsc --init`'s module with nothing else: the resolution is node10, which ignores `exports`.
  'commonjs, default (node10) resolution, experimentalDecorators (as NestJS)': {
    module: 'commonjs', experimentalDecorators: true,
  },
  'node16, standard decorators, no DOM lib': { module: 'node16', lib: ['es2022'] },
  'bundler resolution, experimentalDecorators': {
    module: 'esnext', moduleResolution: 'bundler', experimentalDecorators: true,
  },
}

let project

/** A temporary project: the README's ts snippets and the fixtures, `ironlock` in node_modules. */
function makeProject() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ironlock-ts-'))
  const modules = path.join(dir, 'node_modules')
  fs.mkdirSync(modules)
  fs.symlinkSync(ROOT, path.join(modules, 'ironlock'), 'dir')
  for (const name of fs.readdirSync(path.join(ROOT, 'node_modules'))) {
    if (!name.startsWith('.')) fs.symlinkSync(path.join(ROOT, 'node_modules', name), path.join(modules, name), 'dir')
  }
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'app', private: true }))

  const snippets = codeBlocks(path.join(ROOT, 'README.md')).filter(({ lang }) => lang === 'ts')
  const files = snippets.map(({ code }, index) => {
    const file = path.join(dir, `readme-${index + 1}.ts`)
    // `export {}` makes each snippet a module of its own, as a file of the reader's would be.
    fs.writeFileSync(file, `${code}\nexport {}\n`)
    return file
  })
  for (const name of fs.readdirSync(FIXTURES)) {
    fs.copyFileSync(path.join(FIXTURES, name), path.join(dir, name))
    files.push(path.join(dir, name))
  }
  return { dir, files, snippets }
}

/** `tsc --noEmit` of `files` with tsconfig-style `compilerOptions`: the formatted diagnostics. */
function compile(dir, files, compilerOptions) {
  const { options, errors } = ts.convertCompilerOptionsFromJson(compilerOptions, dir)
  if (errors.length > 0) throw new Error(ts.formatDiagnostics(errors, formatHost(dir)))
  const program = ts.createProgram({ rootNames: files, options })
  return { options, output: ts.formatDiagnostics(ts.getPreEmitDiagnostics(program), formatHost(dir)) }
}

function formatHost(dir) {
  return { getCanonicalFileName: (name) => name, getCurrentDirectory: () => dir, getNewLine: () => '\n' }
}

beforeAll(() => {
  project = makeProject()
})

afterAll(() => {
  if (project) fs.rmSync(project.dir, { recursive: true, force: true })
})

test('the README has TypeScript snippets, the NestJS one among them', () => {
  expect(project.snippets.length).toBeGreaterThanOrEqual(2)
  expect(project.snippets.some(({ code }) => code.includes('@Locked('))).toBe(true)
})

test('typesVersions maps each subpath that exports has, to the same types', () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
  const mapped = manifest.typesVersions['*']
  for (const [subpath, target] of Object.entries(manifest.exports)) {
    if (subpath === '.' || typeof target !== 'object' || target.types === undefined) continue
    expect(mapped[subpath.slice(2)]).toEqual([target.types.slice(2)])
  }
})

describe.each(Object.keys(SETTINGS))('%s', (name) => {
  test('the README snippets and the fixtures compile with --strict', () => {
    const { options, output } = compile(project.dir, project.files, { ...COMMON, ...SETTINGS[name] })
    if (name.includes('node10')) expect(ts.getEmitModuleResolutionKind(options)).toBe(ts.ModuleResolutionKind.Node10)
    expect(output).toBe('')
  }, COMPILE_TIMEOUT_MS)
})
