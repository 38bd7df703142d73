// Where the console keeps the API key between page loads. In sessionStorage: one tab's, gone when the tab
// closes, never written to disk for later sessions and never shared with other tabs. Not localStorage,
// where a key stays readable for as long as the browser profile lives. Scripts from other origins can read
// neither; the coordinator's Content-Security-Policy (script-src 'self', coordinator/src/console-headers.ts)
// keeps scripts from elsewhere off the console's pages. docs/security.md says why not a cookie.

/** The part of the Web Storage API this uses (typed here: this file is checked without the DOM library). */
export type KeyStorage = {
  getItem(key: string): string | null
  setItem(key: string, value: string): void
  removeItem(key: string): void
}

export const apiKeyStorageKey = 'gpumesh.apiKey'

export type ApiKeyStore = {
  read(): string | null
  write(apiKey: string | null): void
}

/**
 * `session` holds the key; `legacy` is where consoles before this one kept it (localStorage), erased on
 * every read and write so an upgraded browser does not keep the key there. Either getter may throw or
 * return undefined (storage disabled, private mode): the session then lasts as long as the page.
 */
export function createApiKeyStore(storages: {
  readonly session: () => KeyStorage | undefined
  readonly legacy: () => KeyStorage | undefined
}): ApiKeyStore {
  const attempt = <T>(work: () => T): T | undefined => {
    try {
      return work()
    } catch {
      return undefined
    }
  }
  const eraseLegacy = () => attempt(() => storages.legacy()?.removeItem(apiKeyStorageKey))
  return {
    read() {
      eraseLegacy()
      return attempt(() => storages.session()?.getItem(apiKeyStorageKey)) ?? null
    },
    write(apiKey) {
      eraseLegacy()
      attempt(() => {
        const session = storages.session()
        if (apiKey === null) session?.removeItem(apiKeyStorageKey)
        else session?.setItem(apiKeyStorageKey, apiKey)
      })
    },
  }
}
