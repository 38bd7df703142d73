import assert from 'node:assert/strict'
import { type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parseGmtToUnits } from '@gpumesh/core'
import {
  createTestNetwork,
  eventually,
  hostApi,
  startCoordinatorOnHost,
  type HostApi,
  type TestHost,
  type TestNetwork,
  workerStartArgs,
} from '@gpumesh/testing'
import { removeClusterNodesOf } from '@gpumesh/worker'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'

// The web console in a real headless Chromium (Debian's build, driven by playwright-core) against a live
// network on test hosts: a coordinator serving the built console, two worker agents with real WireGuard and
// Ray, proof-of-compute on, billing and short reward epochs. The browser runs on its own test host, so it
// reaches the coordinator as any user would, over the network. A renter funds the wallet, searches, deploys
// a cluster and watches it become ready, runs a job and reads its logs, terminates and sees the charge; a
// supplier sees a device, its verification and its epoch reward with the breakdown; a logged-out visitor
// sees the explorer with the network's true totals and nothing private. Every checked page is saved as a
// screenshot in a folder named in the output.

const repoRoot = resolve(import.meta.dirname, '../..')
const cli = join(repoRoot, 'packages/cli/src/main.ts')
const python = join(repoRoot, '.venv/bin/python')
const chromiumPath = '/usr/bin/chromium'
const consoleBuilt = existsSync(join(repoRoot, 'packages/console/dist/index.html'))
const usable = process.getuid?.() === 0 && existsSync(python) && existsSync(chromiumPath) && consoleBuilt
const workerCount = 2

