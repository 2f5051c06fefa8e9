'use strict'

// Turns result rows into the printed tables and the "ironlock vs best peer" line.

const { formatTable } = require('./table')

const OURS = 'ironlock'

function fixed (digits) {
  return (value) => value == null || !Number.isFinite(value)
    ? '-'
    : value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

// `better` marks the columns that get a ratio against ironlock.
const UNCONTENDED_COLUMNS = [
  { header: 'cycles/s', value: (r) => r.cyclesPerSec, format: fixed(0), better: 'higher' },
  { header: 'p50 ms', value: (r) => r.latencyMs.p50, format: fixed(2), better: 'lower' },
  { header: 'p99 ms', value: (r) => r.latencyMs.p99, format: fixed(2), better: 'lower' },
  { header: 'ELU µs/cycle', value: (r) => r.eluUsPerCycle, format: fixed(1), better: 'lower' },
  { header: 'CPU µs/cycle', value: (r) => r.cpuUsPerCycle, format: fixed(1), better: 'lower' },
  { header: 'Redis CPU µs/cycle', value: (r) => r.redisCpuUsPerCycle, format: fixed(1), better: 'lower' },
  { header: 'cmds/cycle', value: (r) => r.commandsPerCycle, format: fixed(2), better: 'lower' },
  { header: 'evals/cycle', value: (r) => r.evalsPerCycle, format: fixed(2) }
]

const CONTENDED_COLUMNS = [
  { header: 'wall ms', value: (r) => r.wallMs, format: fixed(0), better: 'lower', ifTimedOut: 'timeout' },
  { header: '×ideal', value: (r) => r.wallOverIdeal, format: fixed(2), ifTimedOut: '-' },
  { header: '×floor', value: (r) => r.wallOverFloor, format: fixed(2), ifTimedOut: '-' },
  { header: 'hand-off p50 ms', value: (r) => r.handoffMs.p50, format: fixed(2), better: 'lower' },
  { header: 'hand-off p99 ms', value: (r) => r.handoffMs.p99, format: fixed(2), better: 'lower' },
  { header: 'PING p50 ms', value: (r) => r.pingMs?.p50, format: fixed(3) },
  { header: 'p50/PING', value: (r) => r.p50OverPing, format: fixed(1) },
  { header: 'cmds/acq', value: (r) => r.commandsPerAcquisition, format: fixed(2), better: 'lower' },
  { header: 'evals/acq', value: (r) => r.evalsPerAcquisition, format: fixed(2) },
  { header: 'CPU ms', value: (r) => r.cpuMs, format: fixed(0), better: 'lower' },
  { header: 'ELU µs/acq', value: (r) => r.eluUsPerAcquisition, format: fixed(1), better: 'lower' },
  { header: 'overlaps', value: (r) => r.overlaps, format: (n) => (n === 0 ? 'ok' : String(n)) }
]

// Many keys contended at once: what waiting costs a busy process.
const CONTENDED_KEYS_COLUMNS = [
  { header: 'locks/s', value: (r) => r.acquisitionsPerSec, format: fixed(0), better: 'higher' },
  { header: 'ELU µs/acq', value: (r) => r.eluUsPerAcquisition, format: fixed(1), better: 'lower' },
  { header: 'CPU µs/acq', value: (r) => r.cpuUsPerAcquisition, format: fixed(1), better: 'lower' },
  { header: 'cmds/acq', value: (r) => r.commandsPerAcquisition, format: fixed(2), better: 'lower' },
  { header: 'evals/acq', value: (r) => r.evalsPerAcquisition, format: fixed(2) },
  { header: 'overlaps', value: (r) => r.overlaps, format: (n) => (n === 0 ? 'ok' : String(n)) }
]

// The contended case with the waiters spread over several processes. CPU and
// ELU are summed over the processes; cmds/acq per master only on Redlock.
const CONTENDED_PROCESSES_COLUMNS = [
  { header: 'wall ms', value: (r) => r.wallMs, format: fixed(0), better: 'lower', ifTimedOut: 'timeout' },
  { header: '×ideal', value: (r) => r.wallOverIdeal, format: fixed(2), ifTimedOut: '-' },
  { header: 'hand-off p50 ms', value: (r) => r.handoffMs.p50, format: fixed(2), better: 'lower' },
  { header: 'hand-off p99 ms', value: (r) => r.handoffMs.p99, format: fixed(2), better: 'lower' },
  { header: 'x-proc %', value: (r) => r.crossProcessShare * 100, format: fixed(0) },
  { header: 'x-proc p50 ms', value: (r) => r.crossProcessHandoffMs.p50, format: fixed(2) },
  { header: 'PING p50 ms', value: (r) => r.pingMs?.p50, format: fixed(3) },
  { header: 'p50/PING', value: (r) => r.p50OverPing, format: fixed(1) },
  { header: 'cmds/acq', value: (r) => r.commandsPerAcquisition, format: fixed(2), better: 'lower' },
  { header: 'evals/acq', value: (r) => r.evalsPerAcquisition, format: fixed(2) },
  {
    header: 'cmds/acq per master',
    value: (r) => r.commandsPerAcquisitionByServer,
    format: (perServer) => perServer.length > 1 ? perServer.map(fixed(1)).join(' / ') : '-'
  },
  { header: 'CPU ms', value: (r) => r.cpuMs, format: fixed(0), better: 'lower' },
  { header: 'ELU ms', value: (r) => r.eluActiveMs, format: fixed(0), better: 'lower' },
  { header: 'overlaps', value: (r) => r.overlaps, format: (n) => (n === 0 ? 'ok' : String(n)) }
]

// Hand-off from a holder that is not ironlock's: "from delete" starts when the
// holder's delete was answered; "from send" when it was sent.
const FOREIGN_COLUMNS = [
  { header: 'hand-off p50 ms', value: (r) => r.handoffMs.p50, format: fixed(2), better: 'lower' },
  { header: 'p99 ms', value: (r) => r.handoffMs.p99, format: fixed(2), better: 'lower' },
  { header: 'max ms', value: (r) => r.handoffMs.max, format: fixed(2), better: 'lower' },
  { header: 'from send p50 ms', value: (r) => r.fromSendMs.p50, format: fixed(2) },
  { header: 'PING p50 ms', value: (r) => r.pingMs?.p50, format: fixed(3) },
  { header: 'p50/PING', value: (r) => r.p50OverPing, format: fixed(1) },
  { header: 'cmds/round', value: (r) => r.commandsPerRound, format: fixed(1), better: 'lower' },
  { header: 'overlaps', value: (r) => r.overlaps, format: (n) => (n === 0 ? 'ok' : String(n)) }
]

// Whole runs of a fleet; a capped run counts as the cap.
const FLEET_COLUMNS = [
  { header: 'median wall ms', value: (r) => r.wallMs.p50, format: fixed(0), better: 'lower' },
  { header: 'max wall ms', value: (r) => r.wallMs.max, format: fixed(0), better: 'lower' },
  { header: 'acq/s median run', value: (r) => r.acquisitionsPerSecMedian, format: fixed(0), better: 'higher' },
  { header: 'acq/s all runs', value: (r) => r.acquisitionsPerSec, format: fixed(0), better: 'higher' },
  { header: 'longest gap ms', value: (r) => r.longestGapMs, format: fixed(0) },
  { header: 'cmds/acq', value: (r) => r.commandsPerAcquisition, format: fixed(1), better: 'lower' },
  { header: 'runs s (* = capped)', value: (r) => r.runs, format: (runs) => runs.map(runLabel).join(' ') },
  { header: 'overlaps', value: (r) => r.overlaps, format: (n) => (n === 0 ? 'ok' : String(n)) }
]

// A rolling migration: old workers and ironlock workers on one key, per mix;
// acq/s and the ratios are medians over the runs.
const ROLLING_COLUMNS = [
  { header: 'old acq/s', value: (r) => r.oldPerSec, format: fixed(1) },
  { header: 'ironlock acq/s', value: (r) => r.oursPerSec, format: fixed(1) },
  { header: 'old share %', value: (r) => r.oldShare === null ? null : r.oldShare * 100, format: fixed(1) },
  { header: 'ironlock ÷ old', value: (r) => r.oursOverOld, format: fixed(1) },
  { header: 'old gave up/s', value: (r) => r.oldGaveUpPerSec, format: fixed(2) },
  { header: 'old wait p50 ms', value: (r) => r.oldWaitMs.p50, format: fixed(0) },
  { header: 'old wait max ms', value: (r) => r.oldWaitMs.max, format: fixed(0) },
  { header: 'ironlock hand-off p50 ms', value: (r) => r.ourHandOffMs.p50, format: fixed(2) },
  { header: 'runs old/ironlock acq/s', value: (r) => r.runs, format: (runs) => runs.map(rollingRunLabel).join(' ') },
  { header: 'overlaps', value: (r) => r.overlaps, format: (n) => (n === 0 ? 'ok' : String(n)) }
]

const COLUMNS = {
  uncontended: UNCONTENDED_COLUMNS,
  contended: CONTENDED_COLUMNS,
  'contended-keys': CONTENDED_KEYS_COLUMNS,
  'contended-processes': CONTENDED_PROCESSES_COLUMNS,
  foreign: FOREIGN_COLUMNS,
  fleet: FLEET_COLUMNS,
  rolling: ROLLING_COLUMNS
}

function runLabel (run) {
  return `${(run.wallMs / 1000).toFixed(1)}${run.capped ? '*' : ''}`
}

function rollingRunLabel (run) {
  return [run.oldPerSec, run.oursPerSec].filter((rate) => rate !== null).map(fixed(0)).join('/')
}

// Errors are listed in full under the table, so the rows stay one line each.
function status (row) {
  if (row.error) return 'error, see below'
  if (row.killed) return `${row.killed}/${row.processes} processes killed at the cap`
  if (row.gaveUp) return `timeout: ${row.acquired}/${row.tasks} acquired in time`
  if (row.capped) return `${row.capped}/${row.runs.length} runs capped`
  if (row.leftOpen) return `${row.leftOpen} run(s) left a handle open`
  return 'ok'
}

function cell (row, column) {
  if (row.error) return '-'
  if ((row.gaveUp || row.killed) && column.ifTimedOut) return column.ifTimedOut
  return column.format(column.value(row))
}

const isComplete = (row) => !row.error && !row.gaveUp && !row.killed

// Factor oriented so that > 1 always means ironlock is better.
function ratioAgainstBestPeer (ours, peers, column) {
  const score = (row) => column.better === 'higher' ? column.value(row) : -column.value(row)
  const best = peers.reduce((a, b) => (score(b) > score(a) ? b : a))
  const factor = column.better === 'higher'
    ? column.value(ours) / column.value(best)
    : column.value(best) / column.value(ours)
  return { column: column.header, factor, peer: best.impl }
}

function comparisonLine (rows, columns) {
  const ours = rows.find((row) => row.impl === OURS)
  // A reference row (the contended case's floor) is not a peer.
  const peers = rows.filter((row) => row.impl !== OURS && !row.reference && isComplete(row))
  if (!ours) return `(no ${OURS} row: nothing to compare against)`
  if (!isComplete(ours)) return `(${OURS} did not complete: no ratios)`
  if (peers.length === 0) return `(no peer completed: no ratios)`
  const ratios = columns.filter((column) => column.better)
    .map((column) => ratioAgainstBestPeer(ours, peers, column))
  const parts = ratios.map(({ column, factor, peer }) => `${column} ×${factor.toFixed(2)} (${peer})`)
  return `${OURS} vs best peer, >1 = ${OURS} better: ${parts.join(', ')}`
}

// The fleets' rows are not implementations: fleet B (with ironlock shims) is
// compared with fleet A (redlock only). Capped runs count, as the cap.
function fleetComparisonLine (rows, columns) {
  const [a, b] = rows
  if (!a || !b || a.error || b.error) return '(a fleet did not complete: no ratios)'
  const parts = columns.filter((column) => column.better).map((column) => {
    const factor = column.better === 'higher'
      ? column.value(b) / column.value(a)
      : column.value(a) / column.value(b)
    return `${column.header} ×${factor.toFixed(2)}`
  })
  return `fleet B vs fleet A, >1 = B better: ${parts.join(', ')}`
}

// Each old kind: its rate beside ironlock as a share of its rate alone, and
// ironlock's rate beside it as a share of ironlock's alone.
function rollingComparisonLine (rows) {
  if (rows.some((row) => row.error)) return '(a mix did not complete: no ratios)'
  const alone = (old, ours) => rows.find((row) => row.mix.old === old && row.mix.ours === ours)
  const ironlockAlone = alone(null, true)
  const parts = rows.filter((row) => row.mix.old && row.mix.ours && alone(row.mix.old, false)).map((mixed) => {
    const oldAlone = alone(mixed.mix.old, false)
    return `${mixed.mix.old} ×${(mixed.oldPerSec / oldAlone.oldPerSec).toFixed(2)} of its rate alone ` +
      `(ironlock beside it ×${(mixed.oursPerSec / ironlockAlone.oursPerSec).toFixed(2)} of its own)`
  })
  return `beside ironlock, medians: ${parts.join('; ')}`
}

const COMPARISON_LINES = { fleet: fleetComparisonLine, rolling: rollingComparisonLine }
const FIRST_HEADERS = { fleet: 'fleet', rolling: 'mix' }

function renderCase (title, kind, rows) {
  const columns = COLUMNS[kind]
  const headers = [FIRST_HEADERS[kind] ?? 'implementation', ...columns.map((column) => column.header), 'status']
  const cells = rows.map((row) => [row.impl, ...columns.map((column) => cell(row, column)), status(row)])
  const errors = rows.filter((row) => row.error).map((row) => `error in ${row.impl}: ${row.error}`)
  const comparison = (COMPARISON_LINES[kind] ?? comparisonLine)(rows, columns)
  return [`\n== ${title} ==`, formatTable(headers, cells), ...errors, comparison].join('\n')
}

module.exports = { renderCase, COLUMNS, isComplete }
