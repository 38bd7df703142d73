import Type, { type Static } from 'typebox'

/** A USD amount as an exact decimal string: "1.25", at most 6 fractional digits. */
export const UsdAmount = Type.String({
  pattern: '^(0|[1-9][0-9]{0,8})(\\.[0-9]{1,6})?$',
  description: 'USD as a decimal string, e.g. "1.25"',
})
export type UsdAmount = Static<typeof UsdAmount>

export const ErrorReply = Type.Object({
  code: Type.String(),
  message: Type.String(),
  details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
})
export type ErrorReply = Static<typeof ErrorReply>

export const Role = Type.Union([Type.Literal('renter'), Type.Literal('supplier'), Type.Literal('operator')])

export const IdParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
)
export type IdParams = Static<typeof IdParams>
