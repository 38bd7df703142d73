import assert from 'node:assert/strict'
import { generateKeyPairSync, sign } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import {
  enrollmentSigningPayload,
  sessionSigningPayload,
  type CoordinatorMessage,
  type HardwareInventory,
  type WorkerMessage,
} from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'
import { eventually, simulatedCapabilities, startTestCoordinator, storeBackends } from '@gpumesh/testing'
import {
  buildTree,
  fromHex,
  fullProduct,
  leafHash,
  proofFor,
  rootOf,
  seedWords,
  toHex,
} from '@gpumesh/verification'
import {
  createPythonProver,
  createWorkerAgent,
  encodeOpening,
  probeHardware,
  referenceProver,
  type WorkerAgent,
} from '@gpumesh/worker'
import WebSocket from 'ws'

// Proof-of-compute against real workers on loopback: an honest worker (the Python prover, CPU path) passes;
// adversarial workers fail, each for its own recorded reason, and are not offered in the marketplace.

const python = new URL('../../../.venv/bin/python', import.meta.url).pathname
const h100Capture = new URL('../../worker/test/fixtures/nvidia-smi/h100-sxm-x2.xml', import.meta.url).pathname
const quietLogger = { info() {}, warn() {}, error() {} }

type Strategy = (
  message: CoordinatorMessage,
  send: (message: WorkerMessage) => void,
  memory: Record<string, unknown>,
) => void

