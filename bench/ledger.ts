// Ledger transfers per second, single (one transfer per batch) and batched, on PGlite and PostgreSQL, with
// several concurrent clients (each its own connection on PostgreSQL; PGlite has one).
//
//   node bench/ledger.ts [--seconds 5] [--batch 1000] [--accounts 1000]
//
// Transfers move 1 unit between random user accounts (funded first); every batch goes through the same path
// as production: lock the accounts, read the transfers it names, planBatch, set-based writes, one transaction.
// The ledger is verified at the end of each run.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ledgerAccounts, type TransferRequest } from '@gpumesh/ledger'
import { openStore, type Store } from '@gpumesh/store'
import { createTestDatabase } from '@gpumesh/testing'

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    batch: { type: 'string', default: '1000' },
    accounts: { type: 'string', default: '1000' },
  },
})
const seconds = Number(flags.seconds)
const batchSize = Number(flags.batch)
const accountCount = Number(flags.accounts)

type Row = {
  store: string
  mode: string
  clients: number
  transfers: number
  perSecond: number
  verified: boolean
}
const rows: Row[] = []

async function run(kind: 'pglite' | 'postgres', clients: number, perBatch: number): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'gpumesh-bench-ledger-'))
  const database = kind === 'postgres' ? await createTestDatabase() : undefined
  const stores: Store[] = []
  try {
    const open = () =>
      kind === 'postgres'
        ? openStore({ kind: 'postgres', connectionString: database!.connectionString })
        : openStore({ kind: 'pglite', dataDir })
    stores.push(await open())
    // PGlite is one embedded database: its "clients" share the one store, as coordinator requests do.
    for (let index = 1; index < clients; index += 1)
      stores.push(kind === 'postgres' ? await open() : stores[0]!)
    const users = Array.from({ length: accountCount }, (_, index) => ledgerAccounts.user(`u${index}`))
    await stores[0]!.ledger.createAccounts([ledgerAccounts.settlement(), ...users], 0)
    const funding: TransferRequest[] = users.map((user, index) => ({
      id: `fund-${index}`,
      kind: 'single',
      debitAccountId: 'external:settlement',
      creditAccountId: user.id,
      amount: 10n ** 12n,
      code: 'deposit',
    }))
    await stores[0]!.ledger.createTransfers(funding, 0)

    let transfers = 0
    let sequence = 0
    const deadline = performance.now() + seconds * 1000
    const startedAt = performance.now()
    await Promise.all(
      stores.map(async (store, client) => {
        while (performance.now() < deadline) {
          const batch: TransferRequest[] = []
          for (let index = 0; index < perBatch; index += 1) {
            const from = Math.floor(Math.random() * accountCount)
            const to = (from + 1 + Math.floor(Math.random() * (accountCount - 1))) % accountCount
            batch.push({
              id: `t-${client}-${(sequence += 1)}`,
              kind: 'single',
              debitAccountId: users[from]!.id,
              creditAccountId: users[to]!.id,
              amount: 1n,
              code: 'bench',
            })
          }
          const results = await store.ledger.createTransfers(batch, 1)
          if (results.some((result) => result !== 'ok')) throw new Error(`unexpected results: ${results[0]}`)
          transfers += batch.length
        }
      }),
    )
    const elapsedS = (performance.now() - startedAt) / 1000
    const verification = await stores[0]!.ledger.verify()
    rows.push({
      store: kind,
      mode: perBatch === 1 ? 'single' : `batches of ${perBatch}`,
      clients,
      transfers,
      perSecond: Math.round(transfers / elapsedS),
      verified: verification.ok,
    })
  } finally {
    for (const store of new Set(stores)) await store.close()
    await database?.drop()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

for (const kind of ['pglite', 'postgres'] as const) {
  for (const clients of [1, 4]) {
    await run(kind, clients, 1)
    await run(kind, clients, batchSize)
  }
}
if (rows.length > 0) await run('postgres', 8, batchSize)

console.log(`ledger transfers per second, ${seconds} s per run, ${accountCount} accounts, 2 cores`)
console.log('store     mode                clients   transfers    per second   verified')
for (const row of rows)
  console.log(
    `${row.store.padEnd(9)} ${row.mode.padEnd(19)} ${String(row.clients).padStart(7)} ${String(row.transfers).padStart(11)} ${String(row.perSecond).padStart(13)}   ${row.verified}`,
  )
