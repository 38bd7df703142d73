import type { Role } from '@gpumesh/core'
import type { MeReply } from '@gpumesh/protocol'
import { GpumeshClient } from '@gpumesh/sdk'
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react'
import { describeError, isUnauthenticated } from './errors.ts'
import { createApiKeyStore } from './key-storage.ts'

// Who is logged in: an API key kept in this tab's sessionStorage (key-storage.ts says why), checked with
// GET /v1/me on every load. A key the coordinator refuses (revoked, unknown) is forgotten; one that cannot be
// checked (coordinator down) is kept.

export type SessionStatus = 'checking' | 'ready'

export type Session = {
  readonly status: SessionStatus
  readonly me: MeReply | null
  /** Why the stored key could not be checked, when the coordinator did not answer. */
  readonly checkError: string | null
  /** The client with the logged-in key (without one when logged out). */
  readonly client: GpumeshClient
  /** A client without a key, for the public explorer: a stale key cannot break it. */
  readonly publicClient: GpumeshClient
  hasRole(role: Role): boolean
  /** Checks the key with GET /v1/me and keeps it; throws the coordinator's error when it is refused. */
  login(apiKey: string): Promise<MeReply>
  logout(): void
}

const SessionContext = createContext<Session | null>(null)

const keyStore = createApiKeyStore({
  session: () => window.sessionStorage,
  legacy: () => window.localStorage,
})
const readStoredKey = () => keyStore.read()
const storeKey = (apiKey: string | null) => keyStore.write(apiKey)

const clientFor = (apiKey: string | null) =>
  new GpumeshClient({ baseUrl: window.location.origin, ...(apiKey ? { apiKey } : {}) })

export function SessionProvider({ children }: { children: ReactNode }) {
  const [apiKey, setApiKey] = useState<string | null>(readStoredKey)
  const [me, setMe] = useState<MeReply | null>(null)
  const [status, setStatus] = useState<SessionStatus>(apiKey ? 'checking' : 'ready')
  const [checkError, setCheckError] = useState<string | null>(null)

  useEffect(() => {
    const stored = readStoredKey()
    if (!stored) return
    let stale = false
    clientFor(stored)
      .me()
      .then(
        (reply) => {
          if (stale) return
          setMe(reply)
          setStatus('ready')
        },
        (error: unknown) => {
          if (stale) return
          if (isUnauthenticated(error)) {
            storeKey(null)
            setApiKey(null)
          } else {
            setCheckError(describeError(error))
          }
          setStatus('ready')
        },
      )
    return () => {
      stale = true
    }
  }, [])

  const login = useCallback(async (candidate: string) => {
    const reply = await clientFor(candidate).me()
    storeKey(candidate)
    setApiKey(candidate)
    setMe(reply)
    setCheckError(null)
    setStatus('ready')
    return reply
  }, [])

  const logout = useCallback(() => {
    storeKey(null)
    setApiKey(null)
    setMe(null)
    setCheckError(null)
    setStatus('ready')
  }, [])

  const session = useMemo<Session>(
    () => ({
      status,
      me,
      checkError,
      client: clientFor(me ? apiKey : null),
      publicClient: clientFor(null),
      hasRole: (role) => me?.apiKey.roles.includes(role) ?? false,
      login,
      logout,
    }),
    [status, me, checkError, apiKey, login, logout],
  )
  return <SessionContext value={session}>{children}</SessionContext>
}

export function useSession(): Session {
  const session = useContext(SessionContext)
  if (!session) throw new Error('useSession outside SessionProvider')
  return session
}