/** A worker speaking the real protocol whose answers to challenges are chosen by the test. */
async function adversary(
  baseUrl: string,
  supplierKey: string,
  inventory: HardwareInventory,
  strategy: Strategy,
) {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const publicKeyText = publicKey.export({ format: 'jwk' }).x as string
  const signText = (payload: string) => sign(null, Buffer.from(payload), privateKey).toString('base64url')
  const headers = { authorization: `Bearer ${supplierKey}`, 'content-type': 'application/json' }
  const token = (
    (await (
      await fetch(`${baseUrl}/v1/enrollment-tokens`, { method: 'POST', headers, body: '{}' })
    ).json()) as any
  ).token
  const enrolled = (await (
    await fetch(`${baseUrl}/v1/worker/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        token,
        publicKey: publicKeyText,
        signature: signText(enrollmentSigningPayload(token)),
      }),
    })
  ).json()) as { deviceId: string }
  const ws = new WebSocket(`${baseUrl.replace('http', 'ws')}/v1/worker/connect`)
  const send = (message: WorkerMessage) => ws.readyState === ws.OPEN && ws.send(JSON.stringify(message))
  const memory: Record<string, unknown> = {}
  ws.on('message', (data) => {
    const message = JSON.parse(data.toString()) as CoordinatorMessage
    if (message.type === 'auth_challenge') {
      send({
        type: 'auth',
        deviceId: enrolled.deviceId,
        signature: signText(sessionSigningPayload(message.nonce, enrolled.deviceId)),
        agentVersion: 'adversary',
      })
    } else if (message.type === 'welcome') {
      send({
        type: 'report',
        inventory,
        location: { region: 'poc', country: 'DE' },
        askingPricePerGpuHourUsd: '1.00',
      })
      let seq = 0
      heartbeat = setInterval(() => send({ type: 'heartbeat', seq: seq++ }), message.heartbeatIntervalMs)
    } else {
      strategy(message, send, memory)
    }
  })
  ws.on('error', () => {})
  let heartbeat: NodeJS.Timeout | undefined
  ws.on('close', () => clearInterval(heartbeat))
  return { deviceId: enrolled.deviceId, close: () => ws.terminate() }
}

/** Honest answers from the reference prover, with a hook to spoil them. */
function reference(
  spoil: {
    commitment?: (root: string) => string
    opening?: (values: string) => string
    delayMs?: number
  } = {},
): Strategy {
  return (message, send, memory) => {
    if (message.type === 'challenge') {
      setTimeout(async () => {
        const proof = await referenceProver.prove(message.seed, message.matrixSize)
        memory['proof'] = proof
        send({
          type: 'challenge_commitment',
          challengeId: message.challengeId,
          merkleRoot: spoil.commitment ? spoil.commitment(proof.merkleRoot) : proof.merkleRoot,
          backend: 'adversary',
          computeMs: 1,
        })
      }, spoil.delayMs ?? 0)
    } else if (message.type === 'challenge_open') {
      void (memory['proof'] as Awaited<ReturnType<typeof referenceProver.prove>>)
        .open(message.rows)
        .then((openings) => {
          for (const opening of openings) {
            send({
              type: 'challenge_opening',
              challengeId: message.challengeId,
              row: opening.row,
              values: spoil.opening ? spoil.opening(opening.values) : opening.values,
              proof: [...opening.proof],
            })
          }
        })
    }
  }
}

for (const backend of storeBackends) {
  describe(`proof-of-compute on ${backend.name}`, () => {
    let store: Store
    let coordinator: Coordinator
    let baseUrl: string
    let supplierKey: string
    let cleanup: () => Promise<void>
    const stateDir = mkdtempSync(join(tmpdir(), 'gpumesh-poc-'))
    let cpuInventory: HardwareInventory
    let h100Inventory: HardwareInventory
    const closers: (() => unknown)[] = []

    before(async () => {
      const opened = await backend.open()
      store = opened.store
      coordinator = await startTestCoordinator(store, {
        verificationEnabled: true,
        logLevel: process.env['GPUMESH_TEST_LOG'] ? 'debug' : 'silent',
        challengeCpuMatrixSize: 96,
        challengeFixedOverheadMs: 4_000,
        reverifyIntervalMs: 1_500,
        challengePolicy: { maxMatrixSize: 128, minMatrixSize: 64, openingTimeoutMs: 5_000, rowsToOpen: 3 },
      })
      baseUrl = await coordinator.listen()
      cleanup = async () => {
        for (const close of closers) await close()
        await coordinator.stop()
        await opened.cleanup()
        rmSync(stateDir, { recursive: true, force: true })
      }
      const signup = await fetch(`${baseUrl}/v1/accounts`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'supplier', roles: ['supplier'] }),
      })
      supplierKey = ((await signup.json()) as any).apiKey.key
      cpuInventory = await probeHardware({
        nvidiaSmiCommand: 'gpumesh-test-no-such-nvidia-smi',
        diskPath: stateDir,
      })
      h100Inventory = await probeHardware({ nvidiaSmiXmlPath: h100Capture, diskPath: stateDir })
    })
    after(() => cleanup())

    const device = async (deviceId: string) =>
      (await (
        await fetch(`${baseUrl}/v1/devices/${deviceId}`, {
          headers: { authorization: `Bearer ${supplierKey}` },
        })
      ).json()) as any
    const verifications = async (deviceId: string) =>
      (
        (await (
          await fetch(`${baseUrl}/v1/devices/${deviceId}/verifications`, {
            headers: { authorization: `Bearer ${supplierKey}` },
          })
        ).json()) as any
      ).challenges as any[]
    const failedWith = async (deviceId: string, reasonCode: string) => {
      const failed = await eventually(async () => {
        const view = await device(deviceId)
        return view.verificationState === 'failed' && view
      }, `device ${deviceId} to fail verification`)
      assert.match(failed.verificationReason, new RegExp(`^${reasonCode}:`))
      await eventually(async () => {
        const listed = (await (await fetch(`${baseUrl}/v1/offers?region=poc&limit=200`)).json()) as any
        return !listed.offers.some((offer: any) => offer.deviceId === deviceId)
      }, 'the failed device to leave the marketplace')
      return failed
    }

    it(
      'an honest worker passes with the Python prover on the CPU path, is re-verified, and is offered',
      { skip: !existsSync(python) && 'no .venv (run scripts/setup-python.sh)' },
      async () => {
        const agent: WorkerAgent = createWorkerAgent(
          {
            logger: quietLogger,
            selfTest: async () => simulatedCapabilities(),
            probe: async () => cpuInventory,
            prover: createPythonProver(python, 'cpu'),
          },
          {
            coordinatorUrl: baseUrl,
            token: (
              (await (
                await fetch(`${baseUrl}/v1/enrollment-tokens`, {
                  method: 'POST',
                  headers: { authorization: `Bearer ${supplierKey}`, 'content-type': 'application/json' },
                  body: '{}',
                })
              ).json()) as any
            ).token,
            stateDir,
            region: 'poc',
            country: 'DE',
            askingPricePerGpuHourUsd: '0.30',
            clustersEnabled: false,
            clusterUser: '65534:65534',
            rttProbePort: 0,
            wireguardGoCommand: 'wireguard-go',
            selfTestIntervalMs: 0,
            servePort: 0,
            reconnectInitialDelayMs: 50,
            speedtestIntervalMs: 0,
            reconnectMaxDelayMs: 200,
            logLevel: 'silent',
          },
        )
        closers.push(() => agent.stop())
        await agent.start()
        const verified = await eventually(
          async () => {
            const view = agent.deviceId ? await device(agent.deviceId) : undefined
            return view?.verificationState === 'verified' && view
          },
          'the honest worker to be verified',
          30_000,
        )
        assert.match(verified.verificationReason, /passed proof-of-compute: n=96/)
        assert.ok(verified.measuredFp32Tflops > 0)
        // challenged again at a random time, and passes again
        const history = await eventually(
          async () => {
            const challenges = await verifications(verified.id)
            return challenges.filter((challenge) => challenge.outcome === 'passed').length >= 2 && challenges
          },
          'a second, passed challenge',
          30_000,
        )
        assert.ok(history.every((challenge) => challenge.outcome !== 'failed'))
        // The newest may be a third challenge still under way: read the backend of a passed one.
        assert.equal(history.find((challenge: any) => challenge.outcome === 'passed').backend, 'numpy-cpu')
        await eventually(async () => {
          const listed = (await (
            await fetch(`${baseUrl}/v1/offers?region=poc&verifiedOnly=true`)
          ).json()) as any
          return listed.offers.some((offer: any) => offer.deviceId === verified.id)
        }, 'the verified device in verified-only search')
      },
    )

    it('a worker returning a wrong product fails: wrong_product', async () => {
      const worker = await adversary(baseUrl, supplierKey, cpuInventory, (message, send) => {
        if (message.type === 'challenge') {
          const { a, b } = seedWords(fromHex(message.seed)!)
          const wrong = fullProduct(a, b, message.matrixSize).map((row) => row.map((value) => value ^ 1))
          const levels = buildTree(wrong.map((row, index) => leafHash(index, row)))
          ;(send as any).levels = levels
          send({
            type: 'challenge_commitment',
            challengeId: message.challengeId,
            merkleRoot: toHex(rootOf(levels)),
            backend: 'x',
            computeMs: 1,
          })
          wrongState.set(message.challengeId, { rows: wrong, levels })
        } else if (message.type === 'challenge_open') {
          const state = wrongState.get(message.challengeId)!
          for (const row of message.rows) {
            const opening = encodeOpening(row, {
              values: state.rows[row]!,
              proof: proofFor(state.levels, row),
            })
            send({
              type: 'challenge_opening',
              challengeId: message.challengeId,
              ...opening,
              proof: [...opening.proof],
            })
          }
        }
      })
      closers.push(worker.close)
      await failedWith(worker.deviceId, 'wrong_product')
    })

    it('a worker with the right root but fake rows fails: bad_proof', async () => {
      const worker = await adversary(
        baseUrl,
        supplierKey,
        cpuInventory,
        reference({
          opening: (values) => {
            const bytes = Buffer.from(values, 'base64')
            bytes.writeInt32LE(bytes.readInt32LE(0) + 1, 0)
            return bytes.toString('base64')
          },
        }),
      )
      closers.push(worker.close)
      await failedWith(worker.deviceId, 'bad_proof')
    })

    it('a worker too slow for the GPU it claims fails: late_commitment', async () => {
      // it claims two H100s, but answers as slowly as a CPU would at production size
      const worker = await adversary(baseUrl, supplierKey, h100Inventory, reference({ delayMs: 6_000 }))
      closers.push(worker.close)
      const failed = await failedWith(worker.deviceId, 'late_commitment')
      assert.match(failed.verificationReason, /next attempt in \d+ s/)
    })

    it('a worker replaying an earlier answer fails: replayed_response', async () => {
      const honest = reference()
      const worker = await adversary(baseUrl, supplierKey, cpuInventory, (message, send, memory) => {
        if (message.type === 'challenge' && memory['firstCommitment']) {
          send(memory['firstCommitment'] as WorkerMessage)
          return
        }
        honest(
          message,
          (reply) => {
            if (reply.type === 'challenge_commitment' && !memory['firstCommitment'])
              memory['firstCommitment'] = reply
            send(reply)
          },
          memory,
        )
      })
      closers.push(worker.close)
      await eventually(
        async () => (await device(worker.deviceId)).verificationState === 'verified',
        'the first, honest pass',
        20_000,
      )
      await failedWith(worker.deviceId, 'replayed_response')
    })

    it('two live devices reporting the same GPU UUID are both flagged: gpu_uuid_conflict', async () => {
      const silent: Strategy = () => {}
      // its own UUIDs, so no other test's device takes part in the conflict
      const cloned = {
        ...h100Inventory,
        gpus: h100Inventory.gpus.map((gpu, index) => ({
          ...gpu,
          uuid: `GPU-cloned-${backend.name}-${index}`,
        })),
      }
      const first = await adversary(baseUrl, supplierKey, cloned, silent)
      closers.push(first.close)
      await eventually(
        async () => (await store.getDevice(first.deviceId))?.inventory !== null,
        'the first report',
      )
      const second = await adversary(baseUrl, supplierKey, cloned, silent)
      closers.push(second.close)
      const flagged = await failedWith(second.deviceId, 'gpu_uuid_conflict')
      assert.match(flagged.verificationReason, new RegExp(first.deviceId))
      const original = await failedWith(first.deviceId, 'gpu_uuid_conflict')
      assert.match(original.verificationReason, new RegExp(second.deviceId))
    })

    it('a malformed answer fails the challenge and the coordinator keeps serving', async () => {
      const worker = await adversary(baseUrl, supplierKey, cpuInventory, (message, send) => {
        if (message.type === 'challenge')
          send({
            type: 'challenge_commitment',
            challengeId: message.challengeId,
            merkleRoot: 'not-hex',
            backend: 'x',
            computeMs: 1,
          } as WorkerMessage)
      })
      closers.push(worker.close)
      await failedWith(worker.deviceId, 'malformed_response')
      const metrics = await (await fetch(`${baseUrl}/metrics`)).text()
      assert.match(
        metrics,
        /^gpumesh_verification_outcomes_total\{outcome="failed",reason="malformed_response"\} [1-9]/m,
      )
      assert.match(metrics, /^gpumesh_verification_outcomes_total\{outcome="passed",reason=""\} [1-9]/m)
      const health = (await (await fetch(`${baseUrl}/v1/health`)).json()) as any
      assert.equal(health.status, 'ok')
    })
  })
}

const wrongState = new Map<string, { rows: Int32Array[]; levels: Uint8Array[][] }>()
