// Ids are minted at the edge (crypto there); this module only knows their shape.

export const IdPrefix = {
  account: 'acc',
  apiKey: 'key',
  enrollmentToken: 'enr',
  device: 'dev',
  cluster: 'cls',
  job: 'job',
  model: 'mdl',
} as const
export type IdPrefix = (typeof IdPrefix)[keyof typeof IdPrefix]

const idBodyPattern = /^[a-z0-9]{20}$/

export function formatId(prefix: IdPrefix, body: string): string {
  return `${prefix}_${body}`
}

export function isIdOf(prefix: IdPrefix, value: string): boolean {
  return value.startsWith(`${prefix}_`) && idBodyPattern.test(value.slice(prefix.length + 1))
}

export const idBodyLength = 20
export const idBodyAlphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'
