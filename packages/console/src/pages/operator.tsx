import { useState, type FormEvent } from 'react'
import {
  Badge,
  ErrorBanner,
  Loaded,
  Notice,
  PageHeader,
  Section,
  Stat,
  SubmitButton,
  TextField,
} from '../components/ui.tsx'
import { bindFields, useFormSubmission } from '../form.ts'
import { useResource, useTitle } from '../hooks.tsx'
import { useSession } from '../session.tsx'
import { checks, newRequestId, validateForm } from '../validation.ts'

// Operators: check that the ledger balances, and credit an account by hand (recorded with who and why).

function LedgerCheck() {
  const { client } = useSession()
  const verification = useResource(() => client.verifyLedger(), [client])
  return (
    <Section
      title="Ledger check"
      actions={
        <button
          type="button"
          className="button button-small"
          data-testid="ledger-verify"
          onClick={verification.reload}
        >
          Check again
        </button>
      }
    >
      <Loaded resource={verification} what="Recomputing every balance">
        {(view) => (
          <>
            <p>
              {view.ok ? <Badge tone="good">balanced</Badge> : <Badge tone="bad">mismatch</Badge>}{' '}
              <span className="muted">
                {view.accounts} accounts and {view.transfers} transfers recomputed in {view.tookMs} ms.
              </span>
            </p>
            <div className="stat-row stat-row-wrap">
              <Stat label="Σ posted (units)" value={view.postedSum} sub="zero in a double-entry ledger" />
              <Stat label="Σ pending (units)" value={view.pendingSum} />
              <Stat label="Mismatched accounts" value={view.mismatched.length} />
              <Stat label="Overdrawn accounts" value={view.overdrawn.length} />
            </div>
            {[...view.mismatched, ...view.overdrawn].length > 0 ? (
              <ul className="code">
                {[...view.mismatched, ...view.overdrawn].map((account) => (
                  <li key={account}>{account}</li>
                ))}
              </ul>
            ) : null}
          </>
        )}
      </Loaded>
    </Section>
  )
}

function Credit() {
  const { client } = useSession()
  const [values, setValues] = useState({ accountId: '', amountGmt: '', reason: '' })
  const [requestId, setRequestId] = useState(newRequestId)
  const [done, setDone] = useState<string | null>(null)
  const form = useFormSubmission()
  const set = (change: Partial<typeof values>) => {
    setValues((current) => ({ ...current, ...change }))
    setRequestId(newRequestId())
    form.clear(Object.keys(change))
  }
  const bind = bindFields(values, set, form.fieldErrors)

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    setDone(null)
    const errors = validateForm(values, {
      accountId: { required: true, checks: [checks.maxLength(64)] },
      amountGmt: { required: true, checks: [checks.positiveGmt] },
      reason: {
        required: true,
        checks: [checks.pattern(/^[\s\S]{3,}$/, 'must be at least 3 characters'), checks.maxLength(256)],
      },
    })
    await form.submit(errors, ['accountId', 'amountGmt', 'reason'], async () => {
      const receipt = await client.creditAccount({
        ...values,
        accountId: values.accountId.trim(),
        amountGmt: values.amountGmt.trim(),
        requestId,
      })
      setRequestId(newRequestId())
      setDone(
        `Credited. The account's balance is ${receipt.wallet.balanceGmt} GMT (transfer ${receipt.transferId}).`,
      )
    })
  }

  return (
    <Section title="Credit an account">
      <form className="form-grid" onSubmit={(event) => void submit(event)} noValidate>
        <TextField label="Account id" {...bind('accountId')} placeholder="acc_…" testId="credit-account" />
        <TextField label="Amount (GMT)" {...bind('amountGmt')} inputMode="decimal" testId="credit-amount" />
        <TextField
          label="Reason"
          {...bind('reason')}
          hint="kept with the transfer, with your key"
          className="form-wide"
          testId="credit-reason"
        />
        <div className="form-wide">
          <ErrorBanner message={form.banner ?? undefined} />
          {done ? <Notice tone="success">{done}</Notice> : null}
          <SubmitButton label="Credit" busyLabel="Crediting…" busy={form.busy} testId="credit-submit" />
        </div>
      </form>
    </Section>
  )
}

export function OperatorPage() {
  useTitle('Operator')
  return (
    <>
      <PageHeader title="Operator" subtitle="Checks and corrections for the people who run this network." />
      <LedgerCheck />
      <Credit />
    </>
  )
}
