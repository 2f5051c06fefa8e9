'use strict'

// Plain-text table with right-aligned columns (the first column is left-aligned).
function formatTable (headers, rows) {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => row[column].length)))
  const line = (cells) => cells
    .map((cell, column) => column === 0 ? cell.padEnd(widths[column]) : cell.padStart(widths[column]))
    .join('  ')
  return [line(headers), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n')
}

module.exports = { formatTable }
