import { formatGmtUnits, NotFoundError, ValidationError, type Clock } from '@gpumesh/core'
import {
  ArtifactRefusalList,
  DeviceServingBody,
  DeviceServingView,
  ErrorReply,
  ExplorerInference,
  IdParams,
  InferenceReceipt,
  InferenceReceiptList,
  InferenceReceiptsQuery,
  ModelServingBody,
  ModelVersionParams,
} from '@gpumesh/protocol'
import type { InferenceReceiptRecord, Store } from '@gpumesh/store'
import type { FastifyRequest } from 'fastify'
import { authenticate, ownDevice as findOwnDevice, requireRole } from '../principal.ts'
import type { App } from '../routes.ts'
import type { Gateway } from './gateway.ts'
import type { InferenceBilling, FinishedRequest } from './inference-billing.ts'
import { formatFloor, modelKeyOf, type ModelServing } from './model-serving.ts'

// Inference beside the OpenAI-compatible endpoints: callers' receipts, suppliers' per-device choice to serve
// models, operators' replica counts per model, and the figures the explorer shows.

export type ServingRouteComponents = {
  readonly store: Store
  readonly clock: Clock
  readonly serving: ModelServing
  readonly billing: InferenceBilling
  readonly gateway: Gateway
}

const errors = { 400: ErrorReply, 401: ErrorReply, 403: ErrorReply, 404: ErrorReply }
const secured = [{ apiKey: [] }]

function receiptView(receipt: InferenceReceiptRecord | FinishedRequest): InferenceReceipt {
  const settled = 'batchId' in receipt
  return {
    id: receipt.id,
    model: receipt.model,
    endpoint: receipt.endpoint,
    deviceId: receipt.deviceId,
    promptTokens: receipt.promptTokens,
    completionTokens: receipt.completionTokens,
    inputPerMillionGmt: formatGmtUnits(receipt.inputPerMillionUnits),
    outputPerMillionGmt: formatGmtUnits(receipt.outputPerMillionUnits),
    amountGmt: formatGmtUnits(receipt.amountUnits),
    feeGmt: settled ? formatGmtUnits(receipt.feeUnits) : '0.000000',
    requestId: receipt.requestId,
    createdAtMs: receipt.createdAtMs,
    settlement: settled
      ? {
          batchId: receipt.batchId,
          supplierTransferId: receipt.supplierTransferId,
          feeTransferId: receipt.feeTransferId,
          holdPostTransferId: receipt.holdPostTransferId,
        }
      : null,
  }
}

