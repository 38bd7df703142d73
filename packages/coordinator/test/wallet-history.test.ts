import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import { ledgerAccounts } from '@gpumesh/ledger'
import type { Store } from '@gpumesh/store'
import { apiCaller, insertOperatorKey, runCli, startTestCoordinator, storeBackends } from '@gpumesh/testing'

// Issue 25 item 3: a wallet history people can read. The wallet here is moved as the inference gateway moves
// one (a hold into the caller's inference escrow, posted for what was used and held again, an idle hold
// released); the statement must show spending apart from holds, name what holds the funds, and filter.

for (const backend of storeBackends) {
  describe(`wallet history (issue 25 item 3) on ${backend.name}`, () => {
    let store: Store
    let cleanup: () => Promise<void>
    let coordinator: Coordinator
    let baseUrl: string
    let renterKey: string
    let accountId: string
    const call = apiCaller(() => baseUrl)

    before(async () => {
      ;({ store, cleanup } = await backend.open())
      coordinator = await startTestCoordinator(store)
      baseUrl = await coordinator.listen()
      const operatorKey = await insertOperatorKey(store)
      const renter = (await call('POST', '/v1/accounts', undefined, { name: 'r', roles: ['renter'] })).body
      renterKey = renter.apiKey.key
      accountId = renter.account.id
      const credited = await call('POST', '/v1/operator/credits', operatorKey, {
        accountId,
        amountGmt: '200',
        reason: 'history test',
      })
      assert.equal(credited.status, 200)
      const user = ledgerAccounts.user(accountId).id
      const escrow = ledgerAccounts.inferenceEscrow(accountId)
      await store.ledger.createAccounts([escrow], 0)
      const hold = (id: string, amount: bigint) => ({
        id,
        kind: 'pending' as const,
        debitAccountId: user,
        creditAccountId: escrow.id,
        amount,
        code: 'inference_hold',
        reference: accountId,
      })
      for (const batch of [
        [hold('inf-hold:a', 63_000_000n)],
        [
          {
            id: 'inf-post:b:0',
            kind: 'post' as const,
            pendingId: 'inf-hold:a',
            amount: 456_000n,
            code: 'inference_usage',
          },
          hold('inf-hold:b', 62_544_000n),
        ],
        [{ id: 'inf-release:b', kind: 'void' as const, pendingId: 'inf-hold:b', code: 'inference_release' }],
        [hold('inf-hold:c', 5_000_000n)],
      ])
        assert.deepEqual(
          await store.ledger.createTransfers(batch, 1),
          batch.map(() => 'ok'),
        )
    })

    after(async () => {
      await coordinator?.stop()
      await cleanup?.()
    })

    it('gives each line a kind, releases as money back, and names what holds the funds', async () => {
      const history = await call('GET', '/v1/wallet/history', renterKey)
      assert.equal(history.status, 200)
      const inference = { type: 'inference', id: null }
      assert.deepEqual(
        history.body.transfers.map((line: any) => [
          line.kind,
          line.transferKind,
          line.amountGmt,
          line.heldFor,
        ]),
        [
          ['hold', 'pending', '-5.000000', inference],
          ['release', 'void', '62.544000', inference],
          ['hold', 'pending', '-62.544000', inference],
          ['spend', 'post', '-0.456000', inference],
          ['hold', 'pending', '-63.000000', inference],
          ['credit', 'single', '200.000000', null],
        ],
      )
    })

    it('filters by kind, one or several, and refuses an unknown kind naming the field', async () => {
      const kindsOf = async (query: string) =>
        (await call('GET', `/v1/wallet/history?kind=${query}`, renterKey)).body.transfers.map(
          (line: any) => `${line.kind} ${line.amountGmt}`,
        )
      assert.deepEqual(await kindsOf('spend'), ['spend -0.456000'])
      assert.deepEqual(await kindsOf('release,credit'), ['release 62.544000', 'credit 200.000000'])
      assert.deepEqual(await kindsOf('deposit'), [])
      assert.equal((await kindsOf('hold')).length, 3)
      assert.equal((await kindsOf('other,spend')).length, 1)
      const refused = await call('GET', '/v1/wallet/history?kind=spending', renterKey)
      assert.equal(refused.status, 400)
      assert.equal(refused.body.details.issues[0].field, 'querystring.kind')
    })

    it('names an inference hold in the wallet and in `wallet balance`, not as held for clusters', async () => {
      const wallet = (await call('GET', '/v1/wallet', renterKey)).body
      assert.equal(wallet.heldGmt, '5.000000')
      assert.deepEqual(wallet.holds, [{ heldFor: { type: 'inference', id: null }, amountGmt: '5.000000' }])
      const balance = await runCli(baseUrl, renterKey, ['wallet', 'balance'])
      assert.equal(balance.code, 0, balance.stderr)
      assert.equal(
        balance.stdout.trim(),
        'balance 199.544000 GMT, available 194.544000 GMT, held 5.000000 GMT (5.000000 for inference requests)',
      )
    })

    it('prints a kind column and counts only spend lines as spent in `wallet history`', async () => {
      const all = await runCli(baseUrl, renterKey, ['wallet', 'history'])
      assert.equal(all.code, 0, all.stderr)
      assert.match(all.stdout, /│ when +│ kind +│ amount GMT │/)
      assert.match(all.stdout, /│ release +│ 62\.544000 +│ inference_release: inference requests +│/)
      assert.match(all.stdout, /spent 0\.456000 GMT in these 6 lines/)
      const holds = await runCli(baseUrl, renterKey, ['wallet', 'history', '--kind', 'hold'])
      assert.equal(holds.code, 0, holds.stderr)
      assert.match(holds.stdout, /spent 0\.000000 GMT in these 3 lines/)
      const wrong = await runCli(baseUrl, renterKey, ['wallet', 'history', '--kind', 'spending'])
      assert.notEqual(wrong.code, 0)
      assert.match(wrong.stderr, /--kind: spending is not a kind/)
    })
  })
}
