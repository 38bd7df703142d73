import { randomBytes } from 'node:crypto'
import { createSocket, type Socket } from 'node:dgram'

// Round trips between workers, for placement: every worker answers small UDP echoes, and measures its own
// round trip to the peers the coordinator names. Only packets of the exact probe size and magic are echoed,
// at a bounded rate, so the responder cannot be used to amplify traffic.

const magic = Buffer.from('gmrtt001')
export const rttPacketBytes = 24
/** Echoes answered per second, at most. */
export const rttEchoesPerSecond = 200
export const rttPingsPerTarget = 5
export const rttPingSpacingMs = 20
export const rttTimeoutMs = 1_000

export type RttResponder = { readonly port: number; close(): Promise<void> }

export async function startRttResponder(port = 0): Promise<RttResponder> {
  const socket = createSocket('udp4')
  let windowStartMs = Date.now()
  let answered = 0
  socket.on('message', (packet, from) => {
    if (packet.length !== rttPacketBytes || !packet.subarray(0, magic.length).equals(magic)) return
    const nowMs = Date.now()
    if (nowMs - windowStartMs >= 1_000) {
      windowStartMs = nowMs
      answered = 0
    }
    if (answered >= rttEchoesPerSecond) return
    answered += 1
    socket.send(packet, from.port, from.address)
  })
  socket.on('error', () => undefined)
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(port, '0.0.0.0', () => resolve())
  })
  return {
    port: socket.address().port,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  }
}

export type RttTarget = { readonly deviceId: string; readonly host: string; readonly port: number }

/** The median round trip to each target over a few pings; null for a target that never answered. */
export async function measureRoundTrips(
  targets: readonly RttTarget[],
): Promise<{ deviceId: string; rttMs: number | null }[]> {
  const socket: Socket = createSocket('udp4')
  const sentAt = new Map<string, { target: number; atNs: bigint }>()
  const samples = targets.map(() => [] as number[])
  socket.on('message', (packet) => {
    if (packet.length !== rttPacketBytes || !packet.subarray(0, magic.length).equals(magic)) return
    const key = packet.subarray(magic.length).toString('hex')
    const sent = sentAt.get(key)
    if (!sent) return
    sentAt.delete(key)
    samples[sent.target]!.push(Number(process.hrtime.bigint() - sent.atNs) / 1e6)
  })
  socket.on('error', () => undefined)
  await new Promise<void>((resolve) => socket.bind(0, () => resolve()))
  try {
    for (let ping = 0; ping < rttPingsPerTarget; ping += 1) {
      targets.forEach((target, index) => {
        const nonce = randomBytes(rttPacketBytes - magic.length)
        sentAt.set(nonce.toString('hex'), { target: index, atNs: process.hrtime.bigint() })
        socket.send(Buffer.concat([magic, nonce]), target.port, target.host)
      })
      await new Promise((resolve) => setTimeout(resolve, rttPingSpacingMs))
    }
    await new Promise((resolve) => setTimeout(resolve, rttTimeoutMs))
  } finally {
    socket.close()
  }
  return targets.map((target, index) => ({ deviceId: target.deviceId, rttMs: median(samples[index]!) }))
}

function median(values: number[]): number | null {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  const value = sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
  return Math.round(value * 1000) / 1000
}