export function registerServingRoutes(app: App, components: ServingRouteComponents): void {
  const { store, clock, serving, billing, gateway } = components
  const principalOf = (request: FastifyRequest) => authenticate(request, store, clock)

  app.get(
    '/v1/inference/receipts',
    {
      schema: {
        tags: ['inference'],
        summary: 'My inference requests, newest first, each with its price, tokens and ledger transfers',
        security: secured,
        querystring: InferenceReceiptsQuery,
        response: { 200: InferenceReceiptList, ...errors },
      },
    },
    async (request) => {
      const { accountId } = await principalOf(request)
      const limit = request.query.limit ?? 100
      const cursor = request.query.cursor?.split(':')
      const receipts = await store.inference.listReceipts(
        accountId,
        limit,
        cursor ? { createdAtMs: Number(cursor[0]), id: cursor[1]! } : undefined,
      )
      const last = receipts.at(-1)
      return {
        receipts: receipts.map(receiptView),
        nextCursor: receipts.length === limit && last ? `${last.createdAtMs}:${last.id}` : null,
      }
    },
  )

  app.get(
    '/v1/inference/receipts/:id',
    {
      schema: {
        tags: ['inference'],
        summary: "One request's receipt; settlement is null until it is charged (within the settle interval)",
        security: secured,
        params: IdParams,
        response: { 200: InferenceReceipt, ...errors },
      },
    },
    async (request) => {
      const { accountId } = await principalOf(request)
      const receipt =
        (await store.inference.getReceipt(request.params.id)) ?? billing.unsettled(request.params.id)
      // Another account's receipt is reported exactly like a missing one.
      if (!receipt || receipt.accountId !== accountId)
        throw new NotFoundError(`no receipt ${request.params.id}`)
      return receiptView(receipt)
    },
  )

  app.get(
    '/v1/inference/stats',
    {
      schema: {
        tags: ['inference'],
        summary: "The gateway's request, retry and token counts per model since this coordinator started",
      },
    },
    async () => ({ ...gateway.stats(), generatedAtMs: clock.nowMs() }),
  )

  const ownDevice = (request: FastifyRequest, deviceId: string) =>
    findOwnDevice(request, store, clock, deviceId)
  const servingView = (deviceId: string): DeviceServingView => {
    const preference = serving.preferenceOf(deviceId)
    const replica = serving.replicaOn(deviceId)
    return {
      deviceId,
      enabled: preference?.enabled ?? false,
      minPricePerGpuHourUsd: formatFloor(preference),
      replica: replica
        ? {
            replicaId: replica.replicaId,
            model: modelKeyOf(replica.model),
            phase: replica.drainingSinceMs === null ? replica.phase : 'draining',
          }
        : null,
    }
  }

  app.get(
    '/v1/devices/:id/serving',
    {
      schema: {
        tags: ['suppliers'],
        summary: 'Whether one of my devices serves models while idle, its floor, and the replica it runs',
        security: secured,
        params: IdParams,
        response: { 200: DeviceServingView, ...errors },
      },
    },
    async (request) => servingView((await ownDevice(request, request.params.id)).id),
  )

  app.put(
    '/v1/devices/:id/serving',
    {
      schema: {
        tags: ['suppliers'],
        summary: 'Opt one of my devices in or out of serving models while idle, with a minimum price',
        security: secured,
        params: IdParams,
        body: DeviceServingBody,
        response: { 200: DeviceServingView, ...errors },
      },
    },
    async (request) => {
      const device = await ownDevice(request, request.params.id)
      await serving.setPreference(device.id, request.body)
      if (!request.body.enabled) serving.evict(device.id, 'its supplier stopped serving models on it')
      return servingView(device.id)
    },
  )

  app.put(
    '/v1/store/models/:name/:version/serving',
    {
      schema: {
        tags: ['models'],
        summary: 'How many devices serve a model: at least min while idle ones exist, up to max with load',
        security: secured,
        params: ModelVersionParams,
        body: ModelServingBody,
        response: { 200: ModelServingBody, ...errors },
      },
    },
    async (request) => {
      const principal = await principalOf(request)
      requireRole(principal, 'operator')
      const { minReplicas, maxReplicas } = request.body
      if (minReplicas > maxReplicas)
        throw new ValidationError([{ field: 'minReplicas', message: 'must not be above maxReplicas' }])
      const model = await store.models.findModel(request.params.name, request.params.version)
      if (!model || !(await store.models.setServing(model.id, minReplicas, maxReplicas, clock.nowMs())))
        throw new NotFoundError(`no model ${request.params.name} ${request.params.version}`)
      return { minReplicas, maxReplicas }
    },
  )

  app.get(
    '/v1/operator/artifact-refusals',
    {
      schema: {
        tags: ['models'],
        summary:
          'Artifacts workers downloaded and refused because the bytes did not match the hash (operators)',
        security: secured,
        response: { 200: ArtifactRefusalList, ...errors },
      },
    },
    async (request) => {
      requireRole(await principalOf(request), 'operator')
      return { refusals: await store.inference.listArtifactRefusals(200) }
    },
  )

  app.get(
    '/v1/explorer/inference',
    {
      schema: {
        tags: ['explorer'],
        summary: 'Inferences served, tokens and earnings per model, over all time',
        response: { 200: ExplorerInference },
      },
    },
    async () => {
      const totals = await store.inference.modelTotals()
      const ready = new Map(
        serving.servedModels().map(({ model, ready: count }) => [modelKeyOf(model), count]),
      )
      const names = [...new Set([...totals.map((t) => t.model), ...ready.keys()])].sort()
      return {
        models: names.map((name) => {
          const total = totals.find((t) => t.model === name)
          return {
            model: name,
            requests: total?.requests ?? 0,
            promptTokens: total?.promptTokens ?? 0,
            completionTokens: total?.completionTokens ?? 0,
            spentGmt: formatGmtUnits(total?.spentUnits ?? 0n),
            supplierEarningsGmt: formatGmtUnits(total?.supplierEarningsUnits ?? 0n),
            replicasReady: ready.get(name) ?? 0,
          }
        }),
        generatedAtMs: clock.nowMs(),
      }
    },
  )
}
