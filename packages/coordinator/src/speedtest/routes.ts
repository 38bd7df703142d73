import { randomBytes } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { performance } from 'node:perf_hooks'
import { Readable } from 'node:stream'
import { bandwidthTierFor, ConflictError, invariant, ValidationError, type Clock } from '@gpumesh/core'
import {
  ErrorReply,
  IdParams,
  SpeedtestDownloadQuery,
  SpeedtestHistory,
  SpeedtestHistoryQuery,
  SpeedtestResultsBody,
  SpeedtestUploadReply,
  SpeedtestView,
  speedtestMaxUploadBytes,
  speedtestMeasurementMaxAgeMs,
  speedtestMinMeasuredBytes,
  type SpeedtestUploadReply as UploadMeasurement,
  type SpeedtestView as SpeedtestViewType,
} from '@gpumesh/protocol'
import type { DeviceRecord, SpeedtestRecord, Store } from '@gpumesh/store'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import Type from 'typebox'
import { mintIdBody } from '../credentials.ts'
import { authenticateDevice, ReplayGuard } from '../device-request-auth.ts'
import { ownDevice } from '../principal.ts'
import type { App } from '../routes.ts'

// The network half of the hardware speedtest. A device times ping and download itself, but the coordinator
// does not take its word for throughput: it times every upload it receives and every download it sends, and a
// submitted result is capped by those figures. Sending finishes when the last byte is handed to the kernel,
// before the device has read it, so the coordinator's download figure is an upper bound that an honest
// device never exceeds, while a device claiming more than its link carries is cut down to it.
//
// Measurements live in this process's memory: a device must run its transfers and submit its result against
// the same coordinator process (the load balancer's sticky sessions, or one process).

export type SpeedtestComponents = {
  readonly store: Store
  readonly clock: Clock
  /** Mints speedtest result ids (default `spd_<random>`). */
  readonly mintSpeedtestId?: () => string
  readonly replayGuard?: ReplayGuard
  /** Monotonic milliseconds for timing transfers (default `performance.now`). */
  readonly monotonicNowMs?: () => number
}

/** Devices whose latest transfer figures are kept; past it the least recently measured is forgotten. */
export const maxSpeedtestTrackedDevices = 100_000
/** The incompressible block repeated to fill a download (and, on the worker, an upload). */
const randomBlockBytes = 64 * 1024
const defaultHistoryLength = 20

type TransferMeasurement = UploadMeasurement & { readonly atMs: number }
type DeviceMeasurements = { upload?: TransferMeasurement; download?: TransferMeasurement }

const errors = { 400: ErrorReply, 401: ErrorReply, 404: ErrorReply, 409: ErrorReply, 413: ErrorReply }
const signedDescription =
  'Called by the worker, signed with its device key: x-gpumesh-device, x-gpumesh-timestamp (ms), ' +
  'x-gpumesh-signature (Ed25519 over deviceRequestSigningPayload). No API key.'

