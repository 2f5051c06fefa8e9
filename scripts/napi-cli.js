'use strict'

// The napi CLI the release steps run: pinned, and run through npx rather than installed as a
// devDependency (CONTRIBUTING.md says why). scripts/build.js pins the same version.

const NAPI_CLI = '@napi-rs/cli@3.10.12'

/** npx's arguments that run `napi <args>`. */
const napiArgs = (args) => ['--yes', '-p', NAPI_CLI, 'napi', ...args]

module.exports = { NAPI_CLI, napiArgs }
