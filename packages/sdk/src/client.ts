import type {
  ModelServingBody,
  DeviceServingBody,
  DeviceServingView,
  ExplorerInference,
  InferenceReceipt,
  InferenceReceiptList,
  ServedModelList,
  CollectEarningsBody,
  EarningsQuery,
  EarningsTransfers,
  EarningsTransfersQuery,
  EarningsView,
  LedgerVerificationView,
  OperatorCreditBody,
  WalletAmountBody,
  WalletWithdrawBody,
  DepositAddressView,
  DepositReportBody,
  DepositReportView,
  ChainVerificationView,
  WalletHistory,
  WalletHistoryQuery,
  WalletReceipt,
  WalletView,
  ClusterClientConfig,
  ClusterClientList,
  ConnectClientBody,
  ApiKeyList,
  ApiKeyView,
  ChallengeList,
  ClusterEventList,
  ClusterEventsQuery,
  ClusterList,
  ClusterPlan,
  ClusterRequestBody,
  ClusterView,
  CreateAccountBody,
  CreateAccountReply,
  CreateApiKeyBody,
  CreatedApiKey,
  CreatedEnrollmentToken,
  CreateEnrollmentTokenBody,
  DeviceEventList,
  DeviceList,
  DevicePricingBody,
  DeviceQuoteReply,
  DeviceUptimeReply,
  DeviceView,
  EnrollmentTokenList,
  HealthReply,
  JobList,
  JobLogQuery,
  JobLogReply,
  JobView,
  MeReply,
  OffersPage,
  OffersQuery,
  QuoteQuery,
  SubmitJobBody,
  RewardEpochList,
  RewardEpochDetail,
  DeviceRewardList,
  ExplorerSummary,
  PriceIndexReply,
  ExplorerDevicesQuery,
  ExplorerDevicePage,
  ExplorerDeviceDetail,
  CreateModelBody,
  ModelView,
  ModelList,
  ArtifactStored,
} from '@gpumesh/protocol'

// A typed client of the coordinator's /v1 API. Request and reply types come from the same protocol
// schemas the coordinator validates with.

export type GpumeshClientInit = {
  readonly baseUrl: string
  readonly apiKey?: string
  /** Per-request timeout. */
  readonly timeoutMs?: number
}

/** An error reply from the coordinator, with its stable code. */
export class GpumeshApiError extends Error {
  readonly status: number
  readonly code: string
  readonly details: Record<string, unknown>

  constructor(status: number, code: string, message: string, details: Record<string, unknown> = {}) {
    super(message)
    this.name = 'GpumeshApiError'
    this.status = status
    this.code = code
    this.details = details
  }
}

export const defaultRequestTimeoutMs = 30_000

type RequestOptions = { readonly timeoutMs?: number }

export class GpumeshClient {
  readonly baseUrl: string
  readonly #apiKey: string | undefined
  readonly #timeoutMs: number

  constructor(init: GpumeshClientInit) {
    this.baseUrl = init.baseUrl.replace(/\/+$/, '')
    this.#apiKey = init.apiKey
    this.#timeoutMs = init.timeoutMs ?? defaultRequestTimeoutMs
  }

