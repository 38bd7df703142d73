// Load generator for bench/worker-connections.ts: many lightweight workers in one process, each speaking the
// real worker protocol over its own WebSocket (packages/protocol/src/worker-messages.ts):
//
//   coordinator -> auth_challenge {nonce}
//   worker      -> auth {deviceId, signature over sessionSigningPayload(nonce, deviceId)}
//   coordinator -> welcome {heartbeatIntervalMs}
//   worker      -> report {small valid HardwareInventory: 0 GPUs, probeSource 'none'}
//   worker      -> heartbeat {seq} every heartbeatIntervalMs, first one after a random offset in [0, interval)
//
// It is not run by hand: worker-connections.ts forks it and drives it over the IPC channel.
//   parent -> {type:'start', url, clients, maxInFlight, welcomeTimeoutMs}
//   parent -> {type:'snapshot'}            answered with {type:'snapshot', counters}
//   parent -> {type:'stop'}                closes every socket and exits
//   swarm  -> {type:'progress', counters}  every second; {type:'ramp-done', counters, connectMs} once every
//                                          client has either been welcomed or failed
// Connects go out as a sliding window of at most maxInFlight handshakes, so the listener's backlog
// (net.core.somaxconn) is never flooded. It exits by itself when the parent goes away.

import { createPrivateKey, sign } from 'node:crypto'
import {
  capable,
  sessionSigningPayload,
  workerProtocolVersion,
  type HardwareInventory,
  type WorkerCapabilities,
} from '@gpumesh/protocol'
import WebSocket from 'ws'
import { emptySwarmCounters, type SwarmCounters } from './common.ts'

export type SwarmClient = {
  readonly deviceId: string
  /** Ed25519 private key, JWK `d` (base64url). */
  readonly d: string
  /** Ed25519 public key, JWK `x` (base64url). */
  readonly x: string
  /** Local source address to bind (127.0.0.x): each gives its own ~28k ephemeral ports towards one server port. */
  readonly localAddress: string
}

export type SwarmStart = {
  readonly type: 'start'
  readonly url: string
  readonly clients: readonly SwarmClient[]
  readonly maxInFlight: number
  readonly welcomeTimeoutMs: number
}

export type SwarmReply =
  | { readonly type: 'progress' | 'snapshot'; readonly counters: SwarmCounters }
  | { readonly type: 'ramp-done'; readonly counters: SwarmCounters; readonly connectMs: number[] }

const counters: SwarmCounters = emptySwarmCounters()
/** Swarm workers claim what a machine that passed its self-test would: they are placeable. */
const swarmCapabilities: WorkerCapabilities = {
  clusterNodes: capable(),
  modelReplicas: capable(),
  gpus: capable(),
  checks: [],
  testedAtMs: 0,
}
const connectMs: number[] = []
const sockets = new Set<WebSocket>()
const timers = new Set<NodeJS.Timeout>()
let stopping = false

const reply = (message: SwarmReply) => process.send?.(message)
const noteError = (text: string) => {
  if (counters.errorSamples.length < 8) counters.errorSamples.push(text)
}

function inventoryFor(index: number): HardwareInventory {
  return {
    hostname: `bench-worker-${process.pid}-${index}`,
    gpus: [],
    cpu: { model: 'Bench CPU', logicalCores: 8, architecture: 'x64' },
    memoryMib: 32_768,
    disk: { path: '/', totalMib: 512_000, freeMib: 256_000 },
    os: { platform: 'linux', release: '6.8.0' },
    probeSource: 'none',
    warnings: [],
  }
}

