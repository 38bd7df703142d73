import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import {
  speedtestDefaultDownloadBytes,
  speedtestDefaultUploadBytes,
  type ComputeSpeedtestResult,
  type SpeedtestResultsBody,
  type SpeedtestUploadReply,
  type SpeedtestView,
} from '@gpumesh/protocol'
import type { WorkerIdentity } from '../identity.ts'
import {
  createDeviceRequestSigner,
  describeFetchError,
  signedFetch,
  type DeviceRequestSigner,
  type RequestBody,
} from './signed-fetch.ts'

// The network half of the speedtest, against the coordinator's own endpoints: latency and jitter from a few
// empty requests on a warm connection, then a download and an upload of incompressible data. The upload
// figure reported is the coordinator's own measurement; the coordinator also caps the download figure by how
// fast it could send, so a device cannot claim more than its link carried.

export type NetworkSpeedtestPhase = 'latency' | 'download' | 'upload'

export type NetworkSpeedtestInit = {
  readonly coordinatorUrl: string
  readonly deviceId: string
  readonly identity: Pick<WorkerIdentity, 'sign'>
  /** Called as each phase advances; `fraction` runs from 0 to 1 within a phase. */
  readonly onProgress?: (phase: NetworkSpeedtestPhase, fraction: number) => void
  /** Latency samples (default 10, at most `maxPingCount`). */
  readonly pingCount?: number
  /** Default 25 MiB; below `speedtestMinMeasuredBytes` (8 MiB) the coordinator refuses the result. */
  readonly downloadBytes?: number
  /** Default 10 MiB; below `speedtestMinMeasuredBytes` (8 MiB) the coordinator refuses the result. */
  readonly uploadBytes?: number
  /** Limit on each request, its body included (default 60 s). */
  readonly requestTimeoutMs?: number
}

export type NetworkSpeedtestResult = {
  /** Median of the samples. */
  readonly latencyMs: number
  /** Mean absolute difference of consecutive samples. */
  readonly jitterMs: number
  readonly latencySamplesMs: readonly number[]
  readonly downloadMbps: number
  readonly downloadBytes: number
  readonly downloadDurationMs: number
  /** As the coordinator measured it while receiving. */
  readonly uploadMbps: number
  /** As this machine measured it (from the first byte handed over to the reply), for comparison. */
  readonly clientUploadMbps: number
  readonly uploadBytes: number
}

export const maxPingCount = 100
export const defaultSpeedtestRequestTimeoutMs = 60_000
const blockBytes = 64 * 1024