  health = () => this.#request<HealthReply>('GET', '/v1/health')
  createAccount = (body: CreateAccountBody) => this.#request<CreateAccountReply>('POST', '/v1/accounts', body)
  me = () => this.#request<MeReply>('GET', '/v1/me')
  createApiKey = (body: CreateApiKeyBody) => this.#request<CreatedApiKey>('POST', '/v1/api-keys', body)
  listApiKeys = () => this.#request<ApiKeyList>('GET', '/v1/api-keys')
  revokeApiKey = (id: string) => this.#request<ApiKeyView>('DELETE', `/v1/api-keys/${encodeURIComponent(id)}`)
  createEnrollmentToken = (body: CreateEnrollmentTokenBody = {}) =>
    this.#request<CreatedEnrollmentToken>('POST', '/v1/enrollment-tokens', body)
  listEnrollmentTokens = () => this.#request<EnrollmentTokenList>('GET', '/v1/enrollment-tokens')
  listDevices = () => this.#request<DeviceList>('GET', '/v1/devices')
  getDevice = (id: string) => this.#request<DeviceView>('GET', `/v1/devices/${encodeURIComponent(id)}`)
  deviceEvents = (id: string) =>
    this.#request<DeviceEventList>('GET', `/v1/devices/${encodeURIComponent(id)}/events`)
  deviceVerifications = (id: string) =>
    this.#request<ChallengeList>('GET', `/v1/devices/${encodeURIComponent(id)}/verifications`)
  deviceUptime = (id: string, days?: number) =>
    this.#request<DeviceUptimeReply>(
      'GET',
      `/v1/devices/${encodeURIComponent(id)}/uptime${days ? `?days=${days}` : ''}`,
    )
  verifyLedger = () => this.#request<LedgerVerificationView>('GET', '/v1/ledger/verify')
  wallet = () => this.#request<WalletView>('GET', '/v1/wallet')
  walletHistory = (query: WalletHistoryQuery = {}) =>
    this.#request<WalletHistory>('GET', `/v1/wallet/history${toQueryString(query)}`)
  withdraw = (body: WalletWithdrawBody) => this.#request<WalletReceipt>('POST', '/v1/wallet/withdraw', body)
  depositAddress = () => this.#request<DepositAddressView>('GET', '/v1/wallet/deposit-address')
  reportDeposit = (body: DepositReportBody = {}) =>
    this.#request<DepositReportView>('POST', '/v1/wallet/deposits', body)
  verifyChain = () => this.#request<ChainVerificationView>('GET', '/v1/ledger/verify-chain')
  claimFaucet = (body: WalletAmountBody) => this.#request<WalletReceipt>('POST', '/v1/wallet/faucet', body)
  earnings = (query: EarningsQuery = {}) =>
    this.#request<EarningsView>('GET', `/v1/earnings${toQueryString(query)}`)
  earningsTransfers = (query: EarningsTransfersQuery) =>
    this.#request<EarningsTransfers>('GET', `/v1/earnings/transfers${toQueryString(query)}`)
  collectEarnings = (body: CollectEarningsBody = {}) =>
    this.#request<WalletReceipt>('POST', '/v1/earnings/collect', body)
  creditAccount = (body: OperatorCreditBody) =>
    this.#request<WalletReceipt>('POST', '/v1/operator/credits', body)
  planCluster = (body: ClusterRequestBody) => this.#request<ClusterPlan>('POST', '/v1/clusters/dry-run', body)
  /** A cluster request priced, with every factor of each node's price; needs no API key. */
  quote = (query: QuoteQuery) => this.#request<ClusterPlan>('GET', `/v1/quotes${toQueryString(query)}`)
  deviceQuote = (id: string, hours?: number) =>
    this.#request<DeviceQuoteReply>(
      'GET',
      `/v1/devices/${encodeURIComponent(id)}/quote${toQueryString({ hours })}`,
    )
  setDevicePricing = (id: string, body: DevicePricingBody) =>
    this.#request<DeviceQuoteReply>('PUT', `/v1/devices/${encodeURIComponent(id)}/pricing`, body)
  searchOffers = (query: OffersQuery = {}) =>
    this.#request<OffersPage>('GET', `/v1/offers${toQueryString(query)}`)

  createCluster = (body: ClusterRequestBody) => this.#request<ClusterView>('POST', '/v1/clusters', body)
  listClusters = (query: { limit?: number } = {}) =>
    this.#request<ClusterList>('GET', `/v1/clusters${toQueryString(query)}`)
  getCluster = (id: string) => this.#request<ClusterView>('GET', clusterPath(id))
  terminateCluster = (id: string) => this.#request<ClusterView>('POST', `${clusterPath(id)}/terminate`, {})
  extendCluster = (id: string, hours: number) =>
    this.#request<ClusterView>('POST', `${clusterPath(id)}/extend`, { hours })
  /** Events after `after`; with `waitMs` the coordinator holds the request open until one arrives. */
  clusterEvents = (id: string, query: ClusterEventsQuery = {}) =>
    this.#request<ClusterEventList>('GET', `${clusterPath(id)}/events${toQueryString(query)}`, undefined, {
      timeoutMs: this.#longPollTimeoutMs(query.waitMs),
    })
  connectClient = (clusterId: string, body: ConnectClientBody) =>
    this.#request<ClusterClientConfig>('POST', `${clusterPath(clusterId)}/clients`, body)
  listClients = (clusterId: string) =>
    this.#request<ClusterClientList>('GET', `${clusterPath(clusterId)}/clients`)
  removeClient = (clusterId: string, publicKey: string) =>
    this.#request<null>('POST', `${clusterPath(clusterId)}/clients/remove`, { publicKey })
  submitJob = (clusterId: string, body: SubmitJobBody) =>
    this.#request<JobView>('POST', `${clusterPath(clusterId)}/jobs`, body)
  listJobs = (clusterId: string) => this.#request<JobList>('GET', `${clusterPath(clusterId)}/jobs`)
  getJob = (clusterId: string, jobId: string) => this.#request<JobView>('GET', jobPath(clusterId, jobId))
  /** A job by its id alone; its view names its cluster. */
  findJob = (jobId: string) => this.#request<JobView>('GET', `/v1/jobs/${encodeURIComponent(jobId)}`)
  /** Output chunks after chunk `after`; with `waitMs` the coordinator holds the request open while the job runs. */
  jobLogs = (clusterId: string, jobId: string, query: JobLogQuery = {}) =>
    this.#request<JobLogReply>('GET', `${jobPath(clusterId, jobId)}/logs${toQueryString(query)}`, undefined, {
      timeoutMs: this.#longPollTimeoutMs(query.waitMs),
    })
  stopJob = (clusterId: string, jobId: string) =>
    this.#request<JobView>('POST', `${jobPath(clusterId, jobId)}/stop`, {})

  rewardEpochs = (query: { limit?: number; before?: number } = {}) =>
    this.#request<RewardEpochList>('GET', `/v1/rewards/epochs${toQueryString(query)}`)
  rewardEpoch = (epoch: number, query: { limit?: number; offset?: number } = {}) =>
    this.#request<RewardEpochDetail>('GET', `/v1/rewards/epochs/${epoch}${toQueryString(query)}`)
  deviceRewards = (deviceId: string) =>
    this.#request<DeviceRewardList>('GET', `/v1/rewards/devices/${encodeURIComponent(deviceId)}`)

  explorerSummary = () => this.#request<ExplorerSummary>('GET', '/v1/explorer/summary')
  explorerPrices = (query: { days?: number } = {}) =>
    this.#request<PriceIndexReply>('GET', `/v1/explorer/prices${toQueryString(query)}`)
  explorerDevices = (query: Partial<ExplorerDevicesQuery> = {}) =>
    this.#request<ExplorerDevicePage>('GET', `/v1/explorer/devices${toQueryString(query)}`)
  explorerInference = () => this.#request<ExplorerInference>('GET', '/v1/explorer/inference')
  servedModels = () => this.#request<ServedModelList>('GET', '/v1/models')
  inferenceReceipts = (query: { limit?: number; cursor?: string } = {}) =>
    this.#request<InferenceReceiptList>('GET', `/v1/inference/receipts${toQueryString(query)}`)
  inferenceReceipt = (id: string) =>
    this.#request<InferenceReceipt>('GET', `/v1/inference/receipts/${encodeURIComponent(id)}`)
  deviceServing = (id: string) =>
    this.#request<DeviceServingView>('GET', `/v1/devices/${encodeURIComponent(id)}/serving`)
  setDeviceServing = (id: string, body: DeviceServingBody) =>
    this.#request<DeviceServingView>('PUT', `/v1/devices/${encodeURIComponent(id)}/serving`, body)
  explorerDevice = (id: string) =>
    this.#request<ExplorerDeviceDetail>('GET', `/v1/explorer/devices/${encodeURIComponent(id)}`)

  createModel = (body: CreateModelBody) => this.#request<ModelView>('POST', '/v1/store/models', body)
  /** Uploads an artifact's bytes; refused unless they hash to `sha256`. */
  uploadArtifact = (sha256: string, bytes: Uint8Array, timeoutMs = 600_000) =>
    this.#request<ArtifactStored>('PUT', `/v1/store/artifacts/${sha256}`, bytes, { timeoutMs })
  listModels = () => this.#request<ModelList>('GET', '/v1/store/models')
  getModel = (name: string, version: string) =>
    this.#request<ModelView>(
      'GET',
      `/v1/store/models/${encodeURIComponent(name)}/${encodeURIComponent(version)}`,
    )
  setModelServing = (name: string, version: string, body: ModelServingBody) =>
    this.#request<ModelServingBody>(
      'PUT',
      `/v1/store/models/${encodeURIComponent(name)}/${encodeURIComponent(version)}/serving`,
      body,
    )
  removeModel = (name: string, version: string) =>
    this.#request<ModelView>(
      'DELETE',
      `/v1/store/models/${encodeURIComponent(name)}/${encodeURIComponent(version)}`,
    )

  /** A long poll may rightly take `waitMs`; the usual timeout then covers the rest of the exchange. */
  #longPollTimeoutMs(waitMs: number | undefined): number {
    return this.#timeoutMs + (waitMs ?? 0)
  }

  async #request<T>(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    body?: unknown,
    options: RequestOptions = {},
  ): Promise<T> {
    const headers: Record<string, string> = {}
    if (this.#apiKey) headers['authorization'] = `Bearer ${this.#apiKey}`
    const raw = body instanceof Uint8Array
    if (body !== undefined) headers['content-type'] = raw ? 'application/octet-stream' : 'application/json'
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body: raw ? (body as Uint8Array<ArrayBuffer>) : JSON.stringify(body) }),
      signal: AbortSignal.timeout(options.timeoutMs ?? this.#timeoutMs),
    })
    const text = await response.text()
    let parsed: unknown
    try {
      parsed = text ? JSON.parse(text) : undefined
    } catch {
      parsed = undefined
    }
    if (!response.ok) {
      const error = (parsed ?? {}) as { code?: string; message?: string; details?: Record<string, unknown> }
      throw new GpumeshApiError(
        response.status,
        error.code ?? `HTTP_${response.status}`,
        error.message ?? text,
        error.details,
      )
    }
    return parsed as T
  }
}

const clusterPath = (id: string) => `/v1/clusters/${encodeURIComponent(id)}`
const jobPath = (clusterId: string, jobId: string) =>
  `${clusterPath(clusterId)}/jobs/${encodeURIComponent(jobId)}`

function toQueryString(query: Record<string, unknown>): string {
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value))
  const text = params.toString()
  return text ? `?${text}` : ''
}
