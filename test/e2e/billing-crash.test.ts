import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { seededRandom } from '@gpumesh/core'
import { openStore, type Store } from '@gpumesh/store'
import {
  apiCaller,
  createTestDatabase,
  eventually,
  freeTcpPort,
  simulatedWorker,
  type SimulatedWorker,
  type TestDatabase,
} from '@gpumesh/testing'

// A coordinator killed with SIGKILL at random moments while it bills running clusters, and restarted each
// time on the same PostgreSQL database: afterwards the ledger verifies, every interval of every cluster was
// charged exactly once (ids 1..n, no gap), and each charge equals what the nodes' recorded service periods
// cost, computed here by hand. The kill delays come from a seed printed in the output, so a failure replays.

const cli = resolve(import.meta.dirname, '../../packages/cli/src/main.ts')
const intervalMs = 300
const kills = 6
const seed = Number(process.env['GPUMESH_CRASH_SEED'] ?? Date.now() % 1_000_000)

for (const backend of ['postgres', 'pglite'] as const)
  describe(`billing across coordinator crashes (SIGKILL, ${backend})`, { timeout: 240_000 }, () => {
    let database: TestDatabase | undefined
    let store: Store | undefined
    let dataDir: string
    let port: number
    let baseUrl: string
    let coordinator: ChildProcess | undefined
    const workers: SimulatedWorker[] = []
    const random = seededRandom(seed)

    const start = async () => {
      const child = spawn(
        process.execPath,
        [cli, 'coordinator', 'start', '--config', join(dataDir, 'config.json')],
        {
          env: { ...process.env, DATABASE_URL: database?.connectionString ?? '' },
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      )
      let stderr = ''
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
      coordinator = child
      await eventually(
        async () => {
          if (child.exitCode !== null) throw new Error(`coordinator exited ${child.exitCode}: ${stderr}`)
          return (await fetch(`${baseUrl}/v1/health`)).ok
        },
        'the coordinator up',
        30_000,
      )
      for (const worker of workers) await worker.connect(baseUrl)
    }
    const kill = async () => {
      const child = coordinator!
      const exited = new Promise((resolveExit) => child.once('exit', resolveExit))
      child.kill('SIGKILL')
      await exited
      coordinator = undefined
    }
    /** What the coordinator says a cluster has been charged for so far. */
    const clusterOf = async (clusterId: string) =>
      (await call('GET', `/v1/clusters/${clusterId}`, renterKey)).body as {
        state: string
        billing: { intervalsCharged: number } | null
      }
    let renterKey = ''
    const call = apiCaller(() => baseUrl)

    before(async () => {
      process.stdout.write(`billing crash test seed ${seed} (GPUMESH_CRASH_SEED=${seed} replays it)\n`)
      if (backend === 'postgres') database = await createTestDatabase()
      dataDir = mkdtempSync(join(tmpdir(), 'gpumesh-crash-'))
      port = await freeTcpPort()
      baseUrl = `http://127.0.0.1:${port}`
      writeFileSync(
        join(dataDir, 'config.json'),
        JSON.stringify({
          host: '127.0.0.1',
          port,
          dataDir,
          heartbeatIntervalMs: 200,
          heartbeatFlushIntervalMs: 100,
          verificationEnabled: false,
          rttProbeIntervalMs: 0,
          clusterBillingEnabled: true,
          billingIntervalMs: intervalMs,
          logLevel: 'silent',
        }),
      )
    })
    after(async () => {
      for (const worker of workers) worker.close()
      if (coordinator) await kill()
      await store?.close()
      await database?.drop()
      if (dataDir) rmSync(dataDir, { recursive: true, force: true })
    })

    it('charges every interval exactly once, at what the nodes served, and the ledger verifies', async () => {
      await start()
      const operatorKey = readFileSync(join(dataDir, 'operator.key'), 'utf8').trim()
      const supplier = (
        await call('POST', '/v1/accounts', undefined, { name: 'supplier', roles: ['supplier'] })
      ).body
      const renter = (await call('POST', '/v1/accounts', undefined, { name: 'renter', roles: ['renter'] }))
        .body
      renterKey = renter.apiKey.key
      for (let index = 0; index < 4; index += 1)
        workers.push(
          await simulatedWorker(baseUrl, supplier.apiKey.key, { pricePerGpuHourUsd: `0.${index + 4}0` }),
        )
      await eventually(
        async () => (await call('GET', '/v1/offers?region=sim')).body.total === 4,
        'four machines on offer',
      )
      const credited = await call('POST', '/v1/operator/credits', operatorKey, {
        accountId: renter.account.id,
        amountGmt: '100',
        reason: 'crash test',
      })
      assert.equal(credited.status, 200)
      const clusterIds: string[] = []
      for (let index = 0; index < 2; index += 1) {
        const created = await call('POST', '/v1/clusters', renter.apiKey.key, {
          nodes: 2,
          gpuModel: 'cpu',
          verifiedOnly: false,
        })
        assert.equal(created.status, 201, JSON.stringify(created.body))
        clusterIds.push(created.body.id)
      }
      for (const clusterId of clusterIds)
        await eventually(
          async () => ((await clusterOf(clusterId)).billing?.intervalsCharged ?? 0) >= 1,
          `${clusterId} billing`,
          30_000,
        )

      // Kill the coordinator at random moments while it bills, and start it again each time.
      for (let round = 0; round < kills; round += 1) {
        const delayMs = Math.floor(random.next() * 2 * intervalMs)
        await new Promise((resolveDelay) => setTimeout(resolveDelay, delayMs))
        await kill()
        await start()
      }
      const billedBefore = await Promise.all(
        clusterIds.map(async (id) => (await clusterOf(id)).billing!.intervalsCharged),
      )
      await eventually(
        async () =>
          (
            await Promise.all(clusterIds.map(async (id) => (await clusterOf(id)).billing!.intervalsCharged))
          ).every((billed, index) => billed >= billedBefore[index]! + 2),
        'billing carries on after the last restart',
        30_000,
      )
      for (const clusterId of clusterIds) {
        assert.equal(
          (await call('POST', `/v1/clusters/${clusterId}/terminate`, renter.apiKey.key)).status,
          200,
        )
        await eventually(
          async () => (await clusterOf(clusterId)).state === 'terminated',
          `${clusterId} terminated`,
          30_000,
        )
      }

      // Stop the last coordinator gently and read what it left, as an operator would (PGlite: one process at a time).
      const last = coordinator!
      const stopped = new Promise((resolveExit) => last.once('exit', resolveExit))
      last.kill('SIGTERM')
      await stopped
      coordinator = undefined
      const reader =
        backend === 'postgres'
          ? await openStore({ kind: 'postgres', connectionString: database!.connectionString })
          : await openStore({ kind: 'pglite', dataDir: join(dataDir, 'pgdata') })
      store = reader
      const verification = await reader.ledger.verify()
      assert.equal(
        verification.ok,
        true,
        JSON.stringify(verification, (_key, value) => String(value)),
      )
      let renterCharged = 0n
      for (const clusterId of clusterIds) {
        const cluster = (await reader.getCluster(clusterId))!
        const readyAtMs = cluster.readyAtMs!
        const endMs = cluster.billedUntilMs!
        const count = Math.ceil((endMs - readyAtMs) / intervalMs)
        assert.equal(cluster.billedIntervals, count)
        const nodes = await reader.listClusterNodes(clusterId)
        const periods = await reader.listClusterNodeService(clusterId)
        // By hand: a node's charge up to t is floor(price × ms served between ready and t / 1 h), in GMT units
        // at 1 GMT per USD; interval k charges the difference at its two ends.
        const upTo = (deviceId: string, price: bigint, k: number) => {
          const untilMs = Math.min(readyAtMs + k * intervalMs, endMs)
          let served = 0
          for (const period of periods) {
            if (period.deviceId !== deviceId) continue
            const from = Math.max(period.startedAtMs, readyAtMs)
            const to = Math.min(period.endedAtMs ?? untilMs, untilMs)
            if (to > from) served += to - from
          }
          return (price * BigInt(served)) / 3_600_000n
        }
        const ids = Array.from({ length: count }, (_, index) => `bill:${clusterId}:${index + 1}`)
        const bills = new Map(
          (await reader.ledger.listTransfersById(ids)).map((transfer) => [transfer.id, transfer]),
        )
        for (let k = 1; k <= count; k += 1) {
          let expected = 0n
          for (const node of nodes)
            expected +=
              upTo(node.deviceId, node.pricePerHourMicroUsd, k) -
              upTo(node.deviceId, node.pricePerHourMicroUsd, k - 1)
          assert.equal(
            bills.get(`bill:${clusterId}:${k}`)?.amount ?? 0n,
            expected,
            `${clusterId} interval ${k}`,
          )
          renterCharged += expected
        }
        process.stdout.write(
          `${backend} ${clusterId}: ${count} intervals charged once each across ${kills} SIGKILLs; ${bills.size} charges matched by hand\n`,
        )
        const [escrow] = await reader.ledger.getAccounts([`escrow:${clusterId}`])
        assert.equal(
          escrow!.creditsPosted - escrow!.debitsPosted,
          0n,
          'the escrow paid out all it was charged',
        )
        assert.equal(escrow!.creditsPending, 0n, 'nothing held any more')
      }
      const [wallet] = await reader.ledger.getAccounts([`user:${renter.account.id}`])
      assert.equal(wallet!.creditsPosted - wallet!.debitsPosted, 100_000_000n - renterCharged)
      assert.equal(wallet!.debitsPending, 0n)
    })
  })
