import { DeviceRequestHeader, deviceRequestSigningPayload } from '@gpumesh/protocol'
import type { WorkerIdentity } from '../identity.ts'

// HTTP requests to the coordinator signed with the device key (no API key). The coordinator refuses a
// signature it has seen before, and Ed25519 signatures are deterministic, so two requests to the same path in
// the same millisecond would collide: each signer hands out strictly increasing timestamps.

export type DeviceRequestSigner = {
  readonly deviceId: string
  /** Headers for one request; call once per request, never reuse them. */
  headers(method: string, pathWithQuery: string): Record<string, string>
}

export function createDeviceRequestSigner(
  deviceId: string,
  identity: Pick<WorkerIdentity, 'sign'>,
  nowMs: () => number = Date.now,
): DeviceRequestSigner {
  let lastTimestampMs = 0
  return {
    deviceId,
    headers(method, pathWithQuery) {
      const timestampMs = Math.max(nowMs(), lastTimestampMs + 1)
      lastTimestampMs = timestampMs
      return {
        [DeviceRequestHeader.deviceId]: deviceId,
        [DeviceRequestHeader.timestampMs]: String(timestampMs),
        [DeviceRequestHeader.signature]: identity.sign(
          deviceRequestSigningPayload(method, pathWithQuery, timestampMs),
        ),
      }
    },
  }
}

/** A refusal from the coordinator, with its error code when it sent one. */
export class CoordinatorRequestError extends Error {
  readonly status: number
  readonly code: string

  constructor(status: number, code: string, message: string) {
    super(message)
    this.name = 'CoordinatorRequestError'
    this.status = status
    this.code = code
  }
}

/** What Node's fetch takes as a body. */
export type RequestBody = NonNullable<RequestInit['body']>

export type SignedRequest = {
  readonly method: 'GET' | 'POST'
  /** Path with query, appended to the coordinator URL (which may carry a path prefix). */
  readonly path: string
  readonly timeoutMs: number
  readonly headers?: Record<string, string>
  readonly body?: RequestBody
}

/** Sends a signed request; a non-2xx reply throws CoordinatorRequestError. The timeout covers the body too. */
export async function signedFetch(
  coordinatorUrl: string,
  signer: DeviceRequestSigner,
  request: SignedRequest,
): Promise<Response> {
  const url = new URL(`${coordinatorUrl.replace(/\/$/, '')}${request.path}`)
  const streamed = typeof ReadableStream !== 'undefined' && request.body instanceof ReadableStream
  let response: Response
  try {
    response = await fetch(url, {
      method: request.method,
      headers: { ...request.headers, ...signer.headers(request.method, `${url.pathname}${url.search}`) },
      signal: AbortSignal.timeout(request.timeoutMs),
      ...(request.body === undefined ? {} : { body: request.body }),
      // A streamed body needs half duplex in Node's fetch.
      ...(streamed ? { duplex: 'half' } : {}),
    } as RequestInit)
  } catch (error) {
    throw describeFetchError(error, `${request.method} ${url.origin}${url.pathname}`, request.timeoutMs)
  }
  if (!response.ok) {
    let code = `HTTP_${response.status}`
    let message = `${request.method} ${url.pathname} failed with HTTP ${response.status}`
    try {
      const reply = (await response.json()) as { code?: unknown; message?: unknown }
      if (typeof reply.code === 'string') code = reply.code
      if (typeof reply.message === 'string') message = reply.message
    } catch {
      // not a JSON error body: keep the status line
    }
    throw new CoordinatorRequestError(response.status, code, message)
  }
  return response
}

/** Turns fetch's terse failures ("fetch failed", an abort) into a sentence saying what to check. */
export function describeFetchError(error: unknown, what: string, timeoutMs: number): Error {
  const name = (error as { name?: string }).name
  if (name === 'TimeoutError' || name === 'AbortError') {
    return new Error(`${what}: no complete reply within ${Math.round(timeoutMs / 1000)} s`, { cause: error })
  }
  const cause = (error as { cause?: { code?: string; message?: string } }).cause
  if (error instanceof TypeError && cause) {
    return new Error(
      `${what}: cannot reach the coordinator (${cause.code ?? cause.message ?? 'network error'}): is it running, and is the URL right?`,
      { cause: error },
    )
  }
  return error instanceof Error ? error : new Error(String(error))
}
