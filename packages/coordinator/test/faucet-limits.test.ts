import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import { ledgerAccounts } from '@gpumesh/ledger'
import type { Store } from '@gpumesh/store'
import { insertOperatorKey, startTestCoordinator, storeBackends } from '@gpumesh/testing'

// Issue 22 finding 6: the faucet limited each claim, not each account, so one account took 20 claims in a
// second and withdrew them, and five new accounts took one each. Requests are injected with a chosen
// source address, as a coordinator behind no proxy sees its clients.

type Reply = { status: number; headers: Record<string, unknown>; body: any }

for (const backend of storeBackends) {
  describe(`faucet limits on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let operatorKey: string
    let accountCount = 0

    const call = async (
      method: 'GET' | 'POST',
      url: string,
      options: { key?: string; body?: unknown; source?: string } = {},
    ): Promise<Reply> => {
      const response = await coordinator.app.inject({
        method,
        url,
        remoteAddress: options.source ?? '192.0.2.1',
        headers: options.key ? { authorization: `Bearer ${options.key}` } : {},
        ...(options.body === undefined ? {} : { payload: options.body as object }),
      })
      return { status: response.statusCode, headers: response.headers, body: response.json() }
    }
    const newRenter = async (): Promise<{ key: string; accountId: string }> => {
      const signup = await call('POST', '/v1/accounts', {
        body: { name: `renter ${++accountCount}`, roles: ['renter'] },
      })
      assert.equal(signup.status, 201, JSON.stringify(signup.body))
      return { key: signup.body.apiKey.key, accountId: signup.body.account.id }
    }
    const claim = (key: string, source: string, extra: Record<string, string> = {}) =>
      call('POST', '/v1/wallet/faucet', { key, source, body: { amountGmt: '1000', ...extra } })

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      coordinator = await startTestCoordinator(store, {
        faucetMaxClaimGmt: '1000',
        faucetClaimsPerSourcePerPeriod: 3,
        faucetFundsWithdrawable: false,
      })
      operatorKey = await insertOperatorKey(store)
      const funded = await call('POST', '/v1/operator/faucet', {
        key: operatorKey,
        body: { amountGmt: '100000' },
      })
      assert.equal(funded.status, 200, JSON.stringify(funded.body))
    })
    after(async () => {
      await coordinator?.stop()
      await cleanup?.()
    })

    it('finding 6: 20 claims of one account in a second give one, the rest 429 with Retry-After', async () => {
      const renter = await newRenter()
      const replies = await Promise.all(Array.from({ length: 20 }, () => claim(renter.key, '198.51.100.1')))
      const statuses = replies.map((reply) => reply.status)
      assert.equal(statuses.filter((status) => status === 200).length, 1, statuses.join(','))
      assert.equal(statuses.filter((status) => status === 429).length, 19, statuses.join(','))
      for (const refused of replies.filter((reply) => reply.status === 429)) {
        assert.equal(refused.body.code, 'GPUMESH_ERR_FAUCET_LIMITED')
        assert.match(refused.body.message, /already claimed from the faucet this period/)
        const retryAfter = Number(refused.headers['retry-after'])
        assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 86_400, String(retryAfter))
        assert.equal(refused.body.details.retryAfterSeconds, retryAfter)
      }
      const wallet = await call('GET', '/v1/wallet', { key: renter.key })
      assert.equal(wallet.body.balanceGmt, '1000.000000')
      const user = ledgerAccounts.user(renter.accountId).id
      assert.equal(await store.ledger.sumCredits(user, 'faucet'), 1_000_000_000n)
    })

    it('answers a retry of the claim that succeeded as it did, and refuses a new request id', async () => {
      const renter = await newRenter()
      const first = await claim(renter.key, '198.51.100.2', { requestId: 'claim-0001' })
      assert.equal(first.status, 200, JSON.stringify(first.body))
      const retry = await claim(renter.key, '198.51.100.2', { requestId: 'claim-0001' })
      assert.equal(retry.status, 200)
      assert.equal(retry.body.transferId, first.body.transferId)
      assert.equal(retry.body.wallet.balanceGmt, '1000.000000')
      assert.equal((await claim(renter.key, '198.51.100.2', { requestId: 'claim-0002' })).status, 429)
      // `gpumesh up` retries its claim with a fixed request id on every start, on any later day too.
      const tomorrow = await startTestCoordinator(
        store,
        { faucetMaxClaimGmt: '1000', faucetClaimPeriodMs: 1_000 },
        { nowMs: () => Date.now() + 86_400_000, sleepMs: async () => {} },
      )
      try {
        const later = await tomorrow.app.inject({
          method: 'POST',
          url: '/v1/wallet/faucet',
          headers: { authorization: `Bearer ${renter.key}` },
          payload: { amountGmt: '1000', requestId: 'claim-0001' },
        })
        assert.equal(later.statusCode, 200, later.body)
        assert.equal(later.json().transferId, first.body.transferId)
        assert.equal(later.json().wallet.balanceGmt, '1000.000000', 'the retry paid nothing')
      } finally {
        await tomorrow.stop()
      }
    })

    it('finding 6: 5 new accounts from one source get the source its 3 claims, then 429', async () => {
      const renters = await Promise.all(Array.from({ length: 5 }, () => newRenter()))
      const replies = []
      for (const renter of renters) replies.push(await claim(renter.key, '203.0.113.9'))
      assert.deepEqual(
        replies.map((reply) => reply.status),
        [200, 200, 200, 429, 429],
      )
      assert.equal(replies[3]!.body.code, 'GPUMESH_ERR_FAUCET_LIMITED')
      assert.match(replies[3]!.body.message, /this address already made 3 faucet claims/)
      assert.ok(Number(replies[3]!.headers['retry-after']) >= 1)
      // The refused accounts got nothing, and may still claim from another address.
      assert.equal((await call('GET', '/v1/wallet', { key: renters[4]!.key })).body.balanceGmt, '0.000000')
      assert.equal((await claim(renters[4]!.key, '203.0.113.10')).status, 200)
    })

    it('finding 6: keeps faucet GMT out of withdrawals, also under concurrent withdrawals', async () => {
      const renter = await newRenter()
      assert.equal((await claim(renter.key, '198.51.100.3')).status, 200)
      const credited = await call('POST', '/v1/operator/credits', {
        key: operatorKey,
        body: { accountId: renter.accountId, amountGmt: '300', reason: 'real deposit' },
      })
      assert.equal(credited.status, 200, JSON.stringify(credited.body))
      const tooMuch = await call('POST', '/v1/wallet/withdraw', {
        key: renter.key,
        body: { amountGmt: '300.000001' },
      })
      assert.equal(tooMuch.status, 409)
      assert.equal(tooMuch.body.code, 'GPUMESH_ERR_INSUFFICIENT_FUNDS')
      assert.match(tooMuch.body.message, /keeps the 1000\.000000 GMT from its faucet out of withdrawals/)
      const withdrawals = await Promise.all(
        Array.from({ length: 5 }, (_, index) =>
          call('POST', '/v1/wallet/withdraw', {
            key: renter.key,
            body: { amountGmt: '300', requestId: `withdraw-${index}` },
          }),
        ),
      )
      assert.deepEqual(withdrawals.map((reply) => reply.status).sort(), [200, 409, 409, 409, 409])
      const paid = withdrawals.find((reply) => reply.status === 200)!
      const retry = await call('POST', '/v1/wallet/withdraw', {
        key: renter.key,
        body: { amountGmt: '300', requestId: paid.body.transferId.split(':').at(-1) },
      })
      assert.equal(retry.status, 200, 'a retry of the paid withdrawal answers as it did')
      assert.equal((await call('GET', '/v1/wallet', { key: renter.key })).body.balanceGmt, '1000.000000')
    })
  })
}