/** One worker: resolves when it was welcomed or has failed; afterwards it heartbeats until closed. */
function runClient(url: string, client: SwarmClient, index: number, welcomeTimeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    counters.attempted += 1
    const startedAt = performance.now()
    let welcomed = false
    let settled = false
    let seq = 0
    let heartbeatTimer: NodeJS.Timeout | undefined
    const settle = () => {
      if (settled) return
      settled = true
      clearTimeout(welcomeTimer)
      timers.delete(welcomeTimer)
      resolve()
    }
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/worker/connect`, {
      perMessageDeflate: false,
      handshakeTimeout: welcomeTimeoutMs,
      localAddress: client.localAddress,
    })
    sockets.add(ws)
    const welcomeTimer = setTimeout(() => {
      if (welcomed) return
      noteError(`no welcome within ${welcomeTimeoutMs} ms`)
      ws.terminate()
    }, welcomeTimeoutMs)
    timers.add(welcomeTimer)
    const send = (message: object) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message))
    }

    ws.on('message', (data) => {
      const message = JSON.parse(data.toString()) as {
        type: string
        nonce?: string
        heartbeatIntervalMs?: number
        code?: string
        message?: string
      }
      if (message.type === 'auth_challenge') {
        const key = createPrivateKey({
          key: { kty: 'OKP', crv: 'Ed25519', d: client.d, x: client.x },
          format: 'jwk',
        })
        const signature = sign(
          null,
          Buffer.from(sessionSigningPayload(message.nonce ?? '', client.deviceId)),
          key,
        )
        send({
          type: 'auth',
          deviceId: client.deviceId,
          signature: signature.toString('base64url'),
          agentVersion: `bench-swarm/${workerProtocolVersion}`,
        })
      } else if (message.type === 'welcome') {
        welcomed = true
        counters.welcomed += 1
        counters.open += 1
        connectMs.push(performance.now() - startedAt)
        send({
          type: 'report',
          inventory: inventoryFor(index),
          location: { region: 'eu-west', country: 'DE' },
          askingPricePerGpuHourUsd: '0.10',
          capabilities: swarmCapabilities,
        })
        counters.reportsSent += 1
        const intervalMs = message.heartbeatIntervalMs ?? 10_000
        const beat = () => {
          send({ type: 'heartbeat', seq: seq++ })
          counters.heartbeatsSent += 1
        }
        heartbeatTimer = setTimeout(() => {
          beat()
          heartbeatTimer = setInterval(beat, intervalMs)
        }, Math.random() * intervalMs)
        settle()
      } else if (message.type === 'error') {
        if (welcomed) counters.errorFramesAfterWelcome += 1
        else {
          counters.authRefused += 1
          noteError(`error frame before welcome: ${message.code}: ${message.message}`)
        }
      }
    })
    ws.on('error', (error) => {
      if (!welcomed) noteError(`socket error before welcome: ${String(error)}`)
    })
    ws.on('close', (code, reason) => {
      sockets.delete(ws)
      clearTimeout(heartbeatTimer)
      clearInterval(heartbeatTimer)
      counters.closeCodes[code] = (counters.closeCodes[code] ?? 0) + 1
      if (welcomed) {
        counters.open -= 1
        if (!stopping) {
          counters.closedAfterWelcome += 1
          noteError(`closed after welcome: ${code} ${reason.toString()}`)
        }
      } else if (!settled) {
        if (code === 4001 || code === 4003) counters.authRefused += 1
        else counters.connectFailed += 1
        if (code !== 1006) noteError(`closed before welcome: ${code} ${reason.toString()}`)
      }
      settle()
    })
  })
}

async function start(message: SwarmStart): Promise<void> {
  const progress = setInterval(() => reply({ type: 'progress', counters }), 1000)
  timers.add(progress)
  let next = 0
  const lanes = Array.from({ length: Math.min(message.maxInFlight, message.clients.length) }, async () => {
    while (next < message.clients.length && !stopping) {
      const index = next++
      await runClient(message.url, message.clients[index] as SwarmClient, index, message.welcomeTimeoutMs)
    }
  })
  await Promise.all(lanes)
  reply({ type: 'ramp-done', counters, connectMs })
}

function stop(): void {
  if (stopping) return
  stopping = true
  for (const timer of timers) clearTimeout(timer)
  for (const ws of sockets) ws.terminate()
  // Let the close events run, then leave.
  setTimeout(() => process.exit(0), 200).unref()
}

process.on('message', (message: { type: string }) => {
  if (message.type === 'start') {
    start(message as SwarmStart).catch((error: unknown) => {
      noteError(`swarm failed: ${String(error)}`)
      reply({ type: 'ramp-done', counters, connectMs })
    })
  } else if (message.type === 'snapshot') {
    reply({ type: 'snapshot', counters })
  } else if (message.type === 'stop') {
    stop()
  }
})
process.on('disconnect', () => {
  stop()
  setTimeout(() => process.exit(0), 1000).unref()
})
