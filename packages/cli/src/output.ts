import Table from 'cli-table3'

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`)
}

export function printTable(head: string[], rows: (string | number)[][]): void {
  const table = new Table({ head, style: { head: [], border: [] } })
  table.push(...rows.map((row) => row.map(String)))
  process.stdout.write(`${table.toString()}\n`)
}

export const gib = (mib: number) => `${(mib / 1024).toFixed(mib % 1024 === 0 ? 0 : 1)} GiB`
export const percent = (ratio: number) => `${(ratio * 100).toFixed(1)}%`
/** A device's reliability: the measured online share, or "new" before it has an hour of history. */
export const reliabilityText = (ratio: number | null) => (ratio === null ? 'new' : percent(ratio))