describe(
  'web console in Chromium',
  {
    skip: usable
      ? false
      : 'needs root, .venv with Ray, Debian chromium and a built console (scripts/setup-system.sh, setup-python.sh, env.sh)',
  },
  () => {
    let network: TestNetwork
    let coordinatorHost: TestHost
    let baseUrl: string
    let api: HostApi
    let supplierKey: string
    let renterKey: string
    let browser: Browser
    const workDir = mkdtempSync(join(tmpdir(), 'gpumesh-console-'))
    const screenshots = join(
      tmpdir(),
      `gpumesh-console-screenshots-${new Date().toISOString().replace(/[:.]/g, '-')}`,
    )
    const workers: ChildProcess[] = []
    const deviceIds: string[] = []
    const clusterIds: string[] = []
    const pageErrors: string[] = []

    const snap = async (page: Page, name: string) => {
      // From the top: a full-page capture of a scrolled page draws the sticky header where it was scrolled to.
      await page.evaluate('window.scrollTo(0, 0)')
      await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true })
    }
    /** Runs a test's steps in a page; if one fails, the page as it was is saved beside the others. */
    const inPage = async (page: Page, name: string, steps: () => Promise<void>) => {
      try {
        await steps()
      } catch (error) {
        await snap(page, `failed-${name}`).catch(() => undefined)
        throw error
      } finally {
        await page.context().close()
      }
    }
    const openAs = async (key: string | undefined, viewport = { width: 1366, height: 900 }) => {
      const context: BrowserContext = await browser.newContext({ viewport })
      const page = await context.newPage()
      page.on('pageerror', (error) => pageErrors.push(`${page.url()}: ${error.message}`))
      page.on('console', (message) => {
        if (message.type() === 'error') pageErrors.push(`${page.url()}: ${message.text()}`)
      })
      if (key) {
        await page.goto(`${baseUrl}/login`)
        await page.getByTestId('login-api-key').fill(key)
        await page.getByTestId('login-submit').click()
        await page.getByTestId('account-name').waitFor()
      }
      return page
    }

    before(async () => {
      mkdirSync(screenshots, { recursive: true })
      console.log(`# console screenshots: ${screenshots}`)
      network = createTestNetwork(['coord', 'w0', 'w1', 'web'])
      coordinatorHost = network.hosts[0]!
      baseUrl = await startCoordinatorOnHost(network, coordinatorHost, {
        cli,
        workDir,
        settings: {
          heartbeatIntervalMs: 500,
          missedHeartbeatsBeforeOffline: 3,
          heartbeatFlushIntervalMs: 200,
          verificationEnabled: true,
          challengeCpuMatrixSize: 128,
          clusterProvisionTimeoutMs: 240_000,
          clusterBillingEnabled: true,
          billingIntervalMs: 2_000,
          gmtPerUsd: '100',
          faucetMaxClaimGmt: '500',
          rewardEpochMs: 15_000,
          rewardCloseDelayMs: 1_000,
          rewardSpotCheckFraction: 0,
          explorerCacheMs: 0,
          priceIndexSampleMs: 2_000,
        },
      })
      api = hostApi(network, coordinatorHost, baseUrl)
      supplierKey = api('/v1/accounts', {
        method: 'POST',
        body: { name: 'Sam Supplier', roles: ['supplier'] },
      }).body.apiKey.key
      renterKey = api('/v1/accounts', { method: 'POST', body: { name: 'Rita Renter', roles: ['renter'] } })
        .body.apiKey.key
      const operatorKey = readFileSync(join(workDir, 'coordinator', 'operator.key'), 'utf8').trim()
      assert.equal(
        api('/v1/operator/faucet', { method: 'POST', key: operatorKey, body: { amountGmt: '5000' } }).status,
        200,
      )
      for (let index = 0; index < workerCount; index += 1) {
        const token = api('/v1/enrollment-tokens', { method: 'POST', body: {}, key: supplierKey }).body.token
        workers.push(
          network.spawnIn(
            network.hosts[1 + index]!,
            process.execPath,
            workerStartArgs({
              cli,
              coordinatorUrl: baseUrl,
              stateDir: join(workDir, `worker-${index}`),
              region: 'e2e',
              country: index === 0 ? 'DE' : 'FR',
              pricePerGpuHour: (0.36 * (index + 1)).toFixed(2),
              token,
              extraArgs: [
                '--speedtest-interval-ms',
                '0',
                '--cluster-node-cpus',
                '1',
                '--ray-object-store-memory-bytes',
                String(100 * 1024 * 1024),
                '--netns-mount-namespace',
                `/proc/${process.pid}/ns/mnt`,
              ],
            }),
            { logPrefix: `worker-${index}` },
          ),
        )
      }
      await eventually(
        () => api('/v1/offers?region=e2e&limit=10&verifiedOnly=true').body.total === workerCount,
        'both machines verified and on offer',
        120_000,
      )
      for (let index = 0; index < workerCount; index += 1)
        deviceIds.push(
          JSON.parse(readFileSync(join(workDir, `worker-${index}`, 'enrollment.json'), 'utf8')).deviceId,
        )

      // Chromium runs on its own test host: a wrapper enters that host's namespace, and playwright talks to
      // the browser over a pipe, which crosses namespaces.
      const wrapper = join(workDir, 'chromium-in-web-host.sh')
      writeFileSync(
        wrapper,
        `#!/bin/sh\nexec ip netns exec ${network.hosts[3]!.namespace} ${chromiumPath} "$@"\n`,
      )
      chmodSync(wrapper, 0o755)
      browser = await chromium.launch({ executablePath: wrapper, args: ['--no-sandbox', '--disable-gpu'] })
    })

    after(async () => {
      await browser?.close().catch(() => undefined)
      for (const child of workers) child.kill('SIGKILL')
      for (const deviceId of deviceIds) await removeClusterNodesOf(deviceId, clusterIds)
      await network?.destroy()
      rmSync(workDir, { recursive: true, force: true })
    })

    it('a renter funds the wallet, searches, deploys, runs a job, reads its logs, terminates and sees the charge', async () => {
      const page = await openAs(renterKey)
      await inPage(page, 'renter', async () => {
        await page.goto(`${baseUrl}/wallet`)
        await page.getByTestId('faucet-amount').fill('300')
        await page.getByTestId('faucet-submit').click()
        await eventually(
          async () => (await page.getByTestId('wallet-balance').textContent())?.trim() === '300.000000',
          'balance 300',
          15_000,
        )
        await snap(page, '01-renter-wallet-funded')

        await page.goto(`${baseUrl}/rent`)
        await page.getByTestId('search-offers').click()
        await eventually(
          async () => (await page.getByTestId('offer-row').count()) === workerCount,
          'two offers listed',
          15_000,
        )
        await snap(page, '02-renter-offers')

        // A form error is shown next to its field, before anything is sent.
        await page.getByTestId('deploy-nodes').fill('0')
        await page.getByTestId('deploy-submit').click()
        await page.locator('[data-testid="field-error"][data-field="nodes"]').waitFor({ timeout: 5_000 })
        await snap(page, '03-renter-deploy-field-error')

        await page.getByTestId('deploy-nodes').fill('2')
        await page.getByTestId('deploy-gpus-per-node').fill('0')
        await page.getByTestId('deploy-hours').fill('1')
        await page.getByTestId('deploy-submit').click()
        await page.waitForURL(/\/clusters\/[^/]+$/, { timeout: 30_000 })
        const clusterId = page.url().split('/').pop()!
        clusterIds.push(clusterId)
        await eventually(
          async () => (await page.getByTestId('cluster-phase').textContent())?.trim() === 'ready',
          'the console to show the cluster ready',
          240_000,
        )
        assert.equal(await page.locator('[data-testid="cluster-node"][data-phase="ray_joined"]').count(), 2)
        await snap(page, '04-renter-cluster-ready')

        await page
          .getByTestId('job-entrypoint')
          .fill(
            `python -c "import ray; ray.init(); print('alive nodes:', sum(1 for n in ray.nodes() if n['Alive']))"`,
          )
        await page.getByTestId('job-submit').click()
        await page.locator('[data-testid="job-row"][data-status="succeeded"]').waitFor({ timeout: 120_000 })
        await eventually(
          async () => /alive nodes: 2/.test((await page.getByTestId('job-logs').textContent()) ?? ''),
          'the job log in the page',
          30_000,
        )
        await snap(page, '05-renter-job-logs')

        await page.getByTestId('cluster-terminate').click()
        await page.getByTestId('cluster-terminate-confirm').click()
        await eventually(
          async () => (await page.getByTestId('cluster-phase').textContent())?.trim() === 'terminated',
          'terminated',
          60_000,
        )
        const charged = api(`/v1/clusters/${clusterId}`, { key: renterKey }).body.billing.chargedGmt as string
        assert.ok(parseGmtToUnits(charged)! > 0n, 'the cluster was charged')
        await page.goto(`${baseUrl}/wallet`)
        const expected = (parseGmtToUnits('300')! - parseGmtToUnits(charged)!).toString().padStart(7, '0')
        const expectedGmt = `${expected.slice(0, -6)}.${expected.slice(-6)}`
        await eventually(
          async () => (await page.getByTestId('wallet-balance').textContent())?.trim() === expectedGmt,
          `wallet balance 300 − ${charged} = ${expectedGmt}`,
          15_000,
        )
        assert.equal((await page.getByTestId('wallet-held').textContent())?.trim(), '0.000000')
        // The history is read apart from the balance: wait for it too.
        await eventually(
          async () => (await page.getByTestId('wallet-history-row').count()) >= 2,
          'the deposit and the charges in the history',
          15_000,
        )
        await snap(page, '06-renter-wallet-charged')
      })
    })

    it('a supplier sees a device, its verification and an epoch reward with its breakdown', async () => {
      const page = await openAs(supplierKey)
      await inPage(page, 'supplier', async () => {
        await page.goto(`${baseUrl}/supplier/devices`)
        await eventually(
          async () => (await page.getByTestId('device-row').count()) === workerCount,
          'two devices',
          15_000,
        )
        // Both devices, by their state rather than their wording ("unverified" contains "verified").
        assert.deepEqual(
          await Promise.all(
            (await page.getByTestId('device-verification').all()).map((cell) =>
              cell.getAttribute('data-verification'),
            ),
          ),
          ['verified', 'verified'],
        )
        await snap(page, '07-supplier-devices')

        const deviceId = deviceIds[0]!
        // Epochs are 15 s here: wait for one the device was online and verified through, and paid.
        await eventually(
          () =>
            (api(`/v1/rewards/devices/${deviceId}`).body.payouts as any[]).find(
              (payout) => BigInt(payout.amountUnits) > 0n,
            ),
          'a paid epoch reward',
          90_000,
        )
        await page.goto(`${baseUrl}/supplier/devices/${deviceId}`)
        await page.getByTestId('verification-row').first().waitFor()
        assert.match((await page.getByTestId('verification-row').first().textContent()) ?? '', /passed/)
        const paid = (api(`/v1/rewards/devices/${deviceId}`).body.payouts as any[]).find(
          (payout) => BigInt(payout.amountUnits) > 0n,
        )
        const row = page.locator(`[data-testid="reward-row"][data-epoch="${paid.epoch}"]`)
        await row.waitFor({ timeout: 15_000 })
        assert.match((await row.textContent()) ?? '', new RegExp(paid.amountGmt.replace('.', '\\.')))
        await row.click()
        const breakdown = page.getByTestId('reward-breakdown').first()
        await breakdown.waitFor({ timeout: 5_000 })
        assert.match((await breakdown.textContent()) ?? '', new RegExp(paid.share.replace('.', '\\.')))
        await snap(page, '08-supplier-device-reward')
      })
    })

    it('a logged-out visitor sees the explorer with the true totals, and nothing private', async () => {
      const summary = api('/v1/explorer/summary').body
      assert.equal(summary.devices.connected, workerCount)
      assert.equal(summary.devices.verified, workerCount)
      for (const viewport of [
        { width: 1366, height: 900, name: 'laptop' },
        { width: 390, height: 844, name: 'phone' },
      ]) {
        // Epochs keep closing (every 15 s here): what the page shows is at least what was closed before it loaded.
        const epochsClosedBefore = api('/v1/explorer/summary').body.rewards.epochsClosed as number
        const page = await openAs(undefined, viewport)
        await page.goto(`${baseUrl}/`)
        await page.getByTestId('stat-devices-connected').waitFor()
        assert.match((await page.getByTestId('stat-devices-connected').textContent()) ?? '', /^\s*2\s*$/)
        assert.match((await page.getByTestId('stat-devices-verified').textContent()) ?? '', /^\s*2\s*$/)
        assert.match((await page.getByTestId('stat-clusters-running').textContent()) ?? '', /^\s*0\s*$/)
        assert.ok(epochsClosedBefore >= 1)
        assert.ok(
          Number((await page.getByTestId('stat-epochs-closed').textContent())?.trim()) >= epochsClosedBefore,
        )
        await snap(page, `09-explorer-${viewport.name}`)
        // A private page sends a visitor to the login.
        await page.goto(`${baseUrl}/wallet`)
        await page.getByTestId('login-api-key').waitFor({ timeout: 10_000 })
        await page.context().close()
      }
      // One account never sees another's: the renter reads no supplier device, another renter no cluster.
      assert.equal(api(`/v1/devices/${deviceIds[0]}`, { key: renterKey }).status >= 400, true)
      const otherRenterKey = api('/v1/accounts', {
        method: 'POST',
        body: { name: 'Other', roles: ['renter'] },
      }).body.apiKey.key
      assert.equal(api(`/v1/clusters/${clusterIds[0]}`, { key: otherRenterKey }).status, 404)
      assert.deepEqual(api('/v1/clusters', { key: otherRenterKey }).body.clusters, [])
      const errorsBeforeOther = pageErrors.length
      const other = await openAs(otherRenterKey)
      await inPage(other, 'other-renter', async () => {
        await other.goto(`${baseUrl}/clusters/${clusterIds[0]}`)
        await other.getByText(`no cluster ${clusterIds[0]}`).first().waitFor({ timeout: 10_000 })
        assert.equal(
          await other.getByTestId('cluster-phase').count(),
          0,
          "another renter's cluster is not shown",
        )
        await snap(other, '10-other-renter-cannot-see-cluster')
        await other.goto(`${baseUrl}/clusters`)
        await other
          .getByRole('heading', { name: /clusters/i })
          .first()
          .waitFor()
        assert.equal(await other.getByTestId('cluster-row').count(), 0)
      })
      // The browser logs the refused read of the other account's cluster (HTTP 404): that one was expected.
      const unexpected = pageErrors.splice(errorsBeforeOther).filter((line) => !/status of 404/.test(line))
      pageErrors.push(...unexpected)
      assert.equal(
        api(`/v1/clusters/${clusterIds[0]}`, { key: supplierKey }).status,
        403,
        'a supplier key rents nothing',
      )
      assert.deepEqual(pageErrors, [], 'no errors in any page console')
    })
  },
)
