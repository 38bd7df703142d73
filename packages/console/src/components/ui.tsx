import { useState, type ReactNode } from 'react'
import { describeError } from '../errors.ts'

// Small building blocks every page shares. Field errors always render as
// <span data-testid="field-error" data-field="<API field name>">, beside the input they belong to.

export function PageHeader({
  title,
  subtitle,
  actions,
}: {
  title: ReactNode
  subtitle?: ReactNode
  actions?: ReactNode
}) {
  return (
    <div className="page-header">
      <div>
        <h1>{title}</h1>
        {subtitle ? <p className="muted">{subtitle}</p> : null}
      </div>
      {actions ? <div className="page-actions">{actions}</div> : null}
    </div>
  )
}

export function Section({
  title,
  actions,
  children,
  className,
  testId,
}: {
  title?: ReactNode
  actions?: ReactNode
  children: ReactNode
  className?: string
  testId?: string
}) {
  return (
    <section className={`card ${className ?? ''}`} data-testid={testId}>
      {title || actions ? (
        <div className="card-header">
          {title ? <h2>{title}</h2> : <span />}
          {actions ? <div className="card-actions">{actions}</div> : null}
        </div>
      ) : null}
      {children}
    </section>
  )
}

export function FieldError({ field, message }: { field: string; message: string | undefined }) {
  if (!message) return null
  return (
    <span className="field-error" data-testid="field-error" data-field={field} role="alert">
      {message}
    </span>
  )
}

/** A labelled input with its hint and its error; `field` is the API's name for it. */
export function Field({
  label,
  field,
  error,
  hint,
  children,
  className,
}: {
  label: ReactNode
  field: string
  error: string | undefined
  hint?: ReactNode
  children: ReactNode
  className?: string
}) {
  return (
    <label className={`field ${error ? 'field-invalid' : ''} ${className ?? ''}`}>
      <span className="field-label">{label}</span>
      {children}
      {hint && !error ? <span className="field-hint">{hint}</span> : null}
      <FieldError field={field} message={error} />
    </label>
  )
}

export function CheckField({
  label,
  checked,
  onChange,
  testId,
  disabled,
}: {
  label: ReactNode
  checked: boolean
  onChange(checked: boolean): void
  testId?: string
  disabled?: boolean
}) {
  return (
    <label className="check-field">
      <input
        type="checkbox"
        checked={checked}
        disabled={disabled}
        data-testid={testId}
        onChange={(event) => onChange(event.target.checked)}
      />
      <span>{label}</span>
    </label>
  )
}

export function ErrorBanner({ error, message }: { error?: unknown; message?: string }) {
  if (error === undefined && !message) return null
  return (
    <div className="banner banner-error" role="alert">
      {message ?? describeError(error)}
    </div>
  )
}

export function Notice({
  children,
  tone = 'info',
}: {
  children: ReactNode
  tone?: 'info' | 'success' | 'warning'
}) {
  return <div className={`banner banner-${tone}`}>{children}</div>
}

export function Loading({ what = 'Loading' }: { what?: string }) {
  return (
    <p className="loading muted" aria-live="polite">
      {what}…
    </p>
  )
}

/** What a section shows for a load: its error, a placeholder while the first answer is on its way, or the content. */
export function Loaded<T>({
  resource,
  children,
  what,
}: {
  resource: { data: T | undefined; error: unknown; loading: boolean }
  children: (data: T) => ReactNode
  what?: string
}) {
  if (resource.data === undefined) {
    if (resource.error !== undefined) return <ErrorBanner error={resource.error} />
    return <Loading {...(what ? { what } : {})} />
  }
  return (
    <>
      {resource.error !== undefined ? <ErrorBanner error={resource.error} /> : null}
      {children(resource.data)}
    </>
  )
}

export function Stat({
  label,
  value,
  sub,
  testId,
}: {
  label: ReactNode
  value: ReactNode
  sub?: ReactNode
  testId?: string
}) {
  return (
    <div className="stat">
      <span className="stat-label">{label}</span>
      <span className="stat-value" data-testid={testId}>
        {value}
      </span>
      {sub ? <span className="stat-sub muted">{sub}</span> : null}
    </div>
  )
}

