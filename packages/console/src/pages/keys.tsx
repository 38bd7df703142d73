import type { Role } from '@gpumesh/core'
import type { CreatedApiKey } from '@gpumesh/protocol'
import { useState, type FormEvent } from 'react'
import {
  Badge,
  CheckField,
  ConfirmAction,
  CopyButton,
  DataTable,
  ErrorBanner,
  FieldError,
  Loaded,
  NameCell,
  Notice,
  PageHeader,
  Section,
  SubmitButton,
  TextField,
} from '../components/ui.tsx'
import { useFormSubmission } from '../form.ts'
import { formatTime } from '../format.ts'
import { useResource, useTitle } from '../hooks.tsx'
import { useSession } from '../session.tsx'
import { checks, validateForm } from '../validation.ts'

// API keys of my account: a new key's secret is shown once; a key can hand out only roles it holds itself.

const roleOrder: readonly Role[] = ['renter', 'supplier', 'operator']

export function KeysPage() {
  useTitle('API keys')
  const session = useSession()
  const { client } = session
  const keys = useResource(() => client.listApiKeys(), [client])
  const grantable = roleOrder.filter((role) => session.hasRole(role))
  const [name, setName] = useState('')
  const [roles, setRoles] = useState<readonly Role[]>(grantable)
  const [created, setCreated] = useState<CreatedApiKey | null>(null)
  const form = useFormSubmission()
  const currentKeyId = session.me?.apiKey.id

  const toggle = (role: Role, on: boolean) =>
    setRoles((current) =>
      on
        ? roleOrder.filter((one) => one === role || current.includes(one))
        : current.filter((one) => one !== role),
    )

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    const errors: Record<string, string> = {
      ...validateForm({ name }, { name: { required: true, checks: [checks.name] } }),
    }
    if (roles.length === 0) errors['roles'] = 'choose at least one role'
    await form.submit(errors, ['name', 'roles'], async () => {
      setCreated(await client.createApiKey({ name: name.trim(), roles: [...roles] }))
      setName('')
      keys.reload()
    })
  }

  const revoke = async (keyId: string) => {
    await client.revokeApiKey(keyId)
    // The key this browser uses no longer opens anything.
    if (keyId === currentKeyId) session.logout()
    else keys.reload()
  }

  return (
    <>
      <PageHeader
        title="API keys"
        subtitle="Keys for the CLI, the SDK and this console. Each carries some of your account's roles."
      />
      <div className="grid-2">
        <Section title="New key">
          <form onSubmit={(event) => void submit(event)} noValidate>
            <TextField
              label="Name"
              field="name"
              error={form.fieldErrors['name']}
              hint="what it is for, e.g. ci-runner"
              value={name}
              testId="key-name"
              onChange={(value) => {
                setName(value)
                form.clear(['name'])
              }}
            />
            <fieldset className="field">
              <legend className="field-label">Roles</legend>
              <div className="check-row">
                {roleOrder.map((role) => (
                  <CheckField
                    key={role}
                    label={role}
                    checked={roles.includes(role)}
                    disabled={!grantable.includes(role)}
                    onChange={(on) => toggle(role, on)}
                    testId={`key-role-${role}`}
                  />
                ))}
              </div>
              <FieldError field="roles" message={form.fieldErrors['roles']} />
            </fieldset>
            <ErrorBanner message={form.banner ?? undefined} />
            <SubmitButton label="Create key" busyLabel="Creating…" busy={form.busy} testId="key-create" />
          </form>
        </Section>
        <Section title="Secret">
          {created ? (
            <>
              <Notice tone="warning">Shown once: only its hash is kept. Copy it now.</Notice>
              <div className="secret">
                <code data-testid="key-secret">{created.key}</code>
                <CopyButton text={created.key} testId="key-copy" />
              </div>
              <p className="muted">
                {created.name} · {created.roles.join(', ')}
              </p>
            </>
          ) : (
            <p className="muted">A new key&apos;s secret appears here once.</p>
          )}
        </Section>
      </div>
      <Section title="Keys">
        <Loaded resource={keys} what="Loading keys">
          {({ apiKeys }) => (
            <DataTable
              columns={['Name', 'Roles', 'Status', 'Created', 'Last used', '']}
              rows={apiKeys}
              empty="No keys."
            >
              {(key) => (
                <tr
                  key={key.id}
                  data-testid="key-row"
                  data-key-id={key.id}
                  data-revoked={key.revokedAtMs !== null}
                >
                  <NameCell id={key.id}>
                    {key.name}
                    {key.id === currentKeyId ? <span className="muted"> (this browser)</span> : null}
                  </NameCell>
                  <td>{key.roles.join(', ')}</td>
                  <td>
                    {key.revokedAtMs !== null ? (
                      <>
                        <Badge>revoked</Badge> <span className="muted">{formatTime(key.revokedAtMs)}</span>
                      </>
                    ) : (
                      <Badge>active</Badge>
                    )}
                  </td>
                  <td className="nowrap">{formatTime(key.createdAtMs)}</td>
                  <td className="nowrap">{formatTime(key.lastUsedAtMs)}</td>
                  <td>
                    {key.revokedAtMs === null ? (
                      <ConfirmAction
                        label="Revoke"
                        question={
                          key.id === currentKeyId
                            ? 'Revoke the key this browser uses? You will be logged out.'
                            : `Revoke ${key.name}?`
                        }
                        confirmLabel="Yes, revoke"
                        testId="key-revoke"
                        confirmTestId="key-revoke-confirm"
                        onConfirm={() => revoke(key.id)}
                      />
                    ) : null}
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
