// Runs on the coordinator's test host for bench/cluster-ready.ts: creates a cluster, follows its events
// until it is ready, and prints the timeline (the same clock as the coordinator's: one machine).
const [baseUrl, apiKey, nodesText] = process.argv.slice(2) as [string, string, string]
const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' }
const requestedAtMs = Date.now()
const created = await fetch(`${baseUrl}/v1/clusters`, {
  method: 'POST',
  headers,
  body: JSON.stringify({ nodes: Number(nodesText), gpuModel: 'cpu', verifiedOnly: false }),
})
const cluster = (await created.json()) as { id: string; message?: string }
if (created.status !== 201) throw new Error(`create failed: ${created.status} ${JSON.stringify(cluster)}`)
const events: { seq: string; atMs: number; kind: string; message: string }[] = []
let after = '0'
for (;;) {
  const reply = await fetch(`${baseUrl}/v1/clusters/${cluster.id}/events?after=${after}&waitMs=20000`, {
    headers,
  })
  const page = (await reply.json()) as { events: typeof events }
  events.push(...page.events)
  if (page.events.length > 0) after = page.events.at(-1)!.seq
  const last = events.findLast((event) => event.kind === 'state_changed')
  if (last?.message.startsWith('ready') || last?.message.startsWith('failed')) break
}
process.stdout.write(JSON.stringify({ clusterId: cluster.id, requestedAtMs, events }))
