'use strict'

// ironlock on one topology against ironlock on a topology its figures should match (one of its
// `comparedWith`, topologies/index.js), case by case, from the same run: for each column that
// has a better direction, the factor oriented so that > 1 means better on the first topology.

const { COLUMNS, isComplete } = require('./report')
const { formatTable } = require('./table')

const OURS = 'ironlock'

// ironlock's completed row of `title` on the topology `key`, if it ran there.
function oursIn (results, key, title) {
  const row = results.find((result) => result.topologyKey === key && result.title === title)
    ?.rows.find((each) => each.impl === OURS)
  return row && isComplete(row) ? row : null
}

/** `results` as run.js collects them → [{ title, scenario, ratios: { column: factor } }]. */
function compareTopologies (results, topology, base) {
  return results.filter((result) => result.topologyKey === topology.key).flatMap((result) => {
    const here = oursIn(results, topology.key, result.title)
    const there = oursIn(results, base.key, result.title)
    if (!here || !there) return []
    const ratios = {}
    for (const column of COLUMNS[result.scenario].filter((each) => each.better)) {
      ratios[column.header] = column.better === 'higher'
        ? column.value(here) / column.value(there)
        : column.value(there) / column.value(here)
    }
    return [{ title: result.title, scenario: result.scenario, ratios }]
  })
}

// One table per kind of case, since each kind has its own columns.
function renderComparison (topology, base, comparisons) {
  const title = `\n== ${OURS} on ${topology.name} vs on ${base.name}, same run, >1 = better on ${topology.key} ==`
  if (comparisons.length === 0) return `${title}\n(no case completed on both: no ratios)`
  const kinds = [...new Set(comparisons.map((comparison) => comparison.scenario))]
  const tables = kinds.map((kind) => {
    const cases = comparisons.filter((comparison) => comparison.scenario === kind)
    const headers = Object.keys(cases[0].ratios)
    const rows = cases.map(({ title, ratios }) => [title, ...headers.map((header) => `×${ratios[header].toFixed(2)}`)])
    return formatTable(['case', ...headers], rows)
  })
  return `${title}\n${tables.join('\n\n')}`
}

module.exports = { compareTopologies, renderComparison }
