'use strict'

// Redis work done during a measured window, read from INFO commandstats (and INFO cpu).
//
// Redis 7.0 records commands issued by scripts via redis.call() in
// commandstats (and in total_commands_processed) exactly like client commands:
// after CONFIG RESETSTAT, one EVAL running ten GETs reports eval=1, get=10.
// Neither counter tells the two apart, so top-level commands cannot be
// recovered exactly. We report `total` (every call, script-internal ones
// included) and `evals` (EVAL/EVALSHA/FCALL round trips, always top-level);
// `byCommand` keeps the breakdown for results.json.

const SCRIPT_COMMANDS = new Set(['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro'])

function mergeCalls (callsPerServer) {
  const merged = {}
  for (const calls of callsPerServer) {
    for (const [command, count] of Object.entries(calls)) merged[command] = (merged[command] ?? 0) + count
  }
  return merged
}

// Opens a counting window on every server (commands are summed across Redlock nodes).
async function resetCommandCounts (servers) {
  await Promise.all(servers.map((server) => server.resetStats()))
}

// `pings`: the bench's own PINGs to each of the `pinged` servers (see ping.js), taken out.
async function readCommandCounts (servers, { pings = 0, pinged = [] } = {}) {
  const perServer = await Promise.all(servers.map(async (server) => commandCallsWithoutPings(server, { pings, pinged })))
  return summarizeCalls(mergeCalls(perServer))
}

// One server's calls per command, less the bench's PINGs if it is one of the `pinged`.
async function commandCallsWithoutPings (server, { pings, pinged }) {
  return withoutPings(await server.commandCalls(), pinged.includes(server) ? pings : 0)
}

// `byCommand` less the bench's own `pings`.
function withoutPings (byCommand, pings) {
  if (byCommand.ping !== undefined) {
    byCommand.ping -= pings
    if (byCommand.ping <= 0) delete byCommand.ping
  }
  return byCommand
}

// `total` and `evals` (see above) of one set of per-command counts.
function summarizeCalls (byCommand) {
  let total = 0
  let evals = 0
  for (const [command, count] of Object.entries(byCommand)) {
    total += count
    if (SCRIPT_COMMANDS.has(command)) evals += count
  }
  return { total, evals, byCommand }
}

// CPU seconds used by all the servers together, to difference around a measured window.
async function serverCpuSeconds (servers) {
  const seconds = await Promise.all(servers.map((server) => server.cpuSeconds()))
  return seconds.reduce((sum, value) => sum + value, 0)
}

module.exports = { resetCommandCounts, readCommandCounts, commandCallsWithoutPings, summarizeCalls, serverCpuSeconds }
