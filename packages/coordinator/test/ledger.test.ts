import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import { ledgerAccounts } from '@gpumesh/ledger'
import type { Store } from '@gpumesh/store'
import {
  apiCaller,
  eventually,
  insertOperatorKey,
  startTestCoordinator,
  storeBackends,
} from '@gpumesh/testing'

// The ledger through the coordinator: operators verify it; holds past their timeout are released by the
// coordinator's sweep.

for (const backend of storeBackends) {
  describe(`ledger through the coordinator on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let baseUrl: string
    let operatorKey: string
    let renterKey: string

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      coordinator = await startTestCoordinator(store, { runBackgroundLoops: true })
      baseUrl = await coordinator.listen()
      operatorKey = await insertOperatorKey(store)
      const signup = await fetch(`${baseUrl}/v1/accounts`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'renter', roles: ['renter'] }),
      })
      renterKey = ((await signup.json()) as any).apiKey.key
    })
    after(async () => {
      await coordinator?.stop()
      await cleanup?.()
    })

    const verify = async (key: string) => {
      const response = await fetch(`${baseUrl}/v1/ledger/verify`, {
        headers: { authorization: `Bearer ${key}` },
      })
      return { status: response.status, body: (await response.json()) as any }
    }

    it('verifies for an operator and is refused to anyone else', async () => {
      const renter = ledgerAccounts.user('acc_renter')
      await store.ledger.createAccounts([renter, ledgerAccounts.escrow('cls_x')], Date.now())
      const results = await store.ledger.createTransfers(
        [
          {
            id: 'deposit-1',
            kind: 'single',
            debitAccountId: 'external:settlement',
            creditAccountId: renter.id,
            amount: 5_000_000n,
            code: 'deposit',
          },
          {
            id: 'hold-1',
            kind: 'pending',
            debitAccountId: renter.id,
            creditAccountId: 'escrow:cls_x',
            amount: 2_000_000n,
            timeoutMs: 300,
            code: 'hold',
          },
        ],
        Date.now(),
      )
      assert.deepEqual(results, ['ok', 'ok'])
      const checked = await verify(operatorKey)
      assert.equal(checked.status, 200)
      assert.equal(checked.body.ok, true)
      assert.equal(checked.body.transfers, 2)
      assert.equal(checked.body.postedSum, '0')
      assert.equal((await verify(renterKey)).status, 403)
    })

    const call = apiCaller(() => baseUrl)

    it('credits by an operator with an audit record, withdraws, refuses what the wallet cannot pay', async () => {
      const me = await call('GET', '/v1/me', renterKey)
      const accountId = me.body.account.id
      const credit = await call('POST', '/v1/operator/credits', operatorKey, {
        accountId,
        amountGmt: '25.5',
        reason: 'launch credit',
        requestId: 'credit-0001',
      })
      assert.equal(credit.status, 200, JSON.stringify(credit.body))
      assert.deepEqual(credit.body.wallet, {
        accountId,
        balanceGmt: '25.500000',
        availableGmt: '25.500000',
        heldGmt: '0.000000',
        holds: [],
      })
      // A retry with the same request id moves nothing twice.
      const replay = await call('POST', '/v1/operator/credits', operatorKey, {
        accountId,
        amountGmt: '25.5',
        reason: 'launch credit',
        requestId: 'credit-0001',
      })
      assert.equal(replay.status, 200)
      assert.equal(replay.body.wallet.balanceGmt, '25.500000')
      const reused = await call('POST', '/v1/operator/credits', operatorKey, {
        accountId,
        amountGmt: '99',
        reason: 'launch credit',
        requestId: 'credit-0001',
      })
      assert.equal(reused.status, 409)
      assert.equal(reused.body.code, 'GPUMESH_ERR_CONFLICT')
      assert.equal(
        (await call('POST', '/v1/operator/credits', renterKey, { accountId, amountGmt: '1', reason: 'self' }))
          .status,
        403,
      )

      for (const amountGmt of ['-1', '0', '1.0000001', '1e3', '10000000000000', 'abc'])
        assert.equal(
          (await call('POST', '/v1/wallet/withdraw', renterKey, { amountGmt })).status,
          400,
          amountGmt,
        )
      const tooMuch = await call('POST', '/v1/wallet/withdraw', renterKey, { amountGmt: '30' })
      assert.equal(tooMuch.status, 409)
      assert.equal(tooMuch.body.code, 'GPUMESH_ERR_INSUFFICIENT_FUNDS')
      assert.equal(tooMuch.body.details.shortfallGmt, '4.500000')
      const withdrawn = await call('POST', '/v1/wallet/withdraw', renterKey, {
        amountGmt: '5.25',
        requestId: 'withdraw-0001',
      })
      assert.equal(withdrawn.status, 200)
      assert.equal(withdrawn.body.wallet.balanceGmt, '20.250000')

      const history = await call('GET', '/v1/wallet/history', renterKey)
      assert.deepEqual(
        history.body.transfers.map((line: any) => [line.code, line.amountGmt]),
        [
          ['withdrawal', '-5.250000'],
          ['deposit', '25.500000'],
        ],
      )
      assert.match(history.body.transfers[1].reference, /^operator acc_operator \(key .+\): launch credit$/)
      assert.equal((await verify(operatorKey)).body.ok, true)
    })

    it('runs a faucet an operator funds, within its per-claim limit, until it runs dry', async () => {
      assert.equal(
        (await call('POST', '/v1/wallet/faucet', renterKey, { amountGmt: '10' })).body.code,
        'GPUMESH_ERR_FAUCET_EMPTY',
      )
      const funded = await call('POST', '/v1/operator/faucet', operatorKey, { amountGmt: '1500' })
      assert.equal(funded.status, 200)
      assert.equal(funded.body.faucetGmt, '1500.000000')
      assert.equal(
        (await call('POST', '/v1/wallet/faucet', renterKey, { amountGmt: '1000.000001' })).status,
        400,
      )
      const claimed = await call('POST', '/v1/wallet/faucet', renterKey, { amountGmt: '1000' })
      assert.equal(claimed.status, 200)
      assert.equal(claimed.body.wallet.balanceGmt, '1020.250000')
      // another account, as this one has had its claim for the period (see faucet-limits.test.ts)
      const second = await call('POST', '/v1/accounts', undefined, {
        name: 'second renter',
        roles: ['renter'],
      })
      const dry = await call('POST', '/v1/wallet/faucet', second.body.apiKey.key, { amountGmt: '600' })
      assert.equal(dry.status, 409)
      assert.equal(dry.body.code, 'GPUMESH_ERR_FAUCET_EMPTY')
      assert.equal((await verify(operatorKey)).body.ok, true)
    })

    it("releases a hold once its timeout passes (the coordinator's sweep)", async () => {
      await eventually(
        async () => (await store.ledger.pendingState('hold-1')) === 'expired',
        'the hold expired',
        5_000,
      )
      const [renter] = await store.ledger.getAccounts(['user:acc_renter'])
      assert.equal(renter!.debitsPending, 0n)
      assert.equal((await verify(operatorKey)).body.ok, true)
    })
  })
}
