import assert from 'node:assert/strict'
import { generateKeyPairSync, sign } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import { bandwidthTierFor } from '@gpumesh/core'
import {
  DeviceRequestHeader,
  deviceRequestSigningPayload,
  enrollmentSigningPayload,
  speedtestMaxDownloadBytes,
} from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'
import { base64UrlRespellings, startTestCoordinator, storeBackends } from '@gpumesh/testing'
import {
  createDeviceRequestSigner,
  loadOrCreateIdentity,
  runNetworkSpeedtest,
  submitSpeedtestResult,
  type NetworkSpeedtestPhase,
  type WorkerIdentity,
} from '@gpumesh/worker'

// The network speedtest end to end on loopback: a real enrolled device key signs every request, the
// coordinator times the transfers itself, caps what the device claims and stores the tier. Assertions are on
// behaviour (tier consistent with the stored figures, figures capped), never on how fast this machine is.

for (const backend of storeBackends) {
  describe(`speedtest on ${backend.name}`, () => {
    let store: Store
    let coordinator: Coordinator
    let baseUrl: string
    let cleanup: () => Promise<void>
    let supplierKey: string
    let otherKey: string
    let deviceId: string
    let identity: WorkerIdentity
    const stateDir = mkdtempSync(join(tmpdir(), 'gpumesh-speedtest-'))

    const json = async (path: string, init: { key?: string; body?: unknown } = {}) => {
      const response = await fetch(`${baseUrl}${path}`, {
        method: init.body === undefined ? 'GET' : 'POST',
        headers: {
          ...(init.key ? { authorization: `Bearer ${init.key}` } : {}),
          ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
      })
      return { status: response.status, body: (await response.json()) as any }
    }
    /** A signed request built by hand, so each header can be broken on purpose. */
    const signedHeaders = (
      method: string,
      path: string,
      options: { timestampMs?: number; signWith?: (payload: string) => string; device?: string } = {},
    ) => {
      const timestampMs = options.timestampMs ?? Date.now()
      const signWith = options.signWith ?? identity.sign
      return {
        [DeviceRequestHeader.deviceId]: options.device ?? deviceId,
        [DeviceRequestHeader.timestampMs]: String(timestampMs),
        [DeviceRequestHeader.signature]: signWith(deviceRequestSigningPayload(method, path, timestampMs)),
      }
    }

    before(async () => {
      const opened = await backend.open()
      store = opened.store
      coordinator = await startTestCoordinator(store, { runBackgroundLoops: false })
      baseUrl = await coordinator.listen()
      cleanup = async () => {
        await coordinator.stop()
        await opened.cleanup()
        rmSync(stateDir, { recursive: true, force: true })
      }
      supplierKey = (await json('/v1/accounts', { body: { name: 'supplier', roles: ['supplier'] } })).body
        .apiKey.key
      otherKey = (await json('/v1/accounts', { body: { name: 'other', roles: ['supplier'] } })).body.apiKey
        .key
      const token = (await json('/v1/enrollment-tokens', { key: supplierKey, body: {} })).body.token as string
      identity = loadOrCreateIdentity(stateDir)
      const enrolled = await json('/v1/worker/enroll', {
        body: {
          token,
          publicKey: identity.publicKey,
          signature: identity.sign(enrollmentSigningPayload(token)),
        },
      })
      assert.equal(enrolled.status, 200, JSON.stringify(enrolled.body))
      deviceId = enrolled.body.deviceId
    })
    after(() => cleanup())

    it('refuses a result before the coordinator has measured an upload', async () => {
      const response = await fetch(`${baseUrl}/v1/worker/speedtest/results`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...signedHeaders('POST', '/v1/worker/speedtest/results'),
        },
        body: JSON.stringify({ latencyMs: 1, jitterMs: 0.1, downloadMbps: 5000, uploadMbps: 5000 }),
      })
      assert.equal(response.status, 400)
      const body = (await response.json()) as { code: string; message: string }
      assert.equal(body.code, 'GPUMESH_ERR_VALIDATION')
      assert.match(body.message, /run the upload test first/)
      assert.equal((await store.getDevice(deviceId))!.bandwidthTier, null)
    })

    it('measures latency, download and upload, and stores a tier capped by its own measurements', async () => {
      const phases = new Map<NetworkSpeedtestPhase, number[]>()
      const network = await runNetworkSpeedtest({
        coordinatorUrl: baseUrl,
        deviceId,
        identity,
        onProgress: (phase, fraction) => phases.set(phase, [...(phases.get(phase) ?? []), fraction]),
      })
      for (const phase of ['latency', 'download', 'upload'] as const) {
        const fractions = phases.get(phase) ?? []
        assert.equal(fractions[0], 0, `${phase} starts at 0`)
        assert.equal(fractions.at(-1), 1, `${phase} ends at 1`)
        assert.deepEqual(
          [...fractions].sort((a, b) => a - b),
          fractions,
          `${phase} only moves forward`,
        )
      }
      assert.equal(network.latencySamplesMs.length, 10)
      assert.ok(network.latencyMs > 0 && network.jitterMs >= 0)
      assert.ok(network.downloadMbps > 0 && network.uploadMbps > 0 && network.clientUploadMbps > 0)
      process.stdout.write(
        `# loopback on ${backend.name}: latency ${network.latencyMs} ms, jitter ${network.jitterMs} ms, ` +
          `download ${network.downloadMbps} Mbit/s, upload ${network.uploadMbps} Mbit/s (server), ` +
          `${network.clientUploadMbps} Mbit/s (client)\n`,
      )

      const stored = await submitSpeedtestResult({ coordinatorUrl: baseUrl, deviceId, identity, network })
      assert.equal(stored.deviceId, deviceId)
      assert.match(stored.id, /^spd_/)
      assert.ok(stored.uploadMbps <= network.uploadMbps + 0.001)
      assert.ok(stored.downloadMbps <= network.downloadMbps + 0.001)
      assert.equal(stored.bandwidthTier, bandwidthTierFor(stored.downloadMbps, stored.uploadMbps))
      assert.equal((await store.getDevice(deviceId))!.bandwidthTier, stored.bandwidthTier)

      // A device that claims more than its link carried is cut down to what the coordinator measured.
      const inflated = await submitSpeedtestResult({
        coordinatorUrl: baseUrl,
        deviceId,
        identity,
        network: { ...network, downloadMbps: 999_999, uploadMbps: 999_999 },
      })
      assert.ok(inflated.uploadMbps <= network.uploadMbps + 0.001, 'upload capped at the server figure')
      assert.ok(inflated.downloadMbps < 999_999, 'download capped at the server send rate')
      assert.equal(inflated.bandwidthTier, bandwidthTierFor(inflated.downloadMbps, inflated.uploadMbps))

      // And a slow claim is believed: the coordinator only ever lowers figures.
      const slow = await submitSpeedtestResult({
        coordinatorUrl: baseUrl,
        deviceId,
        identity,
        network: { ...network, downloadMbps: 50, uploadMbps: 40 },
      })
      assert.equal(slow.downloadMbps, 50)
      assert.equal(slow.uploadMbps, 40)
      assert.equal(slow.bandwidthTier, null)
      assert.equal((await store.getDevice(deviceId))!.bandwidthTier, null)
    })

    it('shows the history to the owner only, newest first', async () => {
      const history = await json(`/v1/devices/${deviceId}/speedtests`, { key: supplierKey })
      assert.equal(history.status, 200)
      assert.equal(history.body.speedtests.length, 3)
      assert.equal(history.body.speedtests[0].downloadMbps, 50)
      assert.ok(history.body.speedtests[0].measuredAtMs >= history.body.speedtests[2].measuredAtMs)
      const limited = await json(`/v1/devices/${deviceId}/speedtests?limit=1`, { key: supplierKey })
      assert.equal(limited.body.speedtests.length, 1)
      assert.equal((await json(`/v1/devices/${deviceId}/speedtests`, { key: otherKey })).status, 404)
      assert.equal((await json(`/v1/devices/${deviceId}/speedtests`)).status, 401)
      assert.equal(
        (await json(`/v1/devices/${deviceId}/speedtests?limit=0`, { key: supplierKey })).status,
        400,
      )
    })

    it('refuses unsigned, foreign-key, stale, future and replayed requests', async () => {
      const path = '/v1/worker/speedtest/ping'
      const ping = (headers: Record<string, string>) => fetch(`${baseUrl}${path}`, { headers })
      const expect401 = async (headers: Record<string, string>, pattern: RegExp) => {
        const response = await ping(headers)
        assert.equal(response.status, 401)
        const body = (await response.json()) as { code: string; message: string }
        assert.equal(body.code, 'GPUMESH_ERR_WORKER_AUTH')
        assert.match(body.message, pattern)
      }
      await expect401({}, /unsigned request/)
      const foreignKey = generateKeyPairSync('ed25519').privateKey
      await expect401(
        signedHeaders('GET', path, {
          signWith: (payload) => sign(null, Buffer.from(payload), foreignKey).toString('base64url'),
        }),
        /does not match/,
      )
      await expect401(signedHeaders('GET', path, { timestampMs: Date.now() - 61_000 }), /old/)
      await expect401(signedHeaders('GET', path, { timestampMs: Date.now() + 61_000 }), /in the future/)
      await expect401(signedHeaders('GET', path, { device: 'dev_00000000000000000000' }), /does not match/)
      await expect401(signedHeaders('GET', path, { device: 'not-a-device' }), /malformed/)
      // signed for another path: the signature covers the path and query
      await expect401(signedHeaders('GET', '/v1/worker/speedtest/download?bytes=1024'), /does not match/)

      const once = signedHeaders('GET', path)
      assert.equal((await ping(once)).status, 204)
      await expect401(once, /already used/)

      const signer = createDeviceRequestSigner(deviceId, identity)
      for (let index = 0; index < 3; index++) {
        assert.equal((await ping(signer.headers('GET', path))).status, 204, 'fresh signatures pass')
      }
    })

    it('finding 4: refuses every re-spelling of a used signature, on ping and download', async () => {
      for (const path of ['/v1/worker/speedtest/ping', '/v1/worker/speedtest/download?bytes=1024']) {
        const used = signedHeaders('GET', path)
        const signature = used[DeviceRequestHeader.signature]!
        assert.equal(
          (await fetch(`${baseUrl}${path}`, { headers: used })).status,
          path.includes('ping') ? 204 : 200,
        )
        const respellings = base64UrlRespellings(signature)
        assert.equal(respellings.length, 15)
        for (const respelled of respellings) {
          const response = await fetch(`${baseUrl}${path}`, {
            headers: { ...used, [DeviceRequestHeader.signature]: respelled },
          })
          assert.equal(response.status, 401, `${path} with ${respelled}`)
          assert.match(((await response.json()) as { message: string }).message, /canonical base64url/)
        }
      }
      // A fresh request in a non-canonical spelling is refused too: only one spelling of a signature exists.
      const path = '/v1/worker/speedtest/ping'
      const fresh = signedHeaders('GET', path)
      const [respelled] = base64UrlRespellings(fresh[DeviceRequestHeader.signature]!)
      const response = await fetch(`${baseUrl}${path}`, {
        headers: { ...fresh, [DeviceRequestHeader.signature]: respelled! },
      })
      assert.equal(response.status, 401)
      assert.equal((await fetch(`${baseUrl}${path}`, { headers: fresh })).status, 204)
    })

    it('refuses download sizes out of range and oversized uploads', async () => {
      for (const bytes of [1023, speedtestMaxDownloadBytes + 1]) {
        const path = `/v1/worker/speedtest/download?bytes=${bytes}`
        const response = await fetch(`${baseUrl}${path}`, { headers: signedHeaders('GET', path) })
        assert.equal(response.status, 400)
        assert.match(await response.text(), /bytes/)
      }
      const small = '/v1/worker/speedtest/download?bytes=1024'
      const smallResponse = await fetch(`${baseUrl}${small}`, { headers: signedHeaders('GET', small) })
      assert.equal(smallResponse.status, 200)
      assert.equal(smallResponse.headers.get('content-type'), 'application/octet-stream')
      assert.equal((await smallResponse.arrayBuffer()).byteLength, 1024)

      // A declared length over the limit is refused before a byte of the body is read.
      const upload = '/v1/worker/speedtest/upload'
      const status = await new Promise<number>((resolve, reject) => {
        const request = httpRequest(
          `${baseUrl}${upload}`,
          {
            method: 'POST',
            headers: {
              'content-type': 'application/octet-stream',
              'content-length': String(200 * 1024 * 1024),
              ...signedHeaders('POST', upload),
            },
          },
          (response) => {
            response.resume()
            resolve(response.statusCode ?? 0)
            request.destroy()
          },
        )
        request.on('error', reject)
        request.write(Buffer.alloc(1024))
      })
      assert.equal(status, 413)

      // A small upload is answered but does not count towards a result.
      const tiny = await fetch(`${baseUrl}${upload}`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', ...signedHeaders('POST', upload) },
        body: Buffer.alloc(4096),
      })
      assert.equal(tiny.status, 200)
      assert.equal(((await tiny.json()) as { bytes: number }).bytes, 4096)
    })
  })
}
