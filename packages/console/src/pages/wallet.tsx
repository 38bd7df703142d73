import type { WalletView } from '@gpumesh/protocol'
import { useState, type FormEvent } from 'react'
import {
  EmptyRow,
  ErrorBanner,
  Field,
  Loaded,
  Notice,
  PageHeader,
  Section,
  Stat,
  TableScroll,
} from '../components/ui.tsx'
import { useFormSubmission } from '../form.ts'
import { formatTime } from '../format.ts'
import { useInterval, useResource, useTitle } from '../hooks.tsx'
import { useSession } from '../session.tsx'
import { checks, newRequestId, validateForm } from '../validation.ts'

// The GMT wallet: balance, what is available, what running clusters hold; the development faucet, withdrawals
// and the history. Each money form keeps one request id until it succeeds, so a retry after a lost answer is
// a replay the coordinator answers once, not a second transfer.

const historyLimit = 100
const walletRefreshMs = 15_000

function AmountForm({
  title,
  hint,
  submitLabel,
  amountTestId,
  submitTestId,
  send,
  onDone,
  defaultAmount = '',
}: {
  title: string
  hint: string
  submitLabel: string
  amountTestId: string
  submitTestId: string
  send(amountGmt: string, requestId: string): Promise<{ wallet: WalletView }>
  onDone(wallet: WalletView): void
  defaultAmount?: string
}) {
  const [amount, setAmount] = useState(defaultAmount)
  const [requestId, setRequestId] = useState(newRequestId)
  const [done, setDone] = useState<string | null>(null)
  const form = useFormSubmission()

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    setDone(null)
    const errors = validateForm(
      { amountGmt: amount },
      { amountGmt: { required: true, checks: [checks.positiveGmt] } },
    )
    await form.submit(errors, ['amountGmt'], async () => {
      const receipt = await send(amount.trim(), requestId)
      setRequestId(newRequestId())
      setDone(`${amount.trim()} GMT: done.`)
      onDone(receipt.wallet)
    })
  }

  return (
    <form onSubmit={(event) => void submit(event)} noValidate>
      <h3>{title}</h3>
      <p className="muted">{hint}</p>
      <div className="inline-form">
        <Field label="Amount (GMT)" field="amountGmt" error={form.fieldErrors['amountGmt']}>
          <input
            inputMode="decimal"
            value={amount}
            placeholder="e.g. 100"
            data-testid={amountTestId}
            onChange={(event) => {
              setAmount(event.target.value)
              // A different amount is a different request.
              setRequestId(newRequestId())
              form.clear(['amountGmt'])
            }}
          />
        </Field>
        <button
          type="submit"
          className="button button-primary"
          data-testid={submitTestId}
          disabled={form.busy}
        >
          {form.busy ? 'Working…' : submitLabel}
        </button>
      </div>
      <ErrorBanner message={form.banner ?? undefined} />
      {done ? <Notice tone="success">{done}</Notice> : null}
    </form>
  )
}

export function WalletPage() {
  useTitle('Wallet')
  const { client } = useSession()
  const wallet = useResource(() => client.wallet(), [client])
  const history = useResource(() => client.walletHistory({ limit: historyLimit }), [client])
  // Holds change as clusters are billed and end.
  useInterval(wallet.reload, walletRefreshMs)
  const changed = (updated: WalletView) => {
    wallet.set(updated)
    history.reload()
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
              <Stat label="Held (GMT)" value={view.heldGmt} testId="wallet-held" sub="for running clusters" />
            </div>
          )}
        </Loaded>
      </Section>
      <div className="grid-2">
        <Section>
          <AmountForm
            title="Faucet"
            hint="Development networks hand out test GMT (up to a limit per claim). Production networks have no faucet."
            submitLabel="Claim"
            amountTestId="faucet-amount"
            submitTestId="faucet-submit"
            defaultAmount="100"
            send={(amountGmt, requestId) => client.claimFaucet({ amountGmt, requestId })}
            onDone={changed}
          />
        </Section>
        <Section>
          <AmountForm
            title="Withdraw"
            hint="Moves GMT out of the network through its settlement adapter. Only the available amount can leave."
            submitLabel="Withdraw"
            amountTestId="withdraw-amount"
            submitTestId="withdraw-submit"
            send={(amountGmt, requestId) => client.withdraw({ amountGmt, requestId })}
            onDone={changed}
          />
        </Section>
      </div>
      <Section title="History" actions={<span className="muted">newest first, last {historyLimit}</span>}>
        <Loaded resource={history} what="Loading history">
          {({ transfers }) => (
            <TableScroll>
              <table>
                <thead>
                  <tr>
                    <th>When</th>
                    <th>What</th>
                    <th className="numeric">Amount (GMT)</th>
                    <th>Counterparty</th>
                    <th>Reference</th>
                  </tr>
                </thead>
                <tbody>
                  {transfers.length === 0 ? <EmptyRow columns={5}>No transfers yet.</EmptyRow> : null}
                  {transfers.map((transfer) => (
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
                  ))}
                </tbody>
              </table>
            </TableScroll>
          )}
        </Loaded>
      </Section>
    </>
  )
}
