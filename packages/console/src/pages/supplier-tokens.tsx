import type { CreatedEnrollmentToken, EnrollmentTokenView } from '@gpumesh/protocol'
import { useState, type FormEvent } from 'react'
import { Link } from 'wouter'
import {
  Badge,
  CopyButton,
  DataTable,
  ErrorBanner,
  Loaded,
  NameCell,
  Notice,
  PageHeader,
  Section,
  SelectField,
  SubmitButton,
  TextField,
  type Choice,
} from '../components/ui.tsx'
import { bindFields, useFormSubmission } from '../form.ts'
import { formatTime } from '../format.ts'
import { useNowMs, useResource, useTitle } from '../hooks.tsx'
import { useSession } from '../session.tsx'
import { checks, optionalText, validateForm } from '../validation.ts'

// Enrolling a machine: a one-time token, and the exact `gpumesh worker start` command that uses it. The
// command names this console's own address as the coordinator: it is the address the supplier reached.

const maxTtlHours = 30 * 24

type TokenForm = {
  label: string
  ttlHours: string
  region: string
  country: string
  pricing: 'fixed' | 'auto'
  price: string
}

const pricingChoices: readonly Choice<TokenForm['pricing']>[] = [
  { value: 'fixed', label: 'fixed: my price' },
  { value: 'auto', label: 'auto: the pricing engine' },
]

/** The worker's flags (packages/cli/src/commands/worker.ts), quoted for a POSIX shell where needed. */
function workerCommand(coordinatorUrl: string, token: string, form: TokenForm): string {
  const quote = (value: string) =>
    /^[A-Za-z0-9_./:@-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`
  const parts = [
    'gpumesh',
    'worker',
    'start',
    '--coordinator',
    quote(coordinatorUrl),
    '--token',
    quote(token),
  ]
  const region = optionalText(form.region)
  const country = optionalText(form.country)
  const price = optionalText(form.price)
  if (region) parts.push('--region', quote(region))
  if (country) parts.push('--country', quote(country.toUpperCase()))
  if (form.pricing === 'auto') parts.push('--pricing', 'auto')
  if (price) parts.push('--price-per-gpu-hour', quote(price))
  return parts.join(' ')
}

function tokenStatus(token: EnrollmentTokenView, nowMs: number): string {
  if (token.usedAtMs !== null) return 'used'
  if (token.expiresAtMs <= nowMs) return 'expired'
  return 'active'
}

export function SupplierTokensPage() {
  useTitle('Enroll a machine')
  const { client } = useSession()
  const nowMs = useNowMs(30_000)
  const tokens = useResource(() => client.listEnrollmentTokens(), [client])
  const [values, setValues] = useState<TokenForm>({
    label: '',
    ttlHours: '24',
    region: '',
    country: '',
    pricing: 'fixed',
    price: '',
  })
  const [created, setCreated] = useState<{ token: CreatedEnrollmentToken; command: string } | null>(null)
  const form = useFormSubmission()
  const set = (change: Partial<TokenForm>) => {
    setValues((current) => ({ ...current, ...change }))
    form.clear(Object.keys(change).map((field) => (field === 'ttlHours' ? 'ttlSeconds' : field)))
  }
  const bind = bindFields(values, set, form.fieldErrors)

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    const errors = validateForm(values, {
      label: { checks: [checks.name] },
      ttlHours: { required: true, checks: [checks.integer(1, maxTtlHours)] },
      region: { checks: [checks.region] },
      country: { checks: [checks.country] },
      price: { checks: [checks.usd] },
    })
    // The API takes the token's lifetime in seconds; the form asks for hours.
    const apiErrors = { ...errors, ...(errors['ttlHours'] ? { ttlSeconds: errors['ttlHours'] } : {}) }
    await form.submit(apiErrors, ['label', 'ttlSeconds', 'region', 'country', 'price'], async () => {
      const label = optionalText(values.label)
      const token = await client.createEnrollmentToken({
        ttlSeconds: Number(values.ttlHours) * 3600,
        ...(label ? { label } : {}),
      })
      setCreated({ token, command: workerCommand(window.location.origin, token.token, values) })
      tokens.reload()
    })
  }

  return (
    <>
      <PageHeader
        title="Enroll a machine"
        subtitle="A one-time token ties a new machine to your account. Run the worker with it on that machine."
      />
      <div className="grid-2">
        <Section title="New enrollment token">
          <form className="form-grid" onSubmit={(event) => void submit(event)} noValidate>
            <TextField
              label="Label"
              {...bind('label')}
              hint="optional, e.g. rack-2 node 4"
              testId="token-label"
            />
            <TextField
              label="Valid for (hours)"
              {...bind('ttlHours', 'ttlSeconds')}
              inputMode="numeric"
              testId="token-ttl-hours"
            />
            <TextField
              label="Region"
              {...bind('region')}
              hint="optional, e.g. eu-west"
              testId="token-region"
            />
            <TextField label="Country" {...bind('country')} hint="optional, e.g. DE" testId="token-country" />
            <SelectField
              label="Pricing"
              {...bind('pricing')}
              choices={pricingChoices}
              testId="token-pricing"
            />
            <TextField
              label={values.pricing === 'fixed' ? '$ per GPU-hour' : 'Minimum $ per GPU-hour'}
              {...bind('price')}
              hint="optional, e.g. 1.80"
              inputMode="decimal"
              testId="token-price"
            />
            <div className="form-wide">
              <ErrorBanner message={form.banner ?? undefined} />
              <SubmitButton
                label="Create token"
                busyLabel="Creating…"
                busy={form.busy}
                testId="token-create"
              />
            </div>
          </form>
        </Section>
        <Section title="Run this on the new machine">
          {created ? (
            <>
              <Notice tone="warning">
                Shown once: the token is stored only as a hash. It enrolls one machine and expires{' '}
                {formatTime(created.token.expiresAtMs)}.
              </Notice>
              <pre className="command" data-testid="token-command">
                {created.command}
              </pre>
              <CopyButton text={created.command} testId="token-command-copy" />
              <p className="muted">
                The machine appears under <Link href="/supplier/devices">My devices</Link> once the worker
                connects. Without root, add <code>--no-clusters</code> (no cluster nodes: WireGuard and Ray
                need root).
              </p>
            </>
          ) : (
            <p className="muted">Create a token: the command to run appears here, with the token in it.</p>
          )}
        </Section>
      </div>
      <Section title="Tokens">
        <Loaded resource={tokens} what="Loading tokens">
          {({ enrollmentTokens }) => (
            <DataTable
              columns={['Label', 'Status', 'Created', 'Expires', 'Device']}
              rows={enrollmentTokens}
              empty="No tokens yet."
            >
              {(token) => (
                <tr key={token.id} data-testid="token-row" data-token-id={token.id}>
                  <NameCell id={token.id}>{token.label ?? <span className="muted">no label</span>}</NameCell>
                  <td>
                    <Badge>{tokenStatus(token, nowMs)}</Badge>
                  </td>
                  <td className="nowrap">{formatTime(token.createdAtMs)}</td>
                  <td className="nowrap">{formatTime(token.expiresAtMs)}</td>
                  <td>
                    {token.deviceId ? (
                      <Link href={`/supplier/devices/${encodeURIComponent(token.deviceId)}`} className="code">
                        {token.deviceId}
                      </Link>
                    ) : (
                      '—'
                    )}
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
