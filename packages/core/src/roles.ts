export const Role = { renter: 'renter', supplier: 'supplier', operator: 'operator' } as const
export type Role = (typeof Role)[keyof typeof Role]
export const allRoles: readonly Role[] = [Role.renter, Role.supplier, Role.operator]
