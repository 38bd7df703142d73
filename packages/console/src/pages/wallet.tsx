import type { WalletView } from '@gpumesh/protocol'
import { AmountForm } from '../components/amount-form.tsx'
import { DataTable, Loaded, numeric, PageHeader, Section, Stat } from '../components/ui.tsx'
import { formatTime } from '../format.ts'
import { useInterval, useResource, useTitle } from '../hooks.tsx'
import { useSession } from '../session.tsx'

// The GMT wallet: balance, what is available, what running clusters hold; the development faucet, withdrawals
// and the history.

const historyLimit = 100
const walletRefreshMs = 15_000

export function WalletPage() {
  useTitle('Wallet')
  const { client } = useSession()
  const wallet = useResource(() => client.wallet(), [client])
  const history = useResource(() => client.walletHistory({ limit: historyLimit }), [client])
  // Holds change as clusters are billed and end.
  useInterval(wallet.reload, walletRefreshMs)
  /** A faucet claim or a withdrawal: the wallet it answers replaces the shown one, and history gains a line. */
  const move =
    (transfer: (body: { amountGmt: string; requestId: string }) => Promise<{ wallet: WalletView }>) =>
    async (amountGmt: string, requestId: string) => {
      const receipt = await transfer({ amountGmt, requestId })
      wallet.set(receipt.wallet)
      history.reload()
      return `${amountGmt} GMT: done.`
    }

  return (
    <>
      <PageHeader
        title="Wallet"
        subtitle="GMT, the network's token: rentals are paid from here and earnings are collected into it."
      />
      <Section>
        <Loaded resource={wallet} what="Loading the wallet">
          {(view) => (
            <div className="stat-row stat-row-wrap">
              <Stat label="Balance (GMT)" value={view.balanceGmt} testId="wallet-balance" />
              <Stat
                label="Available (GMT)"
                value={view.availableGmt}
                testId="wallet-available"
                sub="balance less holds"
              />
              <Stat
                label="Held (GMT)"
                value={view.heldGmt}
                testId="wallet-held"
                sub="for running clusters and inference requests"
              />
            </div>
          )}
        </Loaded>
      </Section>
      <div className="grid-2">
        <Section>
          <AmountForm
            heading={
              <>
                <h3>Faucet</h3>
                <p className="muted">
                  Development networks hand out test GMT (up to a limit per claim). Production networks have
                  no faucet.
                </p>
              </>
            }
            required
            placeholder="e.g. 100"
            defaultAmount="100"
            amountTestId="faucet-amount"
            submitLabel="Claim"
            busyLabel="Working…"
            submitTestId="faucet-submit"
            send={move((body) => client.claimFaucet(body))}
          />
        </Section>
        <Section>
          <AmountForm
            heading={
              <>
                <h3>Withdraw</h3>
                <p className="muted">
                  Moves GMT out of the network through its settlement adapter. Only the available amount can
                  leave.
                </p>
              </>
            }
            required
            placeholder="e.g. 100"
            amountTestId="withdraw-amount"
            submitLabel="Withdraw"
            busyLabel="Working…"
            submitTestId="withdraw-submit"
            send={move((body) => client.withdraw(body))}
          />
        </Section>
      </div>
      <Section title="History" actions={<span className="muted">newest first, last {historyLimit}</span>}>
        <Loaded resource={history} what="Loading history">
          {({ transfers }) => (
            <DataTable
              columns={['When', 'What', numeric('Amount (GMT)'), 'Counterparty', 'Reference']}
              rows={transfers}
              empty="No transfers yet."
            >
              {(transfer) => (
                <tr key={transfer.id} data-testid="wallet-history-row" data-code={transfer.code}>
                  <td className="nowrap">{formatTime(transfer.createdAtMs)}</td>
                  <td>
                    {transfer.code}
                    <span className="muted"> {transfer.kind}</span>
                  </td>
                  <td
                    className={`numeric ${transfer.amountGmt.startsWith('-') ? 'amount-out' : 'amount-in'}`}
                    data-testid="wallet-history-amount"
                  >
                    {transfer.amountGmt}
                  </td>
                  <td className="code">{transfer.counterparty}</td>
                  <td className="truncate" title={transfer.reference ?? ''}>
                    {transfer.reference ?? '—'}
                  </td>
                </tr>
              )}
            </DataTable>
          )}
        </Loaded>
      </Section>
    </>
  )
}
