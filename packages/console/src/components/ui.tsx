import { useState, type HTMLAttributes, type InputHTMLAttributes, type ReactNode } from 'react'
import { Link, useLocation } from 'wouter'
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

type FieldFrame = {
  label: ReactNode
  field: string
  error: string | undefined
  hint?: ReactNode
  className?: string
}

/** A labelled text input (a `Field` holding one `<input>`); `onChange` gets the new text. */
export function TextField({
  label,
  field,
  error,
  hint,
  className,
  value,
  onChange,
  testId,
  ...input
}: FieldFrame & {
  value: string
  onChange(value: string): void
  testId: string
} & Omit<InputHTMLAttributes<HTMLInputElement>, 'value' | 'onChange' | 'className'>) {
  return (
    <Field label={label} field={field} error={error} hint={hint} className={className}>
      <input
        {...input}
        value={value}
        data-testid={testId}
        onChange={(event) => onChange(event.target.value)}
      />
    </Field>
  )
}

export type Choice<T extends string> = { readonly value: T; readonly label: string }

/** A labelled `<select>` over a fixed list of choices. */
export function SelectField<T extends string>({
  label,
  field,
  error,
  hint,
  className,
  value,
  choices,
  onChange,
  testId,
}: FieldFrame & {
  value: T
  choices: readonly Choice<T>[]
  onChange(value: T): void
  testId: string
}) {
  return (
    <Field label={label} field={field} error={error} hint={hint} className={className}>
      <select value={value} data-testid={testId} onChange={(event) => onChange(event.target.value as T)}>
        {choices.map((choice) => (
          <option key={choice.value} value={choice.value}>
            {choice.label}
          </option>
        ))}
      </select>
    </Field>
  )
}

/** A form's submit button, which says it is working while the request runs. */
export function SubmitButton({
  label,
  busyLabel,
  busy,
  testId,
  disabled = false,
  className = 'button button-primary',
}: {
  label: string
  busyLabel: string
  busy: boolean
  testId: string
  disabled?: boolean
  className?: string
}) {
  return (
    <button type="submit" className={className} data-testid={testId} disabled={disabled || busy}>
      {busy ? busyLabel : label}
    </button>
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

/** A table column heading; `numeric` ones are right-aligned, like their cells. */
export type Column = string | { readonly label: ReactNode; readonly numeric: true }

export function numeric(label: ReactNode): Column {
  return { label, numeric: true }
}

/** A scrolling table: one heading per column, one row per item, and `empty` across the table when there is none. */
export function DataTable<Row>({
  columns,
  rows,
  empty,
  className,
  children,
}: {
  columns: readonly Column[]
  rows: readonly Row[]
  empty?: ReactNode
  className?: string
  children(row: Row, index: number): ReactNode
}) {
  return (
    <TableScroll>
      <table className={className}>
        <thead>
          <tr>
            {columns.map((column, index) =>
              typeof column === 'string' ? (
                <th key={index}>{column}</th>
              ) : (
                <th key={index} className="numeric">
                  {column.label}
                </th>
              ),
            )}
          </tr>
        </thead>
        <tbody>
          {rows.length === 0 && empty !== undefined ? (
            <EmptyRow columns={columns.length}>{empty}</EmptyRow>
          ) : null}
          {rows.map(children)}
        </tbody>
      </table>
    </TableScroll>
  )
}

/**
 * A table row that opens `href`. Its name cell holds a real link (keyboard, middle click); a click elsewhere
 * on the row follows it too.
 */
export function LinkedRow({
  href,
  children,
  ...attributes
}: { href: string; children: ReactNode } & Omit<HTMLAttributes<HTMLTableRowElement>, 'onClick'>) {
  const [, navigate] = useLocation()
  return (
    <tr
      {...attributes}
      onClick={(event) => {
        if (!(event.target as HTMLElement).closest('a')) navigate(href)
      }}
    >
      {children}
    </tr>
  )
}

/** The first cell of a row naming a thing: its name (or a link to it), with its id small beneath. */
export function NameCell({ id, href, children }: { id: string; href?: string; children: ReactNode }) {
  return (
    <td>
      {href ? <Link href={href}>{children}</Link> : children}
      <div className="muted code">{id}</div>
    </td>
  )
}

/** A row of buttons choosing one of a few options (a period, a window). */
export function SegmentedChoice<T extends string | number>({
  label,
  options,
  value,
  onChange,
  optionLabel,
}: {
  label: string
  options: readonly T[]
  value: T
  onChange(value: T): void
  optionLabel(option: T): string
}) {
  return (
    <div className="segmented" role="group" aria-label={label}>
      {options.map((option) => (
        <button
          key={option}
          type="button"
          className={option === value ? 'segmented-active' : ''}
          aria-pressed={option === value}
          onClick={() => onChange(option)}
        >
          {optionLabel(option)}
        </button>
      ))}
    </div>
  )
}

/** The trail back from a detail page to its list. */
export function Breadcrumb({ href, children }: { href: string; children: ReactNode }) {
  return (
    <p className="breadcrumb">
      <Link href={href}>{children}</Link>
    </p>
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
