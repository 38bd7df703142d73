import { ValidationError } from '@gpumesh/core'
import { createKeyPairSignerFromBytes, type KeyPairSigner } from '@solana/kit'
import { readFile, stat } from 'node:fs/promises'

// The vault's signing key lives in a file the operator keeps, never in the database: the format solana-keygen
// writes (a JSON array of 64 bytes, the secret seed then the public key). A file others can read is refused,
// because whoever reads it can empty the vault.

export async function loadVaultKey(path: string): Promise<KeyPairSigner> {
  const refuse = (message: string): never => {
    throw new ValidationError([{ field: 'chain.vaultKeyFile', message }], 'chain settings')
  }
  const info = await stat(path).catch(() => refuse(`${path} cannot be read`))
  if ((info.mode & 0o077) !== 0)
    refuse(`${path} is readable by others (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`)
  let bytes: unknown
  try {
    bytes = JSON.parse(await readFile(path, 'utf8'))
  } catch {
    return refuse(`${path} is not a JSON key file`)
  }
  if (
    !Array.isArray(bytes) ||
    bytes.length !== 64 ||
    !bytes.every((byte) => Number.isInteger(byte) && byte >= 0 && byte <= 255)
  )
    return refuse(`${path} does not hold 64 key bytes (the solana-keygen format)`)
  try {
    return await createKeyPairSignerFromBytes(Uint8Array.from(bytes as number[]))
  } catch {
    return refuse(`${path}: its public key does not match its secret key`)
  }
}
