// Plain HTTP requests signed by a worker's Ed25519 key, for endpoints a device calls outside its WebSocket
// session (the speedtest). No API key is involved: the device key is the credential.
//
// The signature covers the method, the path with its query and a timestamp, so a captured request cannot be
// sent to another endpoint or after the skew window, and the coordinator refuses a signature it has already
// seen inside that window. The body is not covered: the transport (HTTPS) protects it.

export const DeviceRequestHeader = {
  deviceId: 'x-gpumesh-device',
  timestampMs: 'x-gpumesh-timestamp',
  signature: 'x-gpumesh-signature',
} as const

/** How far a signed request's timestamp may be from the coordinator's clock, either way. */
export const deviceRequestMaxSkewMs = 60_000

export function deviceRequestSigningPayload(
  method: string,
  pathWithQuery: string,
  timestampMs: number,
): string {
  return `gpumesh-device-request-v1\n${method.toUpperCase()}\n${pathWithQuery}\n${timestampMs}`
}
