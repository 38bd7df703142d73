import Type, { type Static } from 'typebox'

// The hardware speedtest: the coordinator's network test endpoints (called by a device, signed with its key),
// the result a device submits, and the compute figures the worker's Python benchmark prints.

const mebibyte = 1024 * 1024

export const speedtestMinDownloadBytes = 1024
export const speedtestMaxDownloadBytes = 100 * mebibyte
export const speedtestMaxUploadBytes = 100 * mebibyte
/**
 * A transfer counts towards a result only when it moved at least this much: smaller ones fit in socket
 * buffers, so the coordinator's own timing of them says little about the link.
 */
export const speedtestMinMeasuredBytes = 8 * mebibyte
/** A submitted result is checked against the coordinator's own measurements of at most this age. */
export const speedtestMeasurementMaxAgeMs = 5 * 60_000
export const speedtestDefaultDownloadBytes = 25 * mebibyte
export const speedtestDefaultUploadBytes = 10 * mebibyte
export const maxSpeedtestHistory = 100

export const BandwidthTierName = Type.Union([
  Type.Literal('low'),
  Type.Literal('medium'),
  Type.Literal('high'),
])

export const SpeedtestDownloadQuery = Type.Object(
  { bytes: Type.Integer({ minimum: speedtestMinDownloadBytes, maximum: speedtestMaxDownloadBytes }) },
  { additionalProperties: false },
)
export type SpeedtestDownloadQuery = Static<typeof SpeedtestDownloadQuery>

/** What the coordinator itself measured while receiving an upload. */
export const SpeedtestUploadReply = Type.Object({
  bytes: Type.Integer({ minimum: 0 }),
  /** From the arrival of the request's headers to the last byte received. */
  durationMs: Type.Number({ minimum: 0 }),
  /** `bytes` over `durationMs`, in Mbit/s. */
  mbps: Type.Number({ minimum: 0 }),
})
export type SpeedtestUploadReply = Static<typeof SpeedtestUploadReply>

// Compute figures. Open to extra fields (a newer script may report more), closed on the ones it names.

const Tflops = Type.Number({ minimum: 0, maximum: 100_000 })

export const ComputeDeviceFigures = Type.Object({
  index: Type.Integer({ minimum: 0, maximum: 1023 }),
  kind: Type.Union([Type.Literal('gpu'), Type.Literal('cpu')]),
  name: Type.String({ maxLength: 256 }),
  /** Dense matrix multiply throughput per precision; a precision the device cannot run is absent. */
  matmulTflops: Type.Object({
    fp64: Type.Optional(Tflops),
    fp32: Type.Optional(Tflops),
    tf32: Type.Optional(Tflops),
    fp16: Type.Optional(Tflops),
    bf16: Type.Optional(Tflops),
  }),
  /** Side of the square matrices that were multiplied. */
  matmulSize: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
  /** Copy throughput, counting the bytes read and the bytes written. */
  memoryBandwidthGBps: Type.Number({ minimum: 0, maximum: 1_000_000 }),
  /** Free memory the benchmark could use: VRAM on a GPU, available RAM on the CPU. */
  usableMemoryMiB: Type.Integer({ minimum: 0 }),
})
export type ComputeDeviceFigures = Static<typeof ComputeDeviceFigures>

export const ComputeSpeedtestResult = Type.Object({
  backend: Type.Union([Type.Literal('torch-cuda'), Type.Literal('numpy-cpu')]),
  python: Type.String({ maxLength: 64 }),
  devices: Type.Array(ComputeDeviceFigures, { minItems: 1, maxItems: 64 }),
  durationMs: Type.Optional(Type.Number({ minimum: 0 })),
})
export type ComputeSpeedtestResult = Static<typeof ComputeSpeedtestResult>

const Milliseconds = Type.Number({ minimum: 0, maximum: 60_000 })
const Mbps = Type.Number({ minimum: 0, maximum: 1_000_000 })

export const SpeedtestResultsBody = Type.Object(
  {
    latencyMs: Milliseconds,
    jitterMs: Milliseconds,
    downloadMbps: Mbps,
    uploadMbps: Mbps,
    compute: Type.Optional(ComputeSpeedtestResult),
  },
  { additionalProperties: false },
)
export type SpeedtestResultsBody = Static<typeof SpeedtestResultsBody>

export const SpeedtestView = Type.Object({
  id: Type.String(),
  deviceId: Type.String(),
  measuredAtMs: Type.Integer({ minimum: 0 }),
  latencyMs: Type.Number(),
  jitterMs: Type.Number(),
  /** The lower of the device's figure and the coordinator's own measurement. */
  downloadMbps: Type.Number(),
  /** The lower of the device's figure and the coordinator's own measurement. */
  uploadMbps: Type.Number(),
  bandwidthTier: Type.Union([BandwidthTierName, Type.Null()]),
  compute: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
})
export type SpeedtestView = Static<typeof SpeedtestView>

export const SpeedtestHistoryQuery = Type.Object(
  { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: maxSpeedtestHistory })) },
  { additionalProperties: false },
)
export type SpeedtestHistoryQuery = Static<typeof SpeedtestHistoryQuery>

export const SpeedtestHistory = Type.Object({ speedtests: Type.Array(SpeedtestView) })
export type SpeedtestHistory = Static<typeof SpeedtestHistory>
