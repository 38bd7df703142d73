import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import { mintApiKey } from '@gpumesh/coordinator'
import { ledgerAccounts } from '@gpumesh/ledger'
import type { Store } from '@gpumesh/store'
import { eventually, startTestCoordinator, storeBackends } from '@gpumesh/testing'

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
      const key = mintApiKey()
      await store.createAccount({ id: 'acc_operator', name: 'operator', roles: ['operator'], createdAtMs: 0 })
      await store.insertApiKey({
        id: key.id,
        accountId: 'acc_operator',
        name: 'test',
        roles: ['operator'],
        secretSha256: key.secretSha256,
        createdAtMs: 0,
        lastUsedAtMs: null,
        revokedAtMs: null,
      })
      operatorKey = key.presented
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
