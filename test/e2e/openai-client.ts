import OpenAI from 'openai'

// The official OpenAI client, pointed at the gateway, from inside a test host (the test process lives outside
// every test network). One call per run: `node openai-client.ts BASE_URL API_KEY ACTION [N]`; it prints one
// JSON line with what the client returned, or the error it raised (with the request id the client read).
// For `retrieve`, N is the model to retrieve.

const [baseUrl, apiKey, action, countText] = process.argv.slice(2)
if (!baseUrl || !apiKey || !action) throw new Error('usage: openai-client.ts BASE_URL API_KEY ACTION [N]')
const client = new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey, maxRetries: 0, timeout: 120_000 })

type Outcome = Record<string, unknown>

async function completion(prompt: string, maxTokens: number): Promise<Outcome> {
  const { data, response, request_id } = await client.completions
    .create({ model: 'tiny-chat', prompt, max_tokens: maxTokens, temperature: 0 })
    .withResponse()
  return {
    text: data.choices[0]?.text,
    usage: data.usage,
    receiptId: response.headers.get('x-gpumesh-receipt-id'),
    deviceId: response.headers.get('x-gpumesh-device-id'),
    // The client's own reading of x-request-id.
    requestId: request_id,
  }
}

async function streamedChat(content: string, maxTokens: number): Promise<Outcome> {
  const { data: stream, response } = await client.chat.completions
    .create({
      model: 'tiny-chat',
      messages: [{ role: 'user', content }],
      max_tokens: maxTokens,
      stream: true,
      stream_options: { include_usage: true },
    })
    .withResponse()
  let text = ''
  let chunks = 0
  let usage: unknown
  for await (const chunk of stream) {
    chunks += 1
    text += chunk.choices[0]?.delta?.content ?? ''
    if (chunk.usage) usage = chunk.usage
  }
  return {
    text,
    chunks,
    usage,
    receiptId: response.headers.get('x-gpumesh-receipt-id'),
    deviceId: response.headers.get('x-gpumesh-device-id'),
    requestId: response.headers.get('x-request-id'),
  }
}

async function run(): Promise<Outcome> {
  switch (action) {
    case 'models':
      return { models: (await client.models.list()).data }
    case 'retrieve': {
      const { data: model, request_id } = await client.models
        .retrieve(countText ?? 'tiny-chat')
        .withResponse()
      return { model, requestId: request_id }
    }
    case 'completion':
      return completion('The Fox and the ', 12)
    case 'stream':
      return streamedChat('Tell me a fable.', 40)
    case 'completions': {
      const results: Outcome[] = []
      for (let index = 0; index < Number(countText ?? 1); index += 1) results.push(await completion('A', 4))
      return { results }
    }
    case 'bad-max-tokens':
      return completion('x', 100_000)
    default:
      throw new Error(`unknown action ${action}`)
  }
}

try {
  process.stdout.write(`${JSON.stringify({ ok: true, ...(await run()) })}\n`)
} catch (error) {
  const apiError = error as {
    status?: number
    error?: unknown
    code?: string | null
    requestID?: string | null
    message?: string
    constructor: { name: string }
  }
  process.stdout.write(
    `${JSON.stringify({ ok: false, errorClass: apiError.constructor.name, status: apiError.status, error: apiError.error, code: apiError.code, requestId: apiError.requestID, message: apiError.message })}\n`,
  )
}
