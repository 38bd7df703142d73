import { useState, type FormEvent, type ReactNode } from 'react'
import { useFormSubmission } from '../form.ts'
import { checks, newRequestId, validateForm } from '../validation.ts'
import { ErrorBanner, Notice, SubmitButton, TextField } from './ui.tsx'

/**
 * A form that moves an amount of GMT. It keeps one request id until the move succeeds, so a retry after a
 * lost answer is a replay the coordinator answers once, not a second transfer; a different amount is a
 * different request.
 */
export function AmountForm({
  heading,
  required,
  hint,
  placeholder,
  defaultAmount = '',
  clearOnSuccess = false,
  amountTestId,
  submitLabel,
  busyLabel,
  submitTestId,
  send,
}: {
  heading?: ReactNode
  /** When not required, an empty amount is sent as '' and means everything there is. */
  required: boolean
  hint?: string
  placeholder: string
  defaultAmount?: string
  clearOnSuccess?: boolean
  amountTestId: string
  submitLabel: string
  busyLabel: string
  submitTestId: string
  /** Moves `amountGmt` (trimmed) under `requestId`; answers what to tell the user. */
  send(amountGmt: string, requestId: string): Promise<string>
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
      { amountGmt: { required, checks: [checks.positiveGmt] } },
    )
    await form.submit(errors, ['amountGmt'], async () => {
      const message = await send(amount.trim(), requestId)
      setRequestId(newRequestId())
      if (clearOnSuccess) setAmount('')
      setDone(message)
    })
  }

  return (
    <form onSubmit={(event) => void submit(event)} noValidate>
      {heading}
      <div className="inline-form">
        <TextField
          label="Amount (GMT)"
          field="amountGmt"
          error={form.fieldErrors['amountGmt']}
          hint={hint}
          inputMode="decimal"
          value={amount}
          placeholder={placeholder}
          testId={amountTestId}
          onChange={(value) => {
            setAmount(value)
            setRequestId(newRequestId())
            form.clear(['amountGmt'])
          }}
        />
        <SubmitButton label={submitLabel} busyLabel={busyLabel} busy={form.busy} testId={submitTestId} />
      </div>
      <ErrorBanner message={form.banner ?? undefined} />
      {done ? <Notice tone="success">{done}</Notice> : null}
    </form>
  )
}