type Tone = 'good' | 'warn' | 'bad' | 'neutral' | 'info'

const toneByWord: Readonly<Record<string, Tone>> = {
  online: 'good',
  verified: 'good',
  ready: 'good',
  passed: 'good',
  succeeded: 'good',
  ray_joined: 'good',
  active: 'good',
  hired: 'info',
  running: 'info',
  provisioning: 'info',
  verifying: 'info',
  issued: 'info',
  keyed: 'info',
  mesh_up: 'info',
  reserved: 'info',
  pending: 'warn',
  terminating: 'warn',
  unverified: 'warn',
  offline: 'neutral',
  terminated: 'neutral',
  released: 'neutral',
  stopped: 'neutral',
  revoked: 'neutral',
  used: 'neutral',
  expired: 'neutral',
  failed: 'bad',
  blocked: 'bad',
  lost: 'bad',
}

export function toneOf(word: string): Tone {
  return toneByWord[word] ?? 'neutral'
}

/** A state word in a colour that says whether it is good news. */
export function Badge({ children, tone }: { children: string; tone?: Tone }) {
  return <span className={`badge badge-${tone ?? toneOf(children)}`}>{children}</span>
}

export function TableScroll({ children }: { children: ReactNode }) {
  return <div className="table-scroll">{children}</div>
}

export function EmptyRow({ columns, children }: { columns: number; children: ReactNode }) {
  return (
    <tr className="empty-row">
      <td colSpan={columns}>{children}</td>
    </tr>
  )
}

/** Copies a secret or a command; clipboard access needs a secure context, so failure says to copy by hand. */
export function CopyButton({ text, testId }: { text: string; testId?: string }) {
  const [outcome, setOutcome] = useState<'idle' | 'copied' | 'failed'>('idle')
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text)
      setOutcome('copied')
    } catch {
      setOutcome('failed')
    }
  }
  return (
    <button type="button" className="button button-small" data-testid={testId} onClick={() => void copy()}>
      {outcome === 'copied' ? 'Copied' : outcome === 'failed' ? 'Select and copy by hand' : 'Copy'}
    </button>
  )
}

/**
 * A destructive action asked twice, inline: the first button shows the question and a confirm button
 * (no window.confirm, which tests and some browsers block).
 */
export function ConfirmAction({
  label,
  question,
  confirmLabel,
  onConfirm,
  testId,
  confirmTestId,
  disabled,
}: {
  label: string
  question: ReactNode
  confirmLabel: string
  onConfirm(): Promise<void>
  testId: string
  confirmTestId: string
  disabled?: boolean
}) {
  const [asking, setAsking] = useState(false)
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<unknown>(undefined)
  const confirm = async () => {
    setBusy(true)
    setError(undefined)
    try {
      await onConfirm()
      setAsking(false)
    } catch (caught) {
      setError(caught)
    } finally {
      setBusy(false)
    }
  }
  if (!asking) {
    return (
      <button
        type="button"
        className="button button-danger-outline"
        data-testid={testId}
        disabled={disabled}
        onClick={() => setAsking(true)}
      >
        {label}
      </button>
    )
  }
  return (
    <div className="confirm" role="group">
      <span className="confirm-question">{question}</span>
      <button
        type="button"
        className="button button-danger"
        data-testid={confirmTestId}
        disabled={busy}
        onClick={() => void confirm()}
      >
        {busy ? 'Working…' : confirmLabel}
      </button>
      <button type="button" className="button" disabled={busy} onClick={() => setAsking(false)}>
        Cancel
      </button>
      {error !== undefined ? <ErrorBanner error={error} /> : null}
    </div>
  )
}

/** A page the logged-in key may not open. */
export function MissingRole({ role }: { role: string }) {
  return (
    <Notice tone="warning">
      This page needs an API key with the <strong>{role}</strong> role. Log in with such a key, or create one
      under API keys if your account has the role.
    </Notice>
  )
}