export async function registerSpeedtestRoutes(app: App, components: SpeedtestComponents): Promise<void> {
  const { store, clock } = components
  const mintSpeedtestId = components.mintSpeedtestId ?? (() => `spd_${mintIdBody()}`)
  const replayGuard = components.replayGuard ?? new ReplayGuard()
  const monotonicNowMs = components.monotonicNowMs ?? (() => performance.now())
  const randomBlock = randomBytes(randomBlockBytes)
  const signedDevices = new WeakMap<FastifyRequest, DeviceRecord>()
  const measurements = new Map<string, DeviceMeasurements>()
  const transfersInFlight = new Set<string>()

  const record = (deviceId: string, direction: 'upload' | 'download', measurement: TransferMeasurement) => {
    const entry = measurements.get(deviceId) ?? {}
    measurements.delete(deviceId) // re-inserted last: the map's order is least recently measured first
    measurements.set(deviceId, { ...entry, [direction]: measurement })
    while (measurements.size > maxSpeedtestTrackedDevices) {
      const oldest = measurements.keys().next().value
      if (oldest === undefined) break
      measurements.delete(oldest)
    }
  }
  const fresh = (measurement: TransferMeasurement | undefined, nowMs: number) =>
    measurement && nowMs - measurement.atMs <= speedtestMeasurementMaxAgeMs ? measurement : undefined

  /** When an upload's headers arrived: its clock starts there, before authentication delays the first read. */
  const arrivals = new WeakMap<FastifyRequest, number>()
  const markArrival = async (request: FastifyRequest) => {
    arrivals.set(request, monotonicNowMs())
  }
  const signedDevice = async (request: FastifyRequest) => {
    signedDevices.set(request, await authenticateDevice(request, store, clock, replayGuard))
  }
  /** One transfer at a time per device, so a device cannot multiply the bandwidth it takes from the coordinator. */
  const oneTransferPerDevice = async (request: FastifyRequest, reply: FastifyReply) => {
    const device = deviceOf(request)
    if (transfersInFlight.has(device.id)) {
      throw new ConflictError('a speedtest transfer of this device is already running; wait for it to end')
    }
    transfersInFlight.add(device.id)
    reply.raw.once('close', () => transfersInFlight.delete(device.id))
  }
  const deviceOf = (request: FastifyRequest): DeviceRecord => {
    const device = signedDevices.get(request)
    invariant(device, 'a device route runs after its device authentication hook')
    return device
  }

  // Encapsulated: the streaming octet-stream parser must not apply to any other route.
  await app.register(async (plugin) => {
    const scope = plugin.withTypeProvider<TypeBoxTypeProvider>()
    scope.addContentTypeParser('application/octet-stream', (request, payload, done) => {
      const arrivedAtMs = arrivals.get(request) ?? monotonicNowMs()
      countUpload(payload, request.headers['content-length'], arrivedAtMs, monotonicNowMs, done)
    })

    scope.get(
      '/v1/worker/speedtest/ping',
      {
        onRequest: signedDevice,
        exposeHeadRoute: false,
        schema: {
          tags: ['workers'],
          summary: 'Speedtest latency probe: an empty reply, timed by the worker',
          description: signedDescription,
          response: { 204: Type.Null(), ...errors },
        },
      },
      async (_request, reply) => reply.status(204).send(null),
    )

    scope.get(
      '/v1/worker/speedtest/download',
      {
        onRequest: [signedDevice, oneTransferPerDevice],
        exposeHeadRoute: false,
        schema: {
          tags: ['workers'],
          summary: 'Speedtest download: `bytes` of incompressible data',
          description: signedDescription,
          querystring: SpeedtestDownloadQuery,
          response: {
            200: Type.Unsafe<Readable>({
              type: 'string',
              format: 'binary',
              description: 'application/octet-stream',
            }),
            ...errors,
          },
        },
      },
      async (request, reply) => {
        const device = deviceOf(request)
        const bytes = request.query.bytes
        // From the first body byte handed to the socket (the headers go just before it) to the last.
        let startedAtMs = 0
        reply.raw.once('finish', () => {
          const durationMs = monotonicNowMs() - startedAtMs
          if (bytes < speedtestMinMeasuredBytes || durationMs <= 0) return
          record(device.id, 'download', {
            bytes,
            durationMs,
            mbps: (bytes * 8) / (durationMs * 1000),
            atMs: clock.nowMs(),
          })
        })
        return reply
          .header('content-type', 'application/octet-stream')
          .header('content-length', String(bytes))
          .header('cache-control', 'no-store')
          .send(repeatedBlock(randomBlock, bytes, () => (startedAtMs = monotonicNowMs())))
      },
    )

    scope.post(
      '/v1/worker/speedtest/upload',
      {
        onRequest: [markArrival, signedDevice, oneTransferPerDevice],
        schema: {
          tags: ['workers'],
          summary: 'Speedtest upload: send application/octet-stream; the coordinator times what it receives',
          description: `${signedDescription} At most ${speedtestMaxUploadBytes} bytes.`,
          response: { 200: SpeedtestUploadReply, ...errors },
        },
      },
      async (request) => {
        const device = deviceOf(request)
        const measured = request.body as UploadMeasurement | undefined
        if (!measured || typeof measured.bytes !== 'number') {
          throw new ValidationError(
            [{ field: '(body)', message: 'send the upload as content-type application/octet-stream' }],
            'upload',
          )
        }
        if (measured.bytes >= speedtestMinMeasuredBytes && measured.mbps > 0) {
          record(device.id, 'upload', { ...measured, atMs: clock.nowMs() })
        }
        return measured
      },
    )

    scope.post(
      '/v1/worker/speedtest/results',
      {
        onRequest: signedDevice,
        schema: {
          tags: ['workers'],
          summary: 'Submit a speedtest result; throughput is capped by what the coordinator measured itself',
          description: signedDescription,
          body: SpeedtestResultsBody,
          response: { 201: SpeedtestView, ...errors },
        },
      },
      async (request, reply) => {
        const device = deviceOf(request)
        const nowMs = clock.nowMs()
        const measured = measurements.get(device.id)
        const minimum = `${speedtestMinMeasuredBytes / (1024 * 1024)} MiB`
        const window = `${speedtestMeasurementMaxAgeMs / 60_000} minutes`
        const upload = fresh(measured?.upload, nowMs)
        if (!upload) {
          throw new ValidationError(
            [
              {
                field: 'uploadMbps',
                message: `run the upload test first: no upload of at least ${minimum} from this device in the last ${window}`,
              },
            ],
            'speedtest result',
          )
        }
        const download = fresh(measured?.download, nowMs)
        if (!download) {
          throw new ValidationError(
            [
              {
                field: 'downloadMbps',
                message: `run the download test first: no download of at least ${minimum} by this device in the last ${window}`,
              },
            ],
            'speedtest result',
          )
        }
        const { latencyMs, jitterMs, compute } = request.body
        const downloadMbps = round3(Math.min(request.body.downloadMbps, download.mbps))
        const uploadMbps = round3(Math.min(request.body.uploadMbps, upload.mbps))
        const result: SpeedtestRecord = {
          id: mintSpeedtestId(),
          deviceId: device.id,
          measuredAtMs: nowMs,
          latencyMs: round3(latencyMs),
          jitterMs: round3(jitterMs),
          downloadMbps,
          uploadMbps,
          bandwidthTier: bandwidthTierFor(downloadMbps, uploadMbps),
          compute: compute ?? null,
        }
        await store.insertSpeedtestResult(result)
        request.log.info(
          {
            deviceId: device.id,
            downloadMbps,
            uploadMbps,
            claimedDownloadMbps: request.body.downloadMbps,
            claimedUploadMbps: request.body.uploadMbps,
            bandwidthTier: result.bandwidthTier,
          },
          'speedtest result stored',
        )
        return reply.status(201).send(speedtestView(result))
      },
    )

    scope.get(
      '/v1/devices/:id/speedtests',
      {
        schema: {
          tags: ['suppliers'],
          summary: 'Speedtest results of a device, newest first',
          security: [{ apiKey: [] }],
          params: IdParams,
          querystring: SpeedtestHistoryQuery,
          response: { 200: SpeedtestHistory, ...errors },
        },
      },
      async (request) => {
        const device = await ownDevice(request, store, clock, request.params.id)
        const limit = request.query.limit ?? defaultHistoryLength
        return { speedtests: (await store.listSpeedtestResults(device.id, limit)).map(speedtestView) }
      },
    )
  })
}

