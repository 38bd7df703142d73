import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { apiKeyStorageKey, createApiKeyStore, type KeyStorage } from '../src/key-storage.ts'

// Issue 22 finding 9: the console kept the API key in localStorage. It now keeps it in the tab's
// sessionStorage and erases the copy an older console left in localStorage.

function memoryStorage(): KeyStorage & { readonly items: Map<string, string> } {
  const items = new Map<string, string>()
  return {
    items,
    getItem: (key) => items.get(key) ?? null,
    setItem: (key, value) => void items.set(key, value),
    removeItem: (key) => void items.delete(key),
  }
}

describe('the console keeps the API key', () => {
  it('finding 9: in sessionStorage only, never in localStorage', () => {
    const session = memoryStorage()
    const local = memoryStorage()
    const store = createApiKeyStore({ session: () => session, legacy: () => local })
    assert.equal(store.read(), null)
    store.write('gmk_example_key')
    assert.equal(session.items.get(apiKeyStorageKey), 'gmk_example_key')
    assert.equal(local.items.size, 0)
    assert.equal(store.read(), 'gmk_example_key')
    store.write(null)
    assert.equal(session.items.size, 0)
    assert.equal(store.read(), null)
  })

  it('finding 9: erases a key an older console left in localStorage, without adopting it', () => {
    const session = memoryStorage()
    const local = memoryStorage()
    local.setItem(apiKeyStorageKey, 'gmk_left_by_old_console')
    local.setItem('unrelated', 'kept')
    const store = createApiKeyStore({ session: () => session, legacy: () => local })
    assert.equal(store.read(), null, 'the old key is not carried over: the user logs in again')
    assert.equal(local.getItem(apiKeyStorageKey), null)
    assert.equal(local.getItem('unrelated'), 'kept')
  })

  it('lasts as long as the page when storage is disabled', () => {
    const refusing = (): KeyStorage => {
      throw new Error('SecurityError: storage is disabled')
    }
    const store = createApiKeyStore({ session: refusing, legacy: refusing })
    store.write('gmk_example_key')
    assert.equal(store.read(), null)
    store.write(null)
  })
})
