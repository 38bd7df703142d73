const base64UrlAlphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/**
 * The 15 other spellings of a 64-byte value's base64url text (an Ed25519 signature): its last character
 * carries 2 bits and 4 unused ones, so every character sharing its top 2 bits decodes to the same bytes.
 */
export function base64UrlRespellings(text: string): string[] {
  const last = text.at(-1) ?? ''
  const sameBitsStart = base64UrlAlphabet.indexOf(last) & ~0b1111
  return [...base64UrlAlphabet.slice(sameBitsStart, sameBitsStart + 16)]
    .filter((character) => character !== last)
    .map((character) => text.slice(0, -1) + character)
}