export async function runNetworkSpeedtest(init: NetworkSpeedtestInit): Promise<NetworkSpeedtestResult> {
  const pingCount = Math.min(Math.max(1, Math.floor(init.pingCount ?? 10)), maxPingCount)
  const downloadBytes = init.downloadBytes ?? speedtestDefaultDownloadBytes
  const uploadBytes = init.uploadBytes ?? speedtestDefaultUploadBytes
  const timeoutMs = init.requestTimeoutMs ?? defaultSpeedtestRequestTimeoutMs
  const progress = init.onProgress ?? (() => undefined)
  const signer = createDeviceRequestSigner(init.deviceId, init.identity)
  const call = (method: 'GET' | 'POST', path: string, extra: { body?: RequestBody; type?: string } = {}) =>
    signedFetch(init.coordinatorUrl, signer, {
      method,
      path,
      timeoutMs,
      ...(extra.type ? { headers: { 'content-type': extra.type } } : {}),
      ...(extra.body === undefined ? {} : { body: extra.body }),
    })

  // Latency: the first request opens the connection and is not counted.
  progress('latency', 0)
  await drain(await call('GET', '/v1/worker/speedtest/ping'))
  const latencySamplesMs: number[] = []
  for (let index = 0; index < pingCount; index++) {
    const startedAtMs = performance.now()
    await drain(await call('GET', '/v1/worker/speedtest/ping'))
    latencySamplesMs.push(performance.now() - startedAtMs)
    progress('latency', (index + 1) / pingCount)
  }

  // Download: timed from the reply's headers to the last byte, every byte counted. (Timing from the first
  // chunk read would miss the time of whatever arrived while the reader was being set up.)
  progress('download', 0)
  const response = await call('GET', `/v1/worker/speedtest/download?bytes=${downloadBytes}`)
  const headersAtMs = performance.now()
  const reader = response.body?.getReader()
  if (!reader) throw new Error('the coordinator sent no download body')
  let received = 0
  let lastAtMs = headersAtMs
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      lastAtMs = performance.now()
      received += value.byteLength
      progress('download', Math.min(1, received / downloadBytes))
    }
  } catch (error) {
    throw describeFetchError(error, `download (${received} of ${downloadBytes} bytes received)`, timeoutMs)
  }
  if (received !== downloadBytes) {
    throw new Error(`download ended after ${received} of ${downloadBytes} bytes`)
  }
  const downloadDurationMs = lastAtMs - headersAtMs
  const downloadMbps = rateMbps(received, downloadDurationMs)

  // Upload: streamed from one random block, so memory stays at one block whatever the size.
  progress('upload', 0)
  const block = randomBytes(blockBytes)
  let sent = 0
  let uploadStartedAtMs = 0
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent === 0) uploadStartedAtMs = performance.now()
      if (sent >= uploadBytes) {
        controller.close()
        return
      }
      const chunk = uploadBytes - sent >= block.length ? block : block.subarray(0, uploadBytes - sent)
      sent += chunk.length
      controller.enqueue(chunk)
      progress('upload', Math.min(0.99, sent / uploadBytes))
    },
  })
  const uploadReply = (await (
    await call('POST', '/v1/worker/speedtest/upload', { body, type: 'application/octet-stream' })
  ).json()) as SpeedtestUploadReply
  const clientUploadMbps = rateMbps(uploadBytes, performance.now() - uploadStartedAtMs)
  progress('upload', 1)
  if (uploadReply.bytes !== uploadBytes) {
    throw new Error(`the coordinator received ${uploadReply.bytes} of ${uploadBytes} upload bytes`)
  }

  return {
    latencyMs: round3(median(latencySamplesMs)),
    jitterMs: round3(meanAbsoluteDifference(latencySamplesMs)),
    latencySamplesMs: latencySamplesMs.map(round3),
    downloadMbps: round3(downloadMbps),
    downloadBytes,
    downloadDurationMs: round3(downloadDurationMs),
    uploadMbps: uploadReply.mbps,
    clientUploadMbps: round3(clientUploadMbps),
    uploadBytes,
  }
}

export type SubmitSpeedtestInit = {
  readonly coordinatorUrl: string
  readonly deviceId: string
  readonly identity: Pick<WorkerIdentity, 'sign'>
  readonly network: NetworkSpeedtestResult
  readonly compute?: ComputeSpeedtestResult
  readonly requestTimeoutMs?: number
}

/** Sends a result; the coordinator caps it by its own measurements and returns what it stored, with the tier. */
export async function submitSpeedtestResult(init: SubmitSpeedtestInit): Promise<SpeedtestView> {
  const body: SpeedtestResultsBody = {
    latencyMs: init.network.latencyMs,
    jitterMs: init.network.jitterMs,
    downloadMbps: init.network.downloadMbps,
    uploadMbps: init.network.uploadMbps,
    ...(init.compute ? { compute: init.compute } : {}),
  }
  const signer: DeviceRequestSigner = createDeviceRequestSigner(init.deviceId, init.identity)
  const response = await signedFetch(init.coordinatorUrl, signer, {
    method: 'POST',
    path: '/v1/worker/speedtest/results',
    timeoutMs: init.requestTimeoutMs ?? defaultSpeedtestRequestTimeoutMs,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  return (await response.json()) as SpeedtestView
}

export function median(samples: readonly number[]): number {
  if (samples.length === 0) return 0
  const sorted = [...samples].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

export function meanAbsoluteDifference(samples: readonly number[]): number {
  if (samples.length < 2) return 0
  let total = 0
  for (let index = 1; index < samples.length; index++)
    total += Math.abs(samples[index]! - samples[index - 1]!)
  return total / (samples.length - 1)
}

const rateMbps = (bytes: number, durationMs: number) =>
  durationMs > 0 ? (bytes * 8) / (durationMs * 1000) : 0
const round3 = (value: number) => Math.round(value * 1000) / 1000

async function drain(response: Response): Promise<void> {
  await response.arrayBuffer()
}
