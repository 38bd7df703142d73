import type { Role } from '@gpumesh/core'
import type { CreateAccountReply, MeReply } from '@gpumesh/protocol'
import { useState, type FormEvent } from 'react'
import { Link, useLocation, useSearch } from 'wouter'
import {
  CheckField,
  CopyButton,
  ErrorBanner,
  FieldError,
  Notice,
  PageHeader,
  Section,
  SubmitButton,
  TextField,
} from '../components/ui.tsx'
import { isUnauthenticated, type FieldErrors } from '../errors.ts'
import { useFormSubmission } from '../form.ts'
import { useTitle } from '../hooks.tsx'
import { useSession } from '../session.tsx'
import { checks, hasErrors, validateForm } from '../validation.ts'

// Log in by pasting an API key, or create an account: its first key is shown once, then used to log in.

/** Where a key lands after logging in, unless it came from a page it was sent away from. */
export function homeFor(me: MeReply): string {
  if (me.apiKey.roles.includes('renter')) return '/clusters'
  if (me.apiKey.roles.includes('supplier')) return '/supplier/devices'
  return '/'
}

/** Only paths inside the console: `next` comes from the address bar. */
function safeNext(next: string | null): string | null {
  return next && next.startsWith('/') && !next.startsWith('//') ? next : null
}

function LoginForm({ onLoggedIn }: { onLoggedIn(me: MeReply): void }) {
  const session = useSession()
  const [apiKey, setApiKey] = useState('')
  const [fieldErrors, setFieldErrors] = useState<FieldErrors>({})
  const [error, setError] = useState<unknown>(undefined)
  const [busy, setBusy] = useState(false)

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    setError(undefined)
    const errors = validateForm(
      { apiKey },
      { apiKey: { required: true, checks: [checks.pattern(/^gmk_\S+$/, 'an API key starts with gmk_')] } },
    )
    setFieldErrors(errors)
    if (hasErrors(errors)) return
    setBusy(true)
    try {
      onLoggedIn(await session.login(apiKey.trim()))
    } catch (caught) {
      if (isUnauthenticated(caught)) {
        setFieldErrors({ apiKey: 'the coordinator does not accept this key (unknown or revoked)' })
      } else {
        setError(caught)
      }
    } finally {
      setBusy(false)
    }
  }

  return (
    <form onSubmit={(event) => void submit(event)} noValidate>
      <TextField
        label="API key"
        field="apiKey"
        error={fieldErrors['apiKey']}
        hint="Starts with gmk_. Kept in this browser only."
        type="password"
        autoComplete="off"
        spellCheck={false}
        placeholder="gmk_…"
        value={apiKey}
        testId="login-api-key"
        onChange={(value) => {
          setApiKey(value)
          setFieldErrors({})
        }}
      />
      <ErrorBanner error={error} />
      <SubmitButton label="Log in" busyLabel="Checking…" busy={busy} testId="login-submit" />
    </form>
  )
}

function SignupForm({ onCreated }: { onCreated(reply: CreateAccountReply): Promise<void> }) {
  const session = useSession()
  const [name, setName] = useState('')
  const [roles, setRoles] = useState<readonly Role[]>(['renter'])
  const form = useFormSubmission()

  const toggle = (role: Role, on: boolean) =>
    setRoles((current) =>
      on ? [...current.filter((one) => one !== role), role] : current.filter((one) => one !== role),
    )

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    const errors: Record<string, string> = {
      ...validateForm({ name }, { name: { required: true, checks: [checks.name] } }),
    }
    if (roles.length === 0) errors['roles'] = 'choose at least one role'
    await form.submit(errors, ['name', 'roles'], async () => {
      await onCreated(await session.publicClient.createAccount({ name: name.trim(), roles: [...roles] }))
    })
  }

  return (
    <form onSubmit={(event) => void submit(event)} noValidate>
      <TextField
        label="Account name"
        field="name"
        error={form.fieldErrors['name']}
        value={name}
        placeholder="e.g. ada-lab"
        testId="signup-name"
        onChange={(value) => {
          setName(value)
          form.clear(['name'])
        }}
      />
      <fieldset className="field">
        <legend className="field-label">Roles</legend>
        <div className="check-row">
          <CheckField
            label="Renter: rent clusters"
            checked={roles.includes('renter')}
            onChange={(on) => toggle('renter', on)}
            testId="signup-role-renter"
          />
          <CheckField
            label="Supplier: offer my machines"
            checked={roles.includes('supplier')}
            onChange={(on) => toggle('supplier', on)}
            testId="signup-role-supplier"
          />
        </div>
        <FieldError field="roles" message={form.fieldErrors['roles']} />
      </fieldset>
      <ErrorBanner message={form.banner ?? undefined} />
      <SubmitButton
        label="Create account"
        busyLabel="Creating…"
        busy={form.busy}
        testId="signup-submit"
        className="button"
      />
    </form>
  )
}

export function LoginPage() {
  useTitle('Log in')
  const session = useSession()
  const [, navigate] = useLocation()
  const next = safeNext(new URLSearchParams(useSearch()).get('next'))
  /** A new account's key, shown once: the page keeps it on screen until the user moves on. */
  const [created, setCreated] = useState<CreateAccountReply | null>(null)

  if (created) {
    return (
      <>
        <PageHeader title="Account created" subtitle={`Welcome, ${created.account.name}.`} />
        <Section title="Your API key">
          <Notice tone="warning">
            This is the only time the key is shown: the coordinator keeps only its hash. Save it in a password
            manager; you need it to log in again and for the CLI (<code>--api-key</code>).
          </Notice>
          <div className="secret">
            <code data-testid="signup-key">{created.apiKey.key}</code>
            <CopyButton text={created.apiKey.key} testId="signup-key-copy" />
          </div>
          <p className="muted">
            Roles: {created.apiKey.roles.join(', ')}. You are now logged in with this key.
          </p>
          <button
            type="button"
            className="button button-primary"
            data-testid="signup-continue"
            onClick={() => navigate(next ?? (session.me ? homeFor(session.me) : '/'))}
          >
            Continue
          </button>
        </Section>
      </>
    )
  }

  return (
    <>
      <PageHeader
        title="Log in"
        subtitle="The network explorer is public; renting and supplying need an API key."
      />
      {session.me ? (
        <Notice>
          You are logged in as <strong>{session.me.account.name}</strong>. Log in again below to switch keys,
          or go to <Link href={homeFor(session.me)}>your dashboard</Link>.
        </Notice>
      ) : null}
      <div className="grid-2">
        <Section title="Log in with an API key">
          <LoginForm onLoggedIn={(me) => navigate(next ?? homeFor(me))} />
        </Section>
        <Section title="Create an account">
          <SignupForm
            onCreated={async (reply) => {
              await session.login(reply.apiKey.key)
              setCreated(reply)
            }}
          />
        </Section>
      </div>
    </>
  )
}
