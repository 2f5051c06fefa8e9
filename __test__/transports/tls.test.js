'use strict'

// TLS: a redis-server with a TLS port and a CA of the test's own making (openssl CLI).

const { execFile, execFileSync } = require('node:child_process')
const { promisify } = require('node:util')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { startRedis, stopAll, freePort } = require('../helpers/redis-server')
const { Locker, LockConnectionError } = require('../..')

let dir
let tlsPort
let server

function openssl(...args) {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' })
}

function makeCertificates() {
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=ironlock-test-ca')
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost')
  fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'ext.cnf')
  // A second CA that did not sign the server's certificate.
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other.key', '-out', 'other.crt', '-days', '2', '-subj', '/CN=someone-else')
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ironlock-tls-'))
  makeCertificates()
  tlsPort = await freePort()
  server = await startRedis({
    args: [
      '--tls-port', String(tlsPort),
      '--tls-cert-file', path.join(dir, 'server.crt'),
      '--tls-key-file', path.join(dir, 'server.key'),
      '--tls-ca-cert-file', path.join(dir, 'ca.crt'),
      '--tls-auth-clients', 'no',
    ],
    aclUsers: [{ username: 'tls-user', password: 'tls-pass-Q1', rules: '+@all ~* &*' }],
  })
})

afterAll(async () => {
  await stopAll()
  fs.rmSync(dir, { recursive: true, force: true })
})

const ca = () => fs.readFileSync(path.join(dir, 'ca.crt'))

test('locks over TLS with the server\'s CA, as an ACL user', async () => {
  const locker = new Locker({
    host: 'localhost', port: tlsPort, username: 'tls-user', password: 'tls-pass-Q1', tls: { ca: ca() },
  })
  const lock = await locker.acquire('tls:k', { ttl: 5000 })
  expect(await server.client().get('tls:k')).toBe(lock.token)
  expect(await lock.release()).toBe(true)
  await locker.close()
})

test('a certificate from another CA is refused with LockConnectionError, not a hang', async () => {
  const locker = new Locker({ host: 'localhost', port: tlsPort, tls: { ca: fs.readFileSync(path.join(dir, 'other.crt')) } },
    { connectTimeout: 2000 })
  const error = await locker.acquire('tls:k').catch((e) => e)
  expect(error).toBeInstanceOf(LockConnectionError)
  await locker.close()
})

test('rejectUnauthorized: false accepts any certificate (test setups only)', async () => {
  const locker = new Locker({ host: '127.0.0.1', port: tlsPort, tls: { rejectUnauthorized: false } })
  const lock = await locker.acquire('tls:insecure')
  expect(await lock.release()).toBe(true)
  await locker.close()
})

// Issue 20: rediss:// against a plain Redis said only "connect timed out", after the whole
// connectTimeout (10 s by default).
describe('TLS on one side only: the error says so, long before the connect timeout', () => {
  test('rediss:// to a Redis without TLS: "may not speak TLS", with the default timeouts', async () => {
    const locker = new Locker(`rediss://127.0.0.1:${server.port}`)
    const started = Date.now()
    const error = await locker.acquire('tls:plain').catch((e) => e)
    const elapsed = Date.now() - started
    await locker.close()
    expect(error).toBeInstanceOf(LockConnectionError)
    expect(error.message).toBe(`Redis unavailable while locking "tls:plain": the server at 127.0.0.1:${server.port} ` +
      '(from the target argument) may not speak TLS, as it answers in plain text (rediss:// and the tls option ' +
      'ask for TLS; a server without it needs redis://)')
    // Half the default connect timeout (10 s): slack for a loaded machine, far from a timeout.
    expect(elapsed).toBeLessThan(5000)
  })

  test('redis:// to a port that speaks only TLS: the error says it may need rediss://, at once', async () => {
    const locker = new Locker(`redis://127.0.0.1:${tlsPort}`)
    const started = Date.now()
    const error = await locker.acquire('tls:only').catch((e) => e)
    const elapsed = Date.now() - started
    await locker.close()
    expect(error).toBeInstanceOf(LockConnectionError)
    expect(error.message).toBe(`Redis unavailable while locking "tls:only": the server at 127.0.0.1:${tlsPort} ` +
      '(from the target argument) closed the connection before answering; if it speaks only TLS, use rediss:// or the tls option')
    expect(elapsed).toBeLessThan(5000)
  })
})

describe('a TLS connection that fails or stalls never crashes the host process', () => {
  const fixture = path.join(__dirname, '..', 'fixtures', 'tls-fault.js')
  const run = (...args) => promisify(execFile)(process.execPath, [fixture, ...args.map(String)], { timeout: 30000 })
    .then(({ stdout }) => JSON.parse(stdout), (error) => ({ crashed: `${error.message}\n${error.stderr}` }))

  test('rediss:// pointed at a plain Redis port: the call rejects and the process lives on', async () => {
    const outcome = await run('plain-port', server.port)
    expect(outcome).toMatchObject({ settled: 'rejected', name: 'LockConnectionError', code: 'ECONNECTION' })
  })

  test('a TLS Redis stopped with a call pending: the call rejects in time and the process lives on', async () => {
    try {
      const outcome = await run('paused-server', tlsPort, path.join(dir, 'ca.crt'), server.pid)
      expect(outcome).toMatchObject({ settled: 'rejected', code: 'ECONNECTION' })
      // connectTimeout + commandTimeout of the fixture, and slack for this machine.
      expect(outcome.ms).toBeLessThan(6000)
    } finally {
      server.resume()
    }
  })
})