export function speedtestView(result: SpeedtestRecord): SpeedtestViewType {
  return {
    id: result.id,
    deviceId: result.deviceId,
    measuredAtMs: result.measuredAtMs,
    latencyMs: result.latencyMs,
    jitterMs: result.jitterMs,
    downloadMbps: result.downloadMbps,
    uploadMbps: result.uploadMbps,
    bandwidthTier: result.bandwidthTier,
    compute: result.compute,
  }
}

const round3 = (value: number) => Math.round(value * 1000) / 1000

/** `totalBytes` of the block repeated, without ever holding more than the block in memory. */
function repeatedBlock(block: Buffer, totalBytes: number, onFirstRead: () => void): Readable {
  let remaining = totalBytes
  return new Readable({
    read() {
      if (remaining === totalBytes) onFirstRead()
      if (remaining <= 0) {
        this.push(null)
        return
      }
      const chunk = remaining >= block.length ? block : block.subarray(0, remaining)
      remaining -= chunk.length
      this.push(chunk)
    },
  })
}

function payloadTooLarge(): Error {
  return Object.assign(new Error(`upload too large: at most ${speedtestMaxUploadBytes} bytes (100 MiB)`), {
    statusCode: 413,
    code: 'GPUMESH_ERR_PAYLOAD_TOO_LARGE',
  })
}

/**
 * Counts an upload as it streams, keeping none of it, and times it from the arrival of the request's headers
 * to the last byte. The body follows the headers at once, and bytes that pile up in the socket while the
 * request is authenticated still count only from the arrival: the rate is never inflated by that wait.
 */
function countUpload(
  payload: IncomingMessage,
  contentLength: string | undefined,
  arrivedAtMs: number,
  monotonicNowMs: () => number,
  done: (error: Error | null, body?: UploadMeasurement) => void,
): void {
  if (contentLength !== undefined && Number(contentLength) > speedtestMaxUploadBytes) {
    done(payloadTooLarge())
    return
  }
  let bytes = 0
  let lastAtMs = arrivedAtMs
  let settled = false
  const settle = (error: Error | null, body?: UploadMeasurement) => {
    if (settled) return
    settled = true
    payload.removeListener('data', onData)
    payload.removeListener('end', onEnd)
    payload.removeListener('error', onError)
    payload.removeListener('close', onClose)
    done(error, body)
  }
  const onData = (chunk: Buffer) => {
    lastAtMs = monotonicNowMs()
    bytes += chunk.length
    if (bytes > speedtestMaxUploadBytes) settle(payloadTooLarge())
  }
  const onEnd = () => {
    const durationMs = lastAtMs - arrivedAtMs
    const mbps = durationMs > 0 ? (bytes * 8) / (durationMs * 1000) : 0
    settle(null, { bytes, durationMs: round3(durationMs), mbps: round3(mbps) })
  }
  const onError = (error: Error) =>
    settle(Object.assign(error, { statusCode: 400, code: 'GPUMESH_ERR_UPLOAD_ABORTED' }))
  const onClose = () => {
    if (!payload.complete) settle(Object.assign(new Error('upload aborted'), { statusCode: 400 }))
  }
  payload.on('data', onData)
  payload.on('end', onEnd)
  payload.on('error', onError)
  payload.on('close', onClose)
  payload.resume()
}
