import type { Role } from '@gpumesh/core'
import type { DeviceView } from '@gpumesh/protocol'
import type { Command } from 'commander'
import {
  clientFrom,
  readCredentials,
  saveCredentials,
  UsageError,
  type ConnectionFlags,
} from '../credentials.ts'
import { printJson, printTable, reliabilityText } from '../output.ts'

const connectionOptions = (command: Command) =>
  command
    .option(
      '--coordinator <url>',
      'coordinator URL (default: saved login, GPUMESH_COORDINATOR, or http://127.0.0.1:8080)',
    )
    .option('--api-key <key>', 'API key (default: saved login or GPUMESH_API_KEY)')

const time = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString().replace('.000Z', 'Z'))

function parseRoles(text: string): Role[] {
  const roles = text
    .split(',')
    .map((role) => role.trim())
    .filter(Boolean)
  for (const role of roles) {
    if (role !== 'renter' && role !== 'supplier' && role !== 'operator') {
      throw new UsageError(
        `--roles: unknown role "${role}" (use renter, supplier, operator, comma-separated)`,
      )
    }
  }
  return roles as Role[]
}

export function registerAccountCommands(program: Command): void {
  connectionOptions(
    program
      .command('account')
      .description('accounts')
      .command('create')
      .description('create an account and its first API key (shown once)')
      .requiredOption('--name <name>', 'account name')
      .option('--roles <roles>', 'renter, supplier (comma-separated)', 'renter'),
  )
    .option('--login', "save the new key as this machine's login")
    .option('--json', 'machine-readable output')
    .action(
      async (flags: ConnectionFlags & { name: string; roles: string; login?: boolean; json?: boolean }) => {
        const client = clientFrom(flags, false)
        const created = await client.createAccount({ name: flags.name, roles: parseRoles(flags.roles) })
        if (flags.login) saveCredentials({ coordinatorUrl: client.baseUrl, apiKey: created.apiKey.key })
        if (flags.json) return printJson(created)
        process.stdout.write(
          `account ${created.account.id} (${created.account.roles.join(', ')})\n` +
            `API key (shown once, keep it safe): ${created.apiKey.key}\n` +
            (flags.login
              ? "saved as this machine's login\n"
              : `log in with: gpumesh login --coordinator ${client.baseUrl} --api-key ${created.apiKey.key}\n`),
        )
      },
    )

  connectionOptions(program.command('login').description('check an API key and save it for later commands'))
    .option(
      '--print-env',
      'print the saved login as shell exports (eval "$(gpumesh login --print-env)"), for curl and SDKs',
    )
    .action(async (flags: ConnectionFlags & { printEnv?: boolean }) => {
      if (flags.printEnv) {
        const saved = readCredentials()
        if (!saved) throw new UsageError('not logged in: run gpumesh login --coordinator URL --api-key KEY')
        const quoted = (value: string) => `'${value.replaceAll("'", "'\\''")}'`
        process.stdout.write(
          `export GPUMESH_COORDINATOR=${quoted(saved.coordinatorUrl)}\nexport GPUMESH_API_KEY=${quoted(saved.apiKey)}\n`,
        )
        return
      }
      if (!flags.apiKey) throw new UsageError('--api-key is required')
      const client = clientFrom(flags, true)
      const me = await client.me()
      const path = saveCredentials({ coordinatorUrl: client.baseUrl, apiKey: flags.apiKey })
      process.stdout.write(
        `logged in to ${client.baseUrl} as ${me.account.name} (${me.apiKey.roles.join(', ')}); saved to ${path}\n`,
      )
    })

  const apiKey = program.command('api-key').description('API keys of your account')
  connectionOptions(apiKey.command('create').description('create an API key (shown once)'))
    .requiredOption('--name <name>', 'what the key is for')
    .option('--roles <roles>', "subset of your roles (default: all of this key's roles)")
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & { name: string; roles?: string; json?: boolean }) => {
      const created = await clientFrom(flags, true).createApiKey({
        name: flags.name,
        ...(flags.roles ? { roles: parseRoles(flags.roles) } : {}),
      })
      if (flags.json) return printJson(created)
      process.stdout.write(
        `API key ${created.id} (${created.roles.join(', ')}), shown once:\n${created.key}\n`,
      )
    })
  connectionOptions(apiKey.command('ls').description('list API keys'))
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & { json?: boolean }) => {
      const { apiKeys } = await clientFrom(flags, true).listApiKeys()
      if (flags.json) return printJson(apiKeys)
      printTable(
        ['id', 'name', 'roles', 'created', 'last used', 'revoked'],
        apiKeys.map((key) => [
          key.id,
          key.name,
          key.roles.join(','),
          time(key.createdAtMs),
          time(key.lastUsedAtMs),
          time(key.revokedAtMs),
        ]),
      )
    })
  connectionOptions(
    apiKey.command('revoke').description('revoke an API key').argument('<id>', 'key id (key_...)'),
  ).action(async (id: string, flags: ConnectionFlags) => {
    const revoked = await clientFrom(flags, true).revokeApiKey(id)
    process.stdout.write(`revoked ${revoked.id} at ${time(revoked.revokedAtMs)}\n`)
  })

  const tokens = program
    .command('enrollment-token')
    .description('one-time tokens that enroll supplier machines')
  connectionOptions(
    tokens.command('create').description('create a token and print the command to run on the new machine'),
  )
    .option('--label <label>', 'a note for yourself, e.g. the machine name')
    .option('--ttl-seconds <seconds>', 'validity (default 86400)')
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & { label?: string; ttlSeconds?: string; json?: boolean }) => {
      const ttlSeconds = flags.ttlSeconds === undefined ? undefined : Number(flags.ttlSeconds)
      if (ttlSeconds !== undefined && !Number.isInteger(ttlSeconds))
        throw new UsageError('--ttl-seconds must be an integer')
      const created = await clientFrom(flags, true).createEnrollmentToken({
        ...(flags.label ? { label: flags.label } : {}),
        ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
      })
      if (flags.json) return printJson(created)
      process.stdout.write(
        `token ${created.id}, valid until ${time(created.expiresAtMs)}, for one machine. On that machine run:\n\n  ${created.command}\n\n`,
      )
    })
  connectionOptions(tokens.command('ls').description('list enrollment tokens'))
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & { json?: boolean }) => {
      const { enrollmentTokens } = await clientFrom(flags, true).listEnrollmentTokens()
      if (flags.json) return printJson(enrollmentTokens)
      printTable(
        ['id', 'label', 'expires', 'used', 'device'],
        enrollmentTokens.map((token) => [
          token.id,
          token.label ?? '',
          time(token.expiresAtMs),
          time(token.usedAtMs),
          token.deviceId ?? '',
        ]),
      )
    })

  const devices = program.command('device').description('your supplier devices')
  connectionOptions(devices.command('ls').description('list your devices with their state and its reason'))
    .option('--json', 'machine-readable output')
    .action(async (flags: ConnectionFlags & { json?: boolean }) => {
      const list = (await clientFrom(flags, true).listDevices()).devices
      if (flags.json) return printJson(list)
      printTable(
        ['id', 'host', 'state', 'why', 'GPUs', 'price/GPU-h', 'reliability', 'runs'],
        list.map((device) => [
          device.id,
          device.hostname,
          device.state,
          device.stateReason,
          !device.inventory
            ? '-'
            : device.inventory.gpus.length === 0
              ? 'none (CPU)'
              : `${device.inventory.gpus.length}× ${device.inventory.gpus[0]!.productName}`,
          device.askingPricePerGpuHourUsd ?? 'unset (not listed)',
          reliabilityText(device.reliability),
          runsSummary(device.capabilities),
        ]),
      )
      for (const line of missingCapabilities(list)) process.stdout.write(`${line}\n`)
    })
  connectionOptions(
    devices
      .command('show')
      .description('one device, with its recent state changes')
      .argument('<id>', 'device id'),
  )
    .option('--json', 'machine-readable output')
    .action(async (id: string, flags: ConnectionFlags & { json?: boolean }) => {
      const client = clientFrom(flags, true)
      const [device, events] = await Promise.all([client.getDevice(id), client.deviceEvents(id)])
      if (flags.json) return printJson({ device, events: events.events })
      printJson(device)
      printTable(
        ['at', 'state', 'reason'],
        events.events.slice(0, 20).map((event) => [time(event.atMs), event.state, event.reason]),
      )
    })
}

/** What a device can run, in a word or two: "clusters, models", "models", "nothing", "not tested yet". */
export function runsSummary(capabilities: DeviceView['capabilities']): string {
  if (!capabilities) return 'not tested yet'
  const runs = [
    capabilities.clusterNodes.available ? 'clusters' : undefined,
    capabilities.modelReplicas.available ? 'models' : undefined,
  ].filter(Boolean)
  return runs.length > 0 ? runs.join(', ') : 'nothing'
}

/** One line per capability a device lacks, with the reason and the fix: what a supplier acts on. */
export function missingCapabilities(devices: readonly DeviceView[]): string[] {
  const lines: string[] = []
  for (const device of devices) {
    const capabilities = device.capabilities
    if (!capabilities) continue
    for (const [label, capability] of [
      ['cluster nodes', capabilities.clusterNodes],
      ['model replicas', capabilities.modelReplicas],
    ] as const) {
      if (capability.available) continue
      lines.push(
        `${device.id} cannot run ${label}: ${capability.reason}${capability.fix ? `\n  fix: ${capability.fix}` : ''}`,
      )
    }
  }
  return lines
}

export { connectionOptions }
